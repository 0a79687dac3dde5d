"""Cross-check against constriction's range coder on the same symbols and quantised models."""
from __future__ import annotations

import numpy as np
import pytest
from coder_cases import draw, gaussian_tables, random_tables

from edgecodec.entropy import decode, encode

constriction = pytest.importorskip("constriction")


def constriction_size(tables, symbols, indexes) -> int:
    """Bytes constriction's RangeEncoder needs with one Categorical model per table."""
    encoder = constriction.stream.queue.RangeEncoder()
    for i in range(tables.n_tables):
        s = symbols[indexes == i].astype(np.int64) - int(tables.offsets[i])
        assert np.all((s >= 0) & (s < tables.lengths[i] - 1)), "in-range symbols only"
        model = constriction.stream.model.Categorical(tables.freqs(i) / 65536.0, perfect=False)
        encoder.encode(s.astype(np.int32), model)
    return int(encoder.get_compressed().nbytes)


@pytest.mark.parametrize("seed", range(3))
def test_size_matches_constriction_on_the_same_distributions(seed, record_property):
    rng = np.random.default_rng(seed)
    tables = gaussian_tables() if seed == 0 else random_tables(rng, 12, 120)
    symbols, indexes = draw(rng, tables, 60000)
    ours = len(encode(symbols, indexes, tables))
    theirs = constriction_size(tables, symbols, indexes)
    print(f"seed {seed}: edgecodec {ours} bytes, constriction {theirs} bytes")
    record_property("edgecodec_bytes", ours)
    record_property("constriction_bytes", theirs)
    assert np.array_equal(decode(encode(symbols, indexes, tables), indexes, tables), symbols)
    assert ours <= theirs * 1.001 + 8
