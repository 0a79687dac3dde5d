"""Stream mode (edgecodec.temporal): key and delta frames, what a decoder does with lost, late, repeated
and damaged packets, and that encoder and decoder keep the same integer state frame after frame."""
from __future__ import annotations

import numpy as np
import pytest

from edgecodec import bitstream
from edgecodec.bitstream import Kind
from edgecodec.codec import Codec
from edgecodec.errors import BitstreamError, EdgecodecError, MissingReferenceError
from edgecodec.temporal import StreamDecoder, StreamEncoder
from edgecodec.testscene import TestScene

pytestmark = pytest.mark.timeout(240)
W, H = 128, 96
Q = 3
STEP_US = 100_000  # 10 frames/s


@pytest.fixture(scope="module")
def codec():
    return Codec.load(threads=1, encoder="float")


@pytest.fixture(scope="module")
def scene():
    return TestScene(W, H)


def encode_stream(codec, frames, quality=Q, **options):
    """(encoder, [(packet, encoder's latents y after the frame, its z)]) of a list of images."""
    enc = StreamEncoder(codec, **options)
    out = []
    for i, image in enumerate(frames):
        packet = enc.encode(image, quality, i, i * STEP_US)
        out.append((packet, enc._ref.y.copy(), enc._ref.z.copy()))
    return enc, out


def kinds(packets):
    return [bitstream.unpack(p)[0].kind for p in packets]


def moving(scene, n, start=0):
    return [scene.render((start + i) * STEP_US) for i in range(n)]


def test_stream_round_trips_to_what_the_encoder_coded(codec, scene):
    enc, coded = encode_stream(codec, moving(scene, 8))
    assert enc.keys == 1 and enc.deltas == 7
    dec = StreamDecoder(codec)
    for packet, y, _z in coded:
        image = dec.decode(packet)
        header, _ = bitstream.unpack(packet)
        assert image.shape == (H, W, 3) and image.dtype == np.uint8
        assert np.array_equal(image, codec.synthesize(header, y))
    assert dec.last_sequence == 7 and not dec.waiting


def test_a_key_frame_decodes_alone_as_with_the_still_codec(codec, scene):
    _, coded = encode_stream(codec, moving(scene, 2))
    key = coded[0][0]
    assert np.array_equal(codec.decode(key), StreamDecoder(codec).decode(key))
    with pytest.raises(MissingReferenceError, match="StreamDecoder"):
        codec.decode(coded[1][0])


def test_a_delta_frame_of_a_static_scene_is_much_smaller_than_its_key_frame(codec, scene):
    still = scene.render(0)
    noise = np.random.default_rng(0).normal(0, 1.0, (4,) + still.shape)
    frames = [still] + [np.clip(still + n, 0, 255).astype(np.uint8) for n in noise]  # sensor noise only
    enc, coded = encode_stream(codec, frames)
    sizes = [len(p) for p, _, _ in coded]
    assert kinds([p for p, _, _ in coded]) == [Kind.FRAME] + [Kind.DELTA] * 4
    assert max(sizes[1:]) * 5 < sizes[0], sizes
    assert enc.last_coded_share < 0.2
    dec = StreamDecoder(codec)
    for packet, y, _ in coded:
        header, got = dec.decode_latents(packet)
        assert np.array_equal(got, y)


def test_a_decoder_that_joins_mid_stream_refuses_deltas_until_a_key_frame(codec, scene):
    enc, coded = encode_stream(codec, moving(scene, 10), key_interval_s=0.5)  # key frames at 0 and 5
    packets = [p for p, _, _ in coded]
    assert kinds(packets) == ([Kind.FRAME] + [Kind.DELTA] * 4) * 2
    dec = StreamDecoder(codec)
    for i in (2, 3, 4):
        with pytest.raises(MissingReferenceError, match="no key frame has been decoded yet") as info:
            dec.decode(packets[i])
        assert f"frame {i}" in str(info.value) and "waiting for the next key frame" in str(info.value)
        assert dec.waiting and dec.last_sequence is None
    for i in range(5, 10):
        header, y = dec.decode_latents(packets[i])
        assert header.sequence == i and np.array_equal(y, coded[i][1])
    assert not dec.waiting


def feed(dec, packets):
    """What a viewer shows: per packet the decoded sequence, or the error class it was refused with."""
    out = []
    for packet in packets:
        try:
            header, _ = dec.decode_latents(packet)
        except EdgecodecError as exc:
            assert isinstance(exc, BitstreamError)
            out.append(type(exc))
            continue
        out.append(header.sequence)
    return out


