"""CdfTables: quantisation from PMFs, validation on every construction and load, storage."""
from __future__ import annotations

import heapq
import math
import zipfile

import numpy as np
import pytest
from coder_cases import gaussian_pmf, gaussian_tables

from edgecodec.entropy import TOTAL, CdfTables, quantize_pmf
from edgecodec.errors import EntropyCodingError

GOOD_CDF = [[0, 100, 65000, 65536]]


# ---------------------------------------------------------------- from_pmfs


@pytest.mark.parametrize("seed", range(20))
def test_quantized_frequencies_sum_to_total_and_are_all_positive(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 3000))
    pmf = rng.dirichlet(np.full(n, rng.choice([0.01, 1.0, 10.0]))) * rng.uniform(0.5, 1.0)
    pmf[rng.random(n) < 0.2] = 0.0
    f = quantize_pmf(pmf)
    assert f.size == n + 1 and f.sum() == TOTAL and f.min() >= 1


def _kl_bits(p: np.ndarray, f: np.ndarray) -> float:
    q = f / TOTAL
    return float(np.sum(p[p > 0] * np.log2(p[p > 0] / q[p > 0])))


def _optimal_freqs(p: np.ndarray) -> np.ndarray:
    """Exact optimum by brute force: from all ones, give each unit where it saves the most."""
    f = np.ones(p.size, dtype=np.int64)
    heap = [(-pi * math.log1p(1.0), i) for i, pi in enumerate(p)]
    heapq.heapify(heap)
    for _ in range(TOTAL - p.size):
        _, i = heapq.heappop(heap)
        f[i] += 1
        heapq.heappush(heap, (-p[i] * math.log1p(1.0 / f[i]), i))
    return f


@pytest.mark.parametrize("scale", [0.2, 1.0, 3.0, 40.0])
def test_quantization_costs_almost_nothing_over_the_optimum(scale):
    half = max(2, int(8 * scale))
    pmf = gaussian_pmf(scale, half) * (1 - 1e-6)
    p = np.append(pmf, 1.0 - pmf.sum())
    ours, best = _kl_bits(p, quantize_pmf(pmf)), _kl_bits(p, _optimal_freqs(p))
    assert ours <= best * 1.001 + 1e-9, (ours, best)


def test_escape_gets_the_missing_tail_mass():
    f = quantize_pmf(np.array([0.25, 0.25, 0.25]))
    assert f.tolist() == [16384, 16384, 16384, 16384]


def test_pmf_rows_summing_above_one_are_normalised():
    f = quantize_pmf(np.array([2.0, 2.0]))
    assert f[-1] == 1 and f.sum() == TOTAL and abs(int(f[0]) - int(f[1])) <= 1


def test_trailing_zeros_set_each_tables_length():
    pmfs = np.array([[0.5, 0.5, 0.0, 0.0], [0.2, 0.0, 0.3, 0.5]])
    tables = CdfTables.from_pmfs(pmfs, [0, -2])
    assert tables.lengths.tolist() == [3, 5]  # regular symbols plus the escape


def test_explicit_lengths_override_trailing_zeros():
    pmfs = np.array([[0.5, 0.5, 0.0, 0.0]])
    tables = CdfTables.from_pmfs(pmfs, [0], lengths=[4])
    assert tables.lengths.tolist() == [5]
    assert tables.freqs(0)[2:4].tolist() == [1, 1]  # zero-probability symbols stay codable


def test_from_pmfs_gives_identical_tables_on_repeat():
    pmfs = np.stack([gaussian_pmf(s, 30) for s in (0.3, 1.0, 7.0)])
    assert CdfTables.from_pmfs(pmfs, [-30] * 3) == CdfTables.from_pmfs(pmfs, [-30] * 3)


@pytest.mark.parametrize(
    "pmfs, match",
    [
        (np.array([[0.5, np.nan]]), "finite"),
        (np.array([[0.5, -0.1]]), "non-negative"),
        (np.zeros((1, 3)), "no probability mass"),
        (np.zeros((0, 3)), "non-empty"),
        (np.ones(3), "2-D"),
    ],
)
def test_invalid_pmfs_raise_clear_error(pmfs, match):
    with pytest.raises(EntropyCodingError, match=match):
        CdfTables.from_pmfs(pmfs, np.zeros(max(1, len(pmfs)), int))


