"""The fused re-randomisation kernels against plain references: Python integers for the elementwise kernels
(edge residues, extreme signed samples, full-range limbs), and the numpy re-randomisation they replaced, bit for
bit from the same PRG stream, for every prime count and N used (Cheetah's 4 × 27-bit primes at N = 4096, the
quantized sets' 1–3 primes at N = 2048..8192), with and without flooding, from NTT or coefficient form."""

from __future__ import annotations

import numpy as np
import pytest

from aiompc.crypto.he import Ciphertext
from aiompc.crypto.he.ntt import get_ntt
from aiompc.crypto.he.result import rerandomize, sample_flood
from aiompc.crypto.he.rns import get_basis, mod_add, mod_mul, reduce_signed
from aiompc.crypto.prg import PRG
from aiompc.kernels.rerandomize import add_noise_into, add_pk_product_into
from tests.crypto.he.he_testing import cheetah, keys, params_for, small_primes


def _edge_residues(rng: np.random.Generator, shape: tuple[int, ...], primes: np.ndarray) -> np.ndarray:
    """Residues below each prime (axis -2), with zeros and ``p − 1`` planted."""
    col = primes.reshape(-1, 1)
    x = rng.integers(0, 1 << 62, shape, dtype=np.uint64) % col
    flat = x.reshape(-1)
    flat[::7] = 0
    x[..., ::5] = col - np.uint64(1)
    return x


@pytest.mark.parametrize("primes", [small_primes(64, 3, 1 << 14), small_primes(4096, 4, 1 << 28), small_primes(2048, 1)])
def test_kernels_equal_python_integers(primes: tuple[int, ...], nprng: np.random.Generator) -> None:
    n, b = 64, 3
    ps = np.array(primes, dtype=np.uint64)
    data = _edge_residues(nprng, (2, b, len(primes), n), ps)
    pk = _edge_residues(nprng, (2, len(primes), n), ps)
    u = _edge_residues(nprng, (b, len(primes), n), ps)
    got = data.copy()
    add_pk_product_into(got, pk, u, ps)
    want = [[[[(int(data[k, j, l, i]) + int(pk[k, l, i]) * int(u[j, l, i])) % primes[l] for i in range(n)]
              for l in range(len(primes))] for j in range(b)] for k in range(2)]
    assert np.array_equal(got, np.array(want, dtype=np.uint64))

    info = np.iinfo(np.int64)
    e0 = nprng.integers(-30, 31, (b, n))
    e1 = nprng.integers(info.min, info.max, (b, n), endpoint=True)
    e0[0, :4] = [info.min, info.max, -1, 0]
    e1[1, :3] = [info.min, info.max, 0]
    for bits in (0, 20, 32, 75, 96):
        n_limbs = -(-bits // 32)
        limbs = nprng.integers(0, 1 << 32, (n_limbs, b, n), dtype=np.uint64)
        if n_limbs:
            limbs[:, 0, :5] = (1 << 32) - 1  # full-range limbs
            limbs[-1] &= np.uint64((1 << (bits - 32 * (n_limbs - 1))) - 1)
        offset = np.array([(1 << (bits - 1)) % p if bits else 0 for p in primes], dtype=np.uint64)
        got = data.copy()
        add_noise_into(got, e0, e1, limbs, offset, ps)
        for j in range(b):
            for i in range(0, n, 3):
                x = sum(int(limbs[k, j, i]) << (32 * k) for k in range(n_limbs)) - (1 << (bits - 1) if bits else 0)
                for l, p in enumerate(primes):
                    assert int(got[0, j, l, i]) == (int(data[0, j, l, i]) + int(e0[j, i]) + x) % p
                    assert int(got[1, j, l, i]) == (int(data[1, j, l, i]) + int(e1[j, i])) % p


def _rerandomize_reference(ct: Ciphertext, pk, prg: PRG, flood_bits: int) -> np.ndarray:
    """The numpy re-randomisation the kernels replaced (same PRG draws in the same order)."""
    params, basis = ct.params, ct.basis
    ntt = get_ntt(params.n, basis.primes)
    shape = (ct.batch, params.n)
    u, e0, e1 = prg.ternary(shape), prg.gaussian(params.sigma, shape), prg.gaussian(params.sigma, shape)
    z = mod_mul(pk.ntt_pair(ct.level)[:, None], ntt.forward_signed(u)[None], basis.col)
    data = ntt.inverse(mod_add(ct.data, z, basis.col)) if ct.ntt_form else mod_add(ct.data, ntt.inverse(z), basis.col)
    noise0 = reduce_signed(e0, basis)
    if flood_bits:
        noise0 = mod_add(noise0, sample_flood(prg, flood_bits, shape, basis), basis.col)
    data[0] = mod_add(data[0], noise0, basis.col)
    data[1] = mod_add(data[1], reduce_signed(e1, basis), basis.col)
    return data


@pytest.mark.parametrize("which", ["cheetah", "n2048x1", "n8192x3"])
def test_rerandomize_equals_the_numpy_steps(which: str, nprng: np.random.Generator) -> None:
    params = {"cheetah": lambda: cheetah(37), "n2048x1": lambda: params_for(2048, 27, 8),
              "n8192x3": lambda: params_for(8192, 81, 16)}[which]()
    _, pk = keys(params)
    basis = get_basis(params.primes)
    data = _edge_residues(nprng, (2, 3, len(params.primes), params.n), basis.col.reshape(-1))
    before = data.copy()
    for ntt_form in (True, False):
        ct = Ciphertext(params, data, ntt_form)
        for flood in (0, 45, 70):
            got = rerandomize(ct, pk, PRG(b"s" * 32), flood).data
            assert np.array_equal(got, _rerandomize_reference(ct, pk, PRG(b"s" * 32), flood))
    assert np.array_equal(data, before)  # the input ciphertext is left as it was