@pytest.fixture(scope="module")
def two_groups(codec, scene):
    """Frames 0..9 with key frames at 0 and 6 (requested, as after a loss report)."""
    enc = StreamEncoder(codec)
    packets = []
    for i, image in enumerate(moving(scene, 10)):
        if i == 6:
            enc.request_key()
        packets.append(enc.encode(image, Q, i, i * STEP_US))
    assert kinds(packets) == [Kind.FRAME] + [Kind.DELTA] * 5 + [Kind.FRAME] + [Kind.DELTA] * 3
    return packets


def test_a_lost_packet_stops_decoding_until_the_next_key_frame(codec, two_groups):
    received = two_groups[:3] + two_groups[4:]  # frame 3 lost
    assert feed(StreamDecoder(codec), received) == [0, 1, 2] + [MissingReferenceError] * 2 + [6, 7, 8, 9]


def test_a_lost_packet_names_the_missing_frame(codec, two_groups):
    dec = StreamDecoder(codec)
    for p in two_groups[:3]:
        dec.decode_latents(p)
    with pytest.raises(MissingReferenceError, match="coded against frame 3, but the last frame decoded is 2"):
        dec.decode(two_groups[4])
    assert dec.waiting


def test_reordered_packets_are_refused_never_decoded_against_the_wrong_frame(codec, two_groups):
    p = two_groups
    received = [p[0], p[1], p[3], p[2], p[4], p[5], p[6], p[8], p[7], p[9]]
    assert feed(StreamDecoder(codec), received) == [0, 1, MissingReferenceError, MissingReferenceError,
                                                    MissingReferenceError, MissingReferenceError, 6,
                                                    MissingReferenceError, MissingReferenceError,
                                                    MissingReferenceError]


def test_a_duplicated_delta_is_refused_and_decoding_resumes_at_the_next_key(codec, two_groups):
    p = two_groups
    received = [p[0], p[1], p[1], p[2], p[6], p[6], p[7]]
    assert feed(StreamDecoder(codec), received) == [0, 1, MissingReferenceError, MissingReferenceError, 6, 6, 7]


