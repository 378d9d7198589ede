"""BFV encryption, decryption and plaintext arithmetic against plaintext references."""

from __future__ import annotations

import numpy as np
import pytest
from he_testing import cheetah, keys, negacyclic_mod_2k, negacyclic_mod_p, params_for, prg

from aiompc.crypto.he import (
    Ciphertext,
    PlainNTT,
    ServerPipeline,
    add,
    add_plain,
    decrypt,
    encrypt_symmetric,
    estimate,
    expand_uniform,
    measure_noise,
    mul_plain,
    multiply_accumulate,
)
from aiompc.crypto.he.ntt import get_ntt
from aiompc.crypto.he.rns import get_basis
from aiompc.crypto.prg import PRG
from aiompc.errors import InputError

CASES = [  # (N, modulus bits, l)
    (1024, 27, 1),
    (1024, 27, 4),
    (2048, 54, 20),
    (4096, 109, 37),
    (4096, 90, 60),
    (8192, 120, 40),
]


def _plain(rng: np.random.Generator, shape: tuple[int, ...], l: int) -> np.ndarray:
    m = rng.integers(0, 1 << l, size=shape, dtype=np.uint64)
    m.reshape(-1)[:3] = [0, (1 << l) - 1, 1 << (l - 1)]  # edges
    return m


@pytest.mark.parametrize("n,bits,l", CASES)
def test_decrypt_encrypt(n: int, bits: int, l: int) -> None:
    params = params_for(n, bits, l)
    sk, _ = keys(params)
    rng = np.random.default_rng(n + l)
    m = _plain(rng, (3, n), l)
    ct = encrypt_symmetric(sk, m, prg(n + l)).expand()
    assert ct.ntt_form and ct.data.shape == (2, 3, params.levels, n)
    assert np.array_equal(decrypt(sk, ct), m)
    assert np.array_equal(decrypt(sk, ct.to_coeff()), m)
    assert np.abs(measure_noise(sk, ct, m)).max() <= params.error_bound + 0.5


def test_signed_plaintexts_wrap_mod_t() -> None:
    params = params_for(2048, 54, 12)
    sk, _ = keys(params)
    m = np.arange(-1024, 1024, dtype=np.int64)
    ct = encrypt_symmetric(sk, m, prg(3)).expand()
    assert np.array_equal(decrypt(sk, ct)[0], m.astype(np.uint64) & np.uint64(params.t - 1))


