"""Round trips, edge cases, size and bit-exactness of the range coder (C and reference)."""
from __future__ import annotations

import hashlib
import json
import os
import pathlib
import threading

import numpy as np
import pytest
from coder_cases import CODERS, draw, gaussian_tables, ideal_bits, random_tables

from edgecodec.entropy import FORMAT_VERSION, CdfTables, decode, encode
from edgecodec.entropy import reference
from edgecodec.errors import EntropyCodingError

INT32_MIN, INT32_MAX = -(2**31), 2**31 - 1
GOLDEN = pathlib.Path(__file__).with_name("data") / "golden_rangecoder.json"


@pytest.fixture(params=sorted(CODERS))
def coder(request):
    return CODERS[request.param]


def uniform_tables(n_symbols: int, offset: int = 0) -> CdfTables:
    """One table of ``n_symbols`` symbols (escape included) with near-equal frequencies."""
    cdf = np.round(np.linspace(0, 65536, n_symbols + 1)).astype(np.int32)
    return CdfTables(cdf[None, :], [n_symbols], [offset])


# ---------------------------------------------------------------- round trips


@pytest.mark.parametrize("seed", range(40))
def test_random_tables_and_symbols_round_trip(seed):
    rng = np.random.default_rng(seed)
    tables = random_tables(rng, int(rng.integers(1, 12)), int(rng.integers(1, 300)))
    symbols, indexes = draw(rng, tables, int(rng.integers(0, 20000)), escape_rate=0.01)
    assert np.array_equal(decode(encode(symbols, indexes, tables), indexes, tables), symbols)


@pytest.mark.parametrize("seed", range(8))
def test_reference_round_trips_and_matches_c_bytes(seed):
    rng = np.random.default_rng(1000 + seed)
    tables = random_tables(rng, int(rng.integers(1, 6)), int(rng.integers(1, 60)))
    symbols, indexes = draw(rng, tables, int(rng.integers(0, 600)), escape_rate=0.05)
    data = reference.encode(symbols, indexes, tables)
    assert data == encode(symbols, indexes, tables)
    assert np.array_equal(reference.decode(data, indexes, tables), symbols)


def test_gaussian_latents_round_trip_with_rounded_samples():
    rng = np.random.default_rng(7)
    tables = gaussian_tables()
    scales = np.array([0.12, 0.5, 1.0, 2.5, 6.0, 20.0])
    indexes = rng.integers(0, 6, 50000).astype(np.int32)
    symbols = np.rint(rng.normal(0, 1.5 * scales[indexes])).astype(np.int32)  # some escape
    data = encode(symbols, indexes, tables)
    assert np.array_equal(decode(data, indexes, tables), symbols)


def test_decode_keeps_the_shape_of_indexes():
    tables = gaussian_tables()
    indexes = np.arange(24, dtype=np.int32).reshape(2, 3, 4) % 6
    symbols = (np.arange(24, dtype=np.int32).reshape(2, 3, 4) % 5) - 2
    out = decode(encode(symbols, indexes, tables), indexes, tables)
    assert out.shape == (2, 3, 4) and out.dtype == np.int32
    assert np.array_equal(out, symbols)


def test_inputs_of_other_integer_types_and_lists_are_accepted():
    tables = gaussian_tables()
    symbols = [0, 1, -1, 2**31 - 1]
    data = encode(np.array(symbols, dtype=np.int64), [0, 1, 2, 3], tables)
    assert data == encode(np.array(symbols, dtype=np.int32), np.array([0, 1, 2, 3], np.uint8), tables)
    assert decode(bytearray(data), (0, 1, 2, 3), tables).tolist() == symbols
    assert decode(memoryview(data), [0, 1, 2, 3], tables).tolist() == symbols


# ---------------------------------------------------------------- edge cases


def test_empty_input_codes_to_empty_bytes(coder):
    enc, dec = coder
    tables = gaussian_tables()
    assert enc(np.zeros(0, np.int32), np.zeros(0, np.int32), tables) == b""
    out = dec(b"", np.zeros(0, np.int32), tables)
    assert out.shape == (0,) and out.dtype == np.int32


@pytest.mark.parametrize("value", [0, 1, -1, 5, 1000, INT32_MIN, INT32_MAX])
def test_single_symbol_round_trips(coder, value):
    enc, dec = coder
    tables = gaussian_tables()
    for index in range(tables.n_tables):
        data = enc([value], [index], tables)
        assert dec(data, [index], tables).tolist() == [value]


def test_all_escaped_values_round_trip(coder):
    enc, dec = coder
    rng = np.random.default_rng(3)
    tables = gaussian_tables()
    n = 300
    indexes = rng.integers(0, tables.n_tables, n).astype(np.int32)
    symbols = np.where(rng.random(n) < 0.5, -1, 1) * rng.integers(200, 2**31 - 1, n)
    data = enc(symbols, indexes, tables)
    assert np.array_equal(dec(data, indexes, tables), symbols)


