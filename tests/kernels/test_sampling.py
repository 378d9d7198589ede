"""The compiled rejection filter: PRG.uniform_mod gives exactly the numpy filter's stream."""

from __future__ import annotations

import numpy as np
import pytest

from aiompc.crypto.prg import PRG
from aiompc.kernels.sampling import take_below


def _uniform_mod_reference(prg: PRG, modulus: int, n: int) -> np.ndarray:
    """PRG.uniform_mod as it was in numpy (test reference)."""
    bits = (modulus - 1).bit_length()
    out = np.empty(n, dtype=np.uint64)
    filled = 0
    while filled < n:
        need = n - filled
        cand = prg.integers(bits, need + need // 2 + 16)
        cand = cand[cand < np.uint64(modulus)][:need]
        out[filled : filled + cand.size] = cand
        filled += cand.size
    return out


@pytest.mark.parametrize("modulus", [2, 3, 5, 12289, 268369921, (1 << 30) + 1, (1 << 61) - 1, 1 << 63])
@pytest.mark.parametrize("n", [1, 17, 5000])
def test_uniform_mod_is_the_numpy_filters_stream(modulus: int, n: int) -> None:
    seed = bytes(range(32))
    a, b = PRG(seed), PRG(seed)
    assert np.array_equal(a.uniform_mod(modulus, n), _uniform_mod_reference(b, modulus, n))
    assert a.random_bytes(16) == b.random_bytes(16)  # the same number of stream bytes was consumed


def test_take_below_stops_when_full_and_keeps_order() -> None:
    words = np.array([9, 1, 7, 2, 8, 3], dtype=np.uint64)
    out = np.zeros(4, dtype=np.uint64)
    assert take_below(words, np.uint64(7), np.uint64(5), out, 1) == 4  # 9&7=1, 1, 7 rejected, 2
    assert out.tolist() == [0, 1, 1, 2]


def _gaussian_reference(words: np.ndarray, sigma: float, tail: float) -> np.ndarray:
    """PRG.gaussian as it was in numpy (test reference)."""
    u = (words >> np.uint64(11)).astype(np.float64) * (1.0 / (1 << 53))
    u1 = np.maximum(u[0], 1.0 / (1 << 53))
    z = np.sqrt(-2.0 * np.log(u1)) * np.cos(2.0 * np.pi * u[1])
    return np.rint(np.clip(z * sigma, -tail * sigma, tail * sigma)).astype(np.int64)


@pytest.mark.parametrize("sigma, tail", [(3.19, 6.0), (1.0, 2.0), (40.0, 6.0)])
def test_gaussian_kernel_is_the_numpy_formula(sigma: float, tail: float) -> None:
    from aiompc.kernels.sampling import gaussian_from_words

    words = PRG(bytes(32)).words((2, 300_000))
    words[0, :4] = [0, 1, (1 << 11) - 1, (1 << 64) - 1]  # u1 = 0 (clamped to 2**-53), its neighbours, the top
    words[1, :4] = [0, (1 << 64) - 1, 1 << 62, 3 << 62]  # cos at 0, 2π⁻, π/2, 3π/2
    out = np.empty(words.shape[1], dtype=np.int64)
    gaussian_from_words(words, sigma, tail, out)
    want = _gaussian_reference(words, sigma, tail)
    assert np.array_equal(out, want)
    assert np.abs(out).max() <= round(tail * sigma) and abs(out.mean()) < 0.05 * sigma
    seed = bytes(range(32))  # PRG.gaussian draws the same words and gives the same samples
    assert np.array_equal(PRG(seed).gaussian(sigma, (7, 100), tail),
                          _gaussian_reference(PRG(seed).words((2, 700)), sigma, tail).reshape(7, 100))
