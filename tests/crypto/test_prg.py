import numpy as np
import pytest

from aiompc.crypto.prg import PRG


def test_seeded_prg_is_deterministic_and_fresh_prg_is_not() -> None:
    seed = bytes(range(32))
    assert PRG(seed).random_bytes(64) == PRG(seed).random_bytes(64)
    assert PRG().random_bytes(32) != PRG().random_bytes(32)
    with pytest.raises(ValueError):
        PRG(b"short")


def test_integers_respect_bit_width_and_cover_range() -> None:
    p = PRG(bytes(32))
    for bits in (0, 1, 4, 37, 63, 64):
        x = p.integers(bits, 5000)
        assert x.dtype == np.uint64
        if bits < 64:
            assert int(x.max()) < (1 << bits)
        if 1 <= bits <= 4:
            assert len(np.unique(x)) == 1 << bits


def test_uniform_mod_is_unbiased_enough() -> None:
    x = PRG(bytes(32)).uniform_mod(3, 30000)
    counts = np.bincount(x.astype(np.int64), minlength=3)
    assert counts.min() > 9400 and counts.max() < 10600  # ±6 sigma
    assert PRG().uniform_mod(2**61 - 1, 100).max() < 2**61 - 1


def test_distributions_shapes_and_moments() -> None:
    p = PRG(bytes(32))
    t = p.ternary((100, 7))
    assert t.shape == (100, 7) and set(np.unique(t)) <= {-1, 0, 1}
    g = p.gaussian(3.2, 100000)
    assert abs(g.std() - 3.2) < 0.1 and abs(g.mean()) < 0.1 and np.abs(g).max() <= 20
    b = p.bits(10001)
    assert b.shape == (10001,) and 4700 < b.sum() < 5300
    cb = p.centered_binomial(2, 10000)
    assert np.abs(cb).max() <= 2


def test_repr_hides_key() -> None:
    assert "secret" in repr(PRG())