def test_overflows_of_every_bit_length_round_trip(coder):
    """Escapes just past each end of a table, at every overflow size up to the int32 limits."""
    enc, dec = coder
    tables = CdfTables([[0, 30000, 60000, 65536]], [3], [10])  # values 10, 11; escape
    values = [9, 12, 13, 8, INT32_MIN, INT32_MAX]
    for k in range(31):
        values += [12 + 2**k, 12 + 2**k - 1, 9 - 2**k, 10 - 2**k]
    values = [v for v in values if INT32_MIN <= v <= INT32_MAX]
    data = enc(values, [0] * len(values), tables)
    assert dec(data, [0] * len(values), tables).tolist() == values


@pytest.mark.parametrize(
    "offset, values",
    [
        (INT32_MIN, [INT32_MIN, INT32_MIN + 1, INT32_MIN + 2, INT32_MAX, 0]),
        (INT32_MAX - 1, [INT32_MAX - 1, INT32_MAX, INT32_MIN, 0, INT32_MAX - 2]),
    ],
)
def test_int32_extremes_round_trip_with_tables_at_the_edges(coder, offset, values):
    enc, dec = coder
    tables = uniform_tables(3, offset)  # two regular values from `offset`, then the escape
    data = enc(values, [0] * len(values), tables)
    assert dec(data, [0] * len(values), tables).tolist() == values


def test_near_certain_symbol_costs_almost_nothing(coder):
    enc, dec = coder
    tables = CdfTables([[0, 65535, 65536]], [2], [0])
    n = 20000 if coder[0] is encode else 2000
    data = enc(np.zeros(n, np.int32), np.zeros(n, np.int32), tables)
    assert len(data) <= 8
    assert np.array_equal(dec(data, np.zeros(n, np.int32), tables), np.zeros(n))


def test_least_likely_symbols_cost_sixteen_bits_each(coder):
    enc, dec = coder
    tables = CdfTables([[0, 1, 2, 65536]], [3], [0])  # values 0 and 1 at p = 2**-16
    values = np.random.default_rng(0).integers(0, 2, 1000).tolist()
    data = enc(values, [0] * len(values), tables)
    assert abs(len(data) - 2 * len(values)) <= 8
    assert dec(data, [0] * len(values), tables).tolist() == values


def test_largest_table_round_trips():
    tables = uniform_tables(65536, -32768)  # 65535 values at frequency 1, and the escape
    rng = np.random.default_rng(5)
    symbols = rng.integers(-40000, 40000, 5000).astype(np.int32)
    indexes = np.zeros(5000, np.int32)
    assert np.array_equal(decode(encode(symbols, indexes, tables), indexes, tables), symbols)


# ---------------------------------------------------------------- invalid arguments


@pytest.mark.parametrize("bad", [-1, 6, INT32_MAX, INT32_MIN])
def test_index_out_of_range_raises_clear_error(coder, bad):
    enc, dec = coder
    tables = gaussian_tables()
    with pytest.raises(EntropyCodingError, match=f"index {bad} at position 2"):
        enc([0, 0, 0, 0], [0, 1, bad, 0], tables)
    data = enc([0, 0, 0, 0], [0, 1, 2, 0], tables)
    with pytest.raises(EntropyCodingError, match=f"index {bad} at position 2"):
        dec(data, [0, 1, bad, 0], tables)


def test_symbols_outside_int32_are_rejected_not_wrapped(coder):
    enc, _ = coder
    with pytest.raises(EntropyCodingError, match="int32"):
        enc(np.array([2**31]), np.array([0]), gaussian_tables())


def test_float_symbols_are_rejected(coder):
    enc, _ = coder
    with pytest.raises(EntropyCodingError, match="integer"):
        enc(np.array([0.5]), np.array([0]), gaussian_tables())


def test_symbols_and_indexes_of_different_lengths_are_rejected(coder):
    enc, _ = coder
    with pytest.raises(EntropyCodingError):
        enc([0, 1, 2], [0, 1], gaussian_tables())


def test_trailing_bytes_after_the_last_symbol_raise(coder):
    enc, dec = coder
    tables = gaussian_tables()
    data = enc([0, 1, 2], [1, 2, 3], tables)
    with pytest.raises(EntropyCodingError, match="trailing"):
        dec(data + bytes(8) + b"\x01", [1, 2, 3], tables)


def test_tables_argument_must_be_cdftables():
    with pytest.raises(TypeError):
        encode([0], [0], object())  # type: ignore[arg-type]