def test_a_corrupted_packet_is_refused_and_its_successors_wait_for_a_key_frame(codec, two_groups):
    bad = bytearray(two_groups[2])
    bad[len(bad) // 2] ^= 0x20
    received = two_groups[:2] + [bytes(bad)] + two_groups[3:]
    assert feed(StreamDecoder(codec), received) == [0, 1, BitstreamError] + [MissingReferenceError] * 3 + \
        [6, 7, 8, 9]
    dec = StreamDecoder(codec)
    feed(dec, two_groups[:2] + [bytes(bad)])
    assert dec.waiting  # a CRC failure forgets the stream like every other failure


def test_a_delta_with_a_valid_crc_but_another_quality_is_refused(codec, two_groups):
    header, streams = bitstream.unpack(two_groups[1])
    forged = bitstream.pack(header.__class__(**{**header.__dict__, "quality": Q + 1}), streams)
    dec = StreamDecoder(codec)
    dec.decode_latents(two_groups[0])
    with pytest.raises(BitstreamError, match="changes the quality or frame size"):
        dec.decode_latents(forged)
    assert dec.waiting  # whatever failed, the state is gone


def test_a_failed_decode_resets_the_decoder_and_reset_forgets_the_stream(codec, two_groups):
    dec = StreamDecoder(codec)
    dec.decode_latents(two_groups[0])
    dec.reset()
    assert dec.waiting
    with pytest.raises(MissingReferenceError):
        dec.decode_latents(two_groups[1])


def test_key_frames_at_start_on_request_on_quality_and_size_change(codec, scene):
    enc = StreamEncoder(codec)
    small = TestScene(64, 48)
    plan = [("start", Q), ("", Q), ("request", Q), ("", Q), ("quality", Q + 1), ("", Q + 1), ("size", Q + 1),
            ("", Q + 1)]
    got = []
    for i, (why, quality) in enumerate(plan):
        if why == "request":
            enc.request_key()
        image = small.render(i * STEP_US) if i >= 6 else scene.render(i * STEP_US)
        packet = enc.encode(image, quality, i, i * STEP_US)
        got.append(bitstream.unpack(packet)[0].kind)
    assert got == [Kind.FRAME if why else Kind.DELTA for why, _ in plan]
    assert (enc.keys, enc.deltas) == (4, 4)


def test_a_gap_in_sequence_numbers_the_reference_cannot_span_starts_a_key_frame(codec, scene):
    enc = StreamEncoder(codec)
    frames = moving(scene, 4)
    seqs = [0, 1, 1 + 65535, 1 + 65535 + 65536]
    got = [bitstream.unpack(enc.encode(f, Q, s, i * STEP_US))[0] for i, (f, s) in enumerate(zip(frames, seqs))]
    assert [h.kind for h in got] == [Kind.FRAME, Kind.DELTA, Kind.DELTA, Kind.FRAME]
    assert got[2].reference == 65535 and got[2].reference_sequence == 1


def test_key_frames_every_key_interval_of_capture_time(codec, scene):
    enc = StreamEncoder(codec, key_interval_s=1.0)
    frames = moving(scene, 25)
    got = [bitstream.unpack(enc.encode(f, Q, i, i * STEP_US))[0].kind for i, f in enumerate(frames)]
    assert [i for i, k in enumerate(got) if k == Kind.FRAME] == [0, 10, 20]
    # Capture times, not frame counts: at 5 frames/s a 1 s interval is every 5th frame.
    enc = StreamEncoder(codec, key_interval_s=1.0)
    got = [bitstream.unpack(enc.encode(f, Q, i, i * 200_000))[0].kind for i, f in enumerate(frames[:12])]
    assert [i for i, k in enumerate(got) if k == Kind.FRAME] == [0, 5, 10]


def test_a_clock_that_goes_backwards_starts_a_key_frame(codec, scene):
    enc = StreamEncoder(codec)
    frames = moving(scene, 3)
    got = [bitstream.unpack(enc.encode(f, Q, i, t))[0].kind for i, (f, t) in enumerate(zip(frames, [10**6, 11**6, 5]))]
    assert got == [Kind.FRAME, Kind.DELTA, Kind.FRAME]


def test_intra_writes_only_key_frames_each_decodable_alone(codec, scene):
    enc, coded = encode_stream(codec, moving(scene, 5), intra=True)
    packets = [p for p, _, _ in coded]
    assert kinds(packets) == [Kind.FRAME] * 5 and (enc.keys, enc.deltas) == (5, 0)
    for i, packet in enumerate(packets):
        still = codec.encode(scene.render(i * STEP_US), Q, kind=Kind.FRAME, sequence=i, timestamp_us=i * STEP_US)
        assert packet == still
        assert np.array_equal(codec.decode(packet), StreamDecoder(codec).decode(packet))


def test_encoder_and_decoder_latents_stay_identical_over_a_long_moving_stream(codec, scene):
    enc = StreamEncoder(codec, key_interval_s=3.0)
    dec = StreamDecoder(codec)
    shares = []
    for i in range(60):
        packet = enc.encode(scene.render(i * STEP_US), Q, i, i * STEP_US)
        header, y = dec.decode_latents(packet)
        assert np.array_equal(y, enc._ref.y), i
        assert np.array_equal(dec._ref.z, enc._ref.z), i
        assert np.array_equal(dec._ref.coded, enc._ref.coded), i
        shares.append(enc.last_coded_share)
    assert (enc.keys, enc.deltas) == (2, 58)
    assert 0 < min(shares) < 1  # some blocks coded, some kept: both paths of a delta frame are used


def test_bad_encoder_options_are_edgecodec_errors(codec, scene):
    for options in ({"key_interval_s": 0}, {"key_interval_s": -1}, {"skip_threshold": -0.1}):
        with pytest.raises(EdgecodecError):
            StreamEncoder(codec, **options)
    with pytest.raises(EdgecodecError, match="quality"):
        StreamEncoder(codec).encode(scene.render(0), 99, 0, 0)


def test_a_frame_where_nothing_moved_is_sent_without_running_the_analysis(codec, scene, monkeypatch):
    """The same bytes as when the network runs, since no block passes the threshold either way."""
    still = scene.render(0)
    noisy = np.clip(still.astype(int) + np.random.default_rng(1).integers(-1, 2, still.shape), 0, 255).astype(np.uint8)
    reference = StreamEncoder(codec)
    expected = [reference.encode(f, Q, i, i * STEP_US) for i, f in enumerate([still, noisy, still])]
    enc = StreamEncoder(codec)
    calls = []
    analyse = codec.analyse
    monkeypatch.setattr(codec, "analyse", lambda *a: calls.append(1) or analyse(*a))
    got = [enc.encode(f, Q, i, i * STEP_US) for i, f in enumerate([still, noisy, still])]
    assert got == expected
    assert len(calls) == 1 and enc.analyses_skipped == 2  # the key frame only
    moved = scene.render(30 * STEP_US)
    enc.encode(moved, Q, 3, 3 * STEP_US)
    assert len(calls) == 2 and enc.last_coded_share > 0