def test_seeded_encryption_equals_the_expanded_form() -> None:
    """c0 + a·s = round(q·m/t) + e exactly, with a re-derived from the seed alone and the product
    computed by schoolbook multiplication (no NTT), and e the PRG's next Gaussian draw."""
    params = params_for(1024, 27, 5)
    sk, _ = keys(params)
    rng = np.random.default_rng(0)
    m = _plain(rng, (2, 1024), 5)
    seed_bytes = b"\x11" * 32
    up = encrypt_symmetric(sk, m, PRG(seed_bytes))
    replay = PRG(seed_bytes)
    seed = replay.seed()
    e = replay.gaussian(params.sigma, (2, 1024))
    assert up.seed == seed
    c0, seed_again = up  # the (c0, seed) pair of the wire format
    assert c0 is up.c0 and seed_again == seed
    p = params.primes[0]
    a_hat = expand_uniform(params, seed, 2)
    assert np.array_equal(a_hat, expand_uniform(params, seed, 2))  # deterministic
    a = get_ntt(1024, params.primes).inverse(a_hat)
    s = sk.s.astype(np.int64) % p
    q, t = params.q, params.t
    for b in range(2):
        lhs = (up.c0[b, 0] + negacyclic_mod_p(a[b, 0], s, p)) % np.uint64(p)
        want = [((2 * q * int(mi) + t) // (2 * t) + int(ei)) % p for mi, ei in zip(m[b], e[b])]
        assert lhs.tolist() == want
    full = up.expand()
    assert np.array_equal(full.c1, a_hat)
    assert np.array_equal(get_ntt(1024, params.primes).inverse(full.c0), up.c0)


def test_expansion_prefix_property() -> None:
    params = cheetah()
    seed = b"\x05" * 32
    assert np.array_equal(expand_uniform(params, seed, 2, 2), expand_uniform(params, seed, 2, 4)[:, :2])
    a = expand_uniform(params, seed, 4)
    assert (a < np.array(params.primes, dtype=np.uint64)[:, None]).all()
    with pytest.raises(InputError):
        expand_uniform(params, b"short", 1)


MUL_CASES = [(1024, 27, 4), (4096, 109, 37), (8192, 120, 40)]


@pytest.mark.parametrize("n,bits,l", MUL_CASES)
def test_mul_plain_full_range_matches_schoolbook(n: int, bits: int, l: int) -> None:
    params = params_for(n, bits, l) if n != 4096 else cheetah(l)
    sk, _ = keys(params)
    # the configuration is decryptable by the estimator's own account (no flooding here)
    assert estimate(params, ServerPipeline(params.t // 2, n, 1, plain_before_multiply=False,
                                           plain_after_multiply=0, rerandomize=False, flood=False)).decryptable
    rng = np.random.default_rng(n)
    batch = 2 if n < 8192 else 1
    m = _plain(rng, (batch, n), l)
    w = _plain(rng, (batch, n), l)  # full range mod t: centered lift up to t/2
    ct = encrypt_symmetric(sk, m, prg(n)).expand()
    wt = PlainNTT.encode(params, w)
    assert wt.norm == params.t // 2 and wt.count <= n
    got = decrypt(sk, mul_plain(ct, wt))
    for b in range(batch):
        assert np.array_equal(got[b], negacyclic_mod_2k(m[b], w[b], l))
    # one plaintext broadcast over the batch
    one = PlainNTT.encode(params, w[0])
    got1 = decrypt(sk, mul_plain(ct, one))
    assert np.array_equal(got1[-1], negacyclic_mod_2k(m[-1], w[0], l))


def test_multiply_accumulate_matches_reference() -> None:
    params = cheetah(37)
    sk, _ = keys(params)
    n, n_in, n_out = params.n, 20, 3  # 20 inputs crosses the 16-product lazy-reduction block
    rng = np.random.default_rng(11)
    m = _plain(rng, (n_in, n), 37)
    w = np.zeros((n_out, n_in, n), dtype=np.int64)
    idx = rng.choice(n, 9, replace=False)
    w[..., idx] = rng.integers(-(1 << 12), 1 << 12, size=(n_out, n_in, 9))
    w[0, 0, idx[0]] = -(1 << 12)
    ct = encrypt_symmetric(sk, m, prg(5)).expand()
    acc = multiply_accumulate(ct, PlainNTT.encode(params, w))
    assert acc.batch == n_out and acc.ntt_form
    got = decrypt(sk, acc)
    mask = np.uint64(params.t - 1)
    for o in range(n_out):
        ref = np.zeros(n, dtype=np.uint64)
        for j in range(n_in):
            ref += negacyclic_mod_2k(m[j], w[o, j], 64)
        assert np.array_equal(got[o], ref & mask)
    # a single output from (J,)-shaped weights equals the explicit sum of mul_plain results
    single = multiply_accumulate(ct, PlainNTT.encode(params, w[1]))
    assert np.array_equal(decrypt(sk, single)[0], got[1])
    with pytest.raises(InputError):
        multiply_accumulate(ct[:5], PlainNTT.encode(params, w))


def test_add_plain_and_add() -> None:
    params = params_for(2048, 54, 16)
    sk, _ = keys(params)
    rng = np.random.default_rng(2)
    m, x, y = (_plain(rng, (2, 2048), 16) for _ in range(3))
    ct = encrypt_symmetric(sk, m, prg(7)).expand()
    mask = np.uint64(params.t - 1)
    for form in (ct, ct.to_coeff()):
        assert np.array_equal(decrypt(sk, add_plain(form, x)), (m + x) & mask)
        assert np.array_equal(decrypt(sk, add_plain(form, x[0])), (m + x[0]) & mask)  # broadcast
    ct2 = encrypt_symmetric(sk, y, prg(8)).expand().to_coeff()
    assert np.array_equal(decrypt(sk, add(ct, ct2)), (m + y) & mask)
    assert np.array_equal(decrypt(sk, ct[1]), m[1:2]) and len(ct[-1]) == 1
    with pytest.raises(InputError):
        add_plain(ct, np.zeros((3, 2048), dtype=np.uint64))


def test_input_validation() -> None:
    params = params_for(1024, 27, 4)
    sk, _ = keys(params)
    with pytest.raises(InputError):
        encrypt_symmetric(sk, np.zeros(1000, dtype=np.int64), prg(1))
    with pytest.raises(InputError):
        encrypt_symmetric(sk, np.zeros(1024, dtype=np.float64), prg(1))
    with pytest.raises(InputError):
        Ciphertext(params, np.zeros((2, 1, 1, 1024), dtype=np.int64), False)
    with pytest.raises(InputError):
        PlainNTT.encode(params, np.zeros(7, dtype=np.int64))
    other = params_for(1024, 27, 5)
    ct = encrypt_symmetric(sk, np.zeros(1024, dtype=np.int64), prg(1)).expand()
    with pytest.raises(InputError):
        mul_plain(ct, PlainNTT.encode(other, np.ones(1024, dtype=np.int64)))
    assert get_basis(params.primes).q == params.q
