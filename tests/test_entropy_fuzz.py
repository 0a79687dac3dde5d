"""Hostile input: the decoder must return symbols or raise EntropyCodingError, nothing else.

Run under AddressSanitizer by .ci/asan.sh, where an out-of-bounds access aborts the process.
"""
from __future__ import annotations

import numpy as np
import pytest
from coder_cases import draw, gaussian_tables, random_tables

from edgecodec.entropy import CdfTables, decode, encode
from edgecodec.entropy import reference
from edgecodec.errors import EntropyCodingError


def decode_or_error(decoder, data, indexes, tables):
    """Return the decoded array, or the EntropyCodingError class if the decoder refused."""
    try:
        out = decoder(data, indexes, tables)
    except EntropyCodingError:
        return EntropyCodingError
    assert out.shape == np.shape(indexes) and out.dtype == np.int32
    return out


def mutate(rng: np.random.Generator, data: bytes) -> bytes:
    """One random corruption: bit flips, truncation, insertion, deletion, or overwrite."""
    b = bytearray(data)
    op = rng.integers(5)
    if op == 0 and b:
        for _ in range(int(rng.integers(1, 4))):
            b[rng.integers(len(b))] ^= 1 << int(rng.integers(8))
    elif op == 1:
        del b[rng.integers(len(b) + 1) :]
    elif op == 2:
        at = int(rng.integers(len(b) + 1))
        b[at:at] = rng.bytes(int(rng.integers(1, 9)))
    elif op == 3 and b:
        at = int(rng.integers(len(b)))
        del b[at : at + int(rng.integers(1, 9))]
    elif b:
        at = int(rng.integers(len(b)))
        b[at : at + 4] = rng.choice([b"\xff\xff\xff\xff", b"\0\0\0\0", rng.bytes(4)])
    return bytes(b)


@pytest.fixture(scope="module")
def cases():
    rng = np.random.default_rng(99)
    out = []
    for k in range(12):
        tables = gaussian_tables() if k % 3 == 0 else random_tables(rng, 5, 40)
        symbols, indexes = draw(rng, tables, int(rng.integers(1, 400)), escape_rate=0.05)
        out.append((tables, symbols, indexes, encode(symbols, indexes, tables)))
    return out


def test_random_bytes_never_crash_the_decoder():
    rng = np.random.default_rng(1)
    tables = gaussian_tables()
    outcomes = set()
    for _ in range(3000):
        data = rng.bytes(int(rng.integers(0, 80)))
        indexes = rng.integers(0, tables.n_tables, int(rng.integers(0, 200))).astype(np.int32)
        got = decode_or_error(decode, data, indexes, tables)
        outcomes.add(got is EntropyCodingError)
    assert outcomes == {True, False}  # both outcomes occur: the test exercises both paths


def test_all_ones_and_all_zeros_decode_or_raise():
    tables = random_tables(np.random.default_rng(4), 3, 10)
    for fill in (b"\xff", b"\0", b"\x80"):
        for n in (0, 1, 7, 8, 9, 64):
            indexes = np.arange(50, dtype=np.int32) % 3
            decode_or_error(decode, fill * n, indexes, tables)


def test_mutated_streams_never_crash_the_decoder(cases):
    rng = np.random.default_rng(2)
    for _ in range(4000):
        tables, _, indexes, data = cases[rng.integers(len(cases))]
        decode_or_error(decode, mutate(rng, data), indexes, tables)


def test_mutated_streams_decode_identically_in_c_and_reference(cases):
    """Differential fuzzing: on corrupt input both coders refuse, or agree on every symbol."""
    rng = np.random.default_rng(3)
    for _ in range(1000):
        tables, _, indexes, data = cases[rng.integers(len(cases))]
        bad = mutate(rng, data)
        c = decode_or_error(decode, bad, indexes, tables)
        ref = decode_or_error(reference.decode, bad, indexes, tables)
        if c is EntropyCodingError or ref is EntropyCodingError:
            assert c is ref, (bad.hex(), c, ref)
        else:
            assert np.array_equal(c, ref)


def test_wrong_indexes_or_tables_for_valid_data_never_crash(cases):
    rng = np.random.default_rng(5)
    other = gaussian_tables()
    for tables, _, indexes, data in cases:
        for _ in range(50):
            shuffled = rng.permutation(indexes) % other.n_tables
            decode_or_error(decode, data, shuffled.astype(np.int32), other)
            longer = np.concatenate([indexes, indexes])
            decode_or_error(decode, data, longer, tables)


def test_escape_heavy_tables_with_hostile_escape_lengths_raise():
    """A table that is almost all escape makes random bytes hit the escape path constantly."""
    tables = CdfTables([[0, 1, 65536]], [2], [0])
    rng = np.random.default_rng(6)
    refused = 0
    for _ in range(2000):
        got = decode_or_error(decode, rng.bytes(int(rng.integers(0, 40))), np.zeros(20, np.int32), tables)
        refused += got is EntropyCodingError
    assert refused > 0