def test_raw_c_functions_reject_invalid_tables_without_crashing():
    from edgecodec.entropy import _rangecoder

    sym = np.zeros(4, np.int32)
    good = np.array([[0, 100, 65536]], np.int32)
    one = np.ones(1, np.int32) * 2
    zero = np.zeros(1, np.int32)
    out = np.zeros(4, np.int32)
    for cdf, lengths in [
        (np.array([[0, 100, 100]], np.int32), one),  # zero frequency
        (np.array([[1, 100, 65536]], np.int32), one),  # does not start at 0
        (np.array([[0, 100, 65535]], np.int32), one),  # does not end at 2**16
        (good, np.array([3], np.int32)),  # length past the row
        (good, np.array([1], np.int32)),  # no regular symbol
    ]:
        with pytest.raises(EntropyCodingError):
            _rangecoder.encode(sym, sym, cdf, lengths, zero)
        with pytest.raises(EntropyCodingError):
            _rangecoder.decode(b"", sym, cdf, lengths, zero, out)
    with pytest.raises(TypeError):
        _rangecoder.encode(sym.astype(np.int64), sym, good, one, zero)
    with pytest.raises(TypeError):
        _rangecoder.encode(sym, sym, good[0], one, zero)  # cdf must be 2-D
    with pytest.raises((TypeError, BufferError)):
        _rangecoder.decode(b"", sym, good, one, zero, bytes(16))  # out must be writable


# ---------------------------------------------------------------- compression


@pytest.mark.parametrize("seed", range(4))
def test_size_is_within_half_a_percent_of_the_ideal(seed):
    rng = np.random.default_rng(seed)
    tables = gaussian_tables() if seed % 2 else random_tables(rng, 16, 200)
    symbols, indexes = draw(rng, tables, 100000)
    ideal = ideal_bits(tables, symbols, indexes) / 8
    size = len(encode(symbols, indexes, tables))
    print(f"seed {seed}: {size} bytes, ideal {ideal:.1f} ({100 * (size / ideal - 1):+.4f}%)")
    assert ideal - 8 <= size <= ideal * 1.005 + 8


def test_estimate_bits_counts_escapes_exactly():
    rng = np.random.default_rng(11)
    tables = gaussian_tables()
    symbols, indexes = draw(rng, tables, 5000)
    assert tables.estimate_bits(symbols, indexes) == pytest.approx(
        ideal_bits(tables, symbols, indexes), rel=1e-12
    )
    # Each escape adds the escape symbol plus 6 + (m - 1) raw bits; the coder spends about that.
    symbols[:200] = rng.integers(-(2**31), 2**31, 200)
    size = len(encode(symbols, indexes, tables))
    assert abs(8 * size - tables.estimate_bits(symbols, indexes)) < 64


# ---------------------------------------------------------------- format stability


def _golden_cases():
    """Deterministic inputs built with integer arithmetic only (no float, no numpy RNG)."""
    tables = CdfTables(
        [[0, 1, 1000, 30000, 60000, 65000, 65535, 65536], [0, 20000, 65536, 65536, 0, 0, 0, 0]],
        [7, 2],
        [-3, 100],
    )
    x, symbols, indexes = 12345, [], []
    for _ in range(5000):
        x = (x * 6364136223846793005 + 1442695040888963407) % 2**64
        indexes.append((x >> 33) & 1)
        symbols.append(((x >> 40) % 9) - 4 if indexes[-1] == 0 else 100 + ((x >> 40) % 3) - 1)
        if (x >> 20) % 97 == 0:
            symbols[-1] = int((x >> 32) & 0xFFFFFFFF) - 2**31
    return {"mixed_with_escapes": (tables, symbols, indexes), "empty": (tables, [], [])}


def test_encoded_bytes_match_pinned_golden_hashes():
    """The coded format is frozen: set EDGECODEC_UPDATE_GOLDEN=1 to re-pin after a deliberate
    change (and bump FORMAT_VERSION)."""
    got = {
        name: hashlib.sha256(encode(s, i, t)).hexdigest()
        for name, (t, s, i) in _golden_cases().items()
    }
    assert FORMAT_VERSION == 1
    if os.environ.get("EDGECODEC_UPDATE_GOLDEN"):
        GOLDEN.parent.mkdir(exist_ok=True)
        GOLDEN.write_text(json.dumps(got, indent=2, sort_keys=True) + "\n")
    assert got == json.loads(GOLDEN.read_text())


def test_cdf_padding_past_a_tables_end_is_normalised():
    t = _golden_cases()["mixed_with_escapes"][0]
    assert t.cdf[1].tolist() == [0, 20000, 65536, 65536, 65536, 65536, 65536, 65536]


# ---------------------------------------------------------------- threads


def test_concurrent_encodes_from_threads_are_independent():
    tables = gaussian_tables()
    rng = np.random.default_rng(2)
    jobs = [draw(rng, tables, 20000, escape_rate=0.01) for _ in range(4)]
    expected = [encode(s, i, tables) for s, i in jobs]
    results = [None] * len(jobs)

    def work(k):
        s, i = jobs[k]
        for _ in range(5):
            data = encode(s, i, tables)
            assert np.array_equal(decode(data, i, tables), s)
        results[k] = data

    threads = [threading.Thread(target=work, args=(k,)) for k in range(len(jobs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == expected
