"""Rate control against simulated packet sizes: it must stay under the target and use what it allows."""
from __future__ import annotations

import pytest

from edgecodec.edge.ratecontrol import FixedQuality, RateController

QUALITIES = list(range(8))


def simulate(target_kbps, fps, seconds, size_of, start=0.0):
    """Drive the controller at ``fps``; return (kbit/s achieved, qualities used, frames skipped)."""
    rc = RateController(target_kbps, QUALITIES, fps)
    total, used, t = 0, [], start
    for i in range(int(fps * seconds)):
        t = start + i / fps
        q = rc.choose(t)
        if q is None:
            continue
        size = int(size_of(q, t))
        rc.observe(q, size, t)
        total += size
        used.append(q)
    return total * 8 / 1000 / seconds, used, rc.skipped


def sizes(scale=1.0):
    return lambda q, t: 15_000 * 1.22**q * scale


@pytest.mark.parametrize("target", [1_500, 2_500, 4_000])
def test_stays_under_the_target_bitrate(target):
    kbps, used, _ = simulate(target, 10, 60, sizes())
    assert kbps <= target * 1.02
    assert kbps >= target * 0.7  # and does not waste most of the budget


def test_uses_the_highest_quality_when_the_budget_allows_it():
    kbps, used, skipped = simulate(100_000, 10, 20, sizes())
    assert used[-50:] == [7] * 50 and skipped == 0


def test_skips_frames_when_even_the_lowest_quality_exceeds_the_target():
    # Lowest quality needs 1200 kbit/s at 10 frames/s; the target is a third of that.
    kbps, used, skipped = simulate(400, 10, 60, sizes())
    assert kbps <= 400 * 1.05 and skipped > 0 and set(used[5:]) == {0}


def test_follows_a_change_of_scene():
    def scene(q, t):
        return sizes(1.0 if t < 30 else 2.5)(q, t)

    _, used, _ = simulate(8_000, 10, 60, scene)
    early, late = used[100:290], used[-150:]
    assert sum(late) / len(late) < sum(early) / len(early) - 1  # busier scene -> lower quality
    kbps_late, _, _ = simulate(8_000, 10, 30, sizes(2.5), start=30)
    assert kbps_late <= 8_000 * 1.02


def test_fixed_quality_ignores_sizes():
    fq = FixedQuality(5)
    fq.observe(5, 10**9, 0.0)
    assert fq.choose(1.0) == 5