def test_from_pmfs_rejects_wrong_offsets_and_lengths():
    pmfs = np.full((2, 3), 0.3)
    with pytest.raises(EntropyCodingError, match="offsets"):
        CdfTables.from_pmfs(pmfs, [0])
    with pytest.raises(EntropyCodingError, match="lengths"):
        CdfTables.from_pmfs(pmfs, [0, 0], lengths=[3, 4])


# ---------------------------------------------------------------- validation


@pytest.mark.parametrize(
    "cdf, lengths, offsets, match",
    [
        ([[0, 100, 100, 65536]], [3], [0], "symbol 1 has frequency 0"),
        ([[0, 100, 50, 65536]], [3], [0], "symbol 1 has frequency -50"),
        ([[5, 100, 200, 65536]], [3], [0], "starts at 5"),
        ([[0, 100, 200, 65535]], [3], [0], "ends at 65535"),
        ([[0, 100, 200, 65536]], [2], [0], "ends at 200"),
        ([[0, 100, 200, 65536]], [4], [0], "length 4 outside"),
        ([[0, 100, 200, 65536]], [1], [0], "length 1 outside"),
        ([[0, 100, 200, 65536]], [3, 3], [0], "one entry per table"),
        ([[0, 100, 200, 65536]], [3], [0, 1], "one entry per table"),
        ([[0, 100, 200, 65536]], [3], [2**31 - 1], "exceed int32"),
        ([[0, 100, 200, 65536]], [3], [2**31], "int32 range"),
        ([[0.0, 100.0, 200.0, 65536.0]], [3], [0], "integers"),
        ([0, 100, 200, 65536], [3], [0], "2-D"),
        (np.zeros((0, 4), int), [], [], "at least one table"),
    ],
)
def test_invalid_tables_raise_clear_error(cdf, lengths, offsets, match):
    with pytest.raises(EntropyCodingError, match=match):
        CdfTables(cdf, lengths, offsets)


def test_error_names_the_offending_table():
    cdf = [[0, 100, 65536, 65536], [0, 0, 100, 65536]]
    with pytest.raises(EntropyCodingError, match="table 1: symbol 0"):
        CdfTables(cdf, [2, 3], [0, 0])


def test_tables_are_immutable_copies():
    cdf = np.array(GOOD_CDF, np.int32)
    tables = CdfTables(cdf, [3], [0])
    cdf[0, 1] = 0  # the caller's array is not the table
    assert tables.cdf[0, 1] == 100
    with pytest.raises(ValueError):
        tables.cdf[0, 1] = 5


def test_freqs_and_repr():
    tables = CdfTables(GOOD_CDF, [3], [7])
    assert tables.freqs(0).tolist() == [100, 64900, 536]
    assert "n_tables=1" in repr(tables) and len(tables) == 1


# ---------------------------------------------------------------- storage


def test_save_load_round_trip(tmp_path):
    tables = gaussian_tables()
    path = tmp_path / "tables.npz"
    tables.save(path)
    assert CdfTables.load(path) == tables
    assert CdfTables.load(str(path)) == tables


def _rewrite(path, **changes):
    with np.load(path) as npz:
        arrays = {k: npz[k] for k in npz.files}
    arrays.update(changes)
    for k in [k for k, v in changes.items() if v is None]:
        del arrays[k]
    np.savez(path, **arrays)


@pytest.mark.parametrize(
    "changes, match",
    [
        ({"cdf": np.array([[0, 100, 100, 65536]], np.int32)}, "symbol 1 has frequency 0"),
        ({"lengths": None}, "missing lengths"),
        ({"format_version": np.int32(2)}, "version 2"),
        ({"precision": np.int32(15)}, "15-bit"),
    ],
)
def test_load_validates_the_file(tmp_path, changes, match):
    path = tmp_path / "tables.npz"
    CdfTables(GOOD_CDF, [3], [0]).save(path)
    _rewrite(path, **changes)
    with pytest.raises(EntropyCodingError, match=match):
        CdfTables.load(path)


def test_load_of_a_non_table_file_raises_clear_error(tmp_path):
    path = tmp_path / "garbage.npz"
    path.write_bytes(b"PK\x03\x04 this is not a zip file")
    with pytest.raises(EntropyCodingError, match="not a CDF table file"):
        CdfTables.load(path)
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("cdf.npy", b"\x93NUMPY garbage")
    with pytest.raises(EntropyCodingError):
        CdfTables.load(path)


def test_load_of_a_missing_file_raises_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError):
        CdfTables.load(tmp_path / "absent.npz")
