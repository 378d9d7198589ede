"""aiompc.crypto.he.bfv, the parts ``test_he_bfv.py`` (encrypt/decrypt/multiply against schoolbook products)
does not reach: plaintext validation and encoding against Python-integer arithmetic, lower levels, the phase's
noise, the Ciphertext container, sparse plaintext encoding, the in-place accumulator, and every typed error."""

from __future__ import annotations

import numpy as np
import pytest
from he_testing import cheetah, keys, params_for, prg

from aiompc.crypto.he import Ciphertext, PlainNTT, add, add_plain, decrypt, encrypt_symmetric, mul_plain
from aiompc.crypto.he.bfv import as_plaintext, encode_plain, multiply_accumulate, multiply_accumulate_into, phase
from aiompc.errors import InputError

N = 2048


def _params(l: int = 8):  # type: ignore[no-untyped-def]
    return params_for(N, 54, l)  # two primes: levels 1 and 2


def _centered(res: np.ndarray, primes: tuple[int, ...]) -> list[int]:
    """CRT of residues ``(L, N)`` to centred Python integers mod ``prod(primes)``."""
    q = 1
    for p in primes:
        q *= p
    out = []
    for j in range(res.shape[-1]):
        v = 0
        for i, p in enumerate(primes):
            qi = q // p
            v += int(res[i, j]) * qi * pow(qi, -1, p)
        v %= q
        out.append(v - q if v > q // 2 else v)
    return out


# --------------------------------------------------------------------------- plaintexts


def test_as_plaintext_reduces_mod_t_in_twos_complement() -> None:
    params = _params(8)
    m = np.arange(-1100, N - 1100, dtype=np.int64)
    got = as_plaintext(params, m)
    assert got.shape == (1, N) and got.dtype == np.uint64
    assert got[0].tolist() == [int(v) % 256 for v in m]
    big = np.full((2, N), 2**63 + 5, dtype=np.uint64)
    assert np.all(as_plaintext(params, big) == 5)
    assert as_plaintext(params, np.ones(N, dtype=bool))[0].tolist() == [1] * N
    assert as_plaintext(params, np.full(N, -1, dtype=np.int8))[0, 0] == 255


@pytest.mark.parametrize("m,match", [
    (np.zeros(N, dtype=np.float32), "plaintext coefficients must be integers, got dtype float32"),
    (np.zeros((1, 1, N), dtype=np.int64), r"shape \(N,\) or \(B, N\) with N = 2048, got \(1, 1, 2048\)"),
    (np.zeros(N - 1, dtype=np.int64), r"got \(2047,\)"),
    (np.array(3), r"got \(\)"),
])
def test_as_plaintext_refusals(m: np.ndarray, match: str) -> None:
    with pytest.raises(InputError, match=match):
        as_plaintext(_params(), m)


@pytest.mark.parametrize("level", [1, 2])
def test_encode_plain_is_the_rounded_scaling(level: int, nprng: np.random.Generator) -> None:
    """Residues of round(q_L·m/t) mod each prime, against Python integers (ties: m·q_L/t is never a half here)."""
    params = _params(8)
    m = nprng.integers(0, 256, (2, N))
    m[0, :3] = [0, 255, 128]
    enc = encode_plain(params, m, level)
    primes = params.primes[:level]
    assert enc.shape == (2, level, N)
    q = 1
    for p in primes:
        q *= p
    for b in range(2):
        want = [(2 * q * int(v) + 256) // 512 for v in m[b]]
        for i, p in enumerate(primes):
            assert enc[b, i].tolist() == [w % p for w in want]


# --------------------------------------------------------------------------- levels and the phase


@pytest.mark.parametrize("level", [1, 2])
def test_a_lower_level_encrypts_and_decrypts(level: int, nprng: np.random.Generator) -> None:
    params = _params(6)
    sk, _ = keys(params)
    m = nprng.integers(0, 64, (3, N), dtype=np.uint64)
    up = encrypt_symmetric(sk, m, prg(level), level=level)
    assert up.c0.shape == (3, level, N) and up.level == level and up.batch == 3
    ct = up.expand()
    assert ct.level == level and ct.basis.primes == params.primes[:level]
    assert np.array_equal(decrypt(sk, ct), m)


def test_the_phase_is_the_encoding_plus_a_small_error(nprng: np.random.Generator) -> None:
    """c0 + c1·s − round(q·m/t) is the encryption error: |e| <= 6σ (the sampler's cut), in both forms."""
    params = _params(8)
    sk, _ = keys(params)
    m = nprng.integers(0, 256, (1, N))
    ct = encrypt_symmetric(sk, m, prg(9)).expand()
    ph = phase(sk, ct)
    assert np.array_equal(ph, phase(sk, ct.to_coeff()))
    primes = np.array(params.primes, np.uint64)[:, None]
    err = _centered(((ph + primes - encode_plain(params, m)) % primes)[0], params.primes)
    assert max(abs(e) for e in err) <= 6 * params.sigma and any(err)


# --------------------------------------------------------------------------- the container


def test_ciphertext_container(nprng: np.random.Generator) -> None:
    params = _params(4)
    sk, _ = keys(params)
    m = nprng.integers(0, 16, (4, N), dtype=np.uint64)
    ct = encrypt_symmetric(sk, m, prg(2)).expand()
    assert len(ct) == 4 and ct.c0.shape == ct.c1.shape == (4, 2, N)
    assert ct.to_ntt() is ct and ct.to_coeff().to_coeff() is not ct
    back = ct.to_coeff().to_ntt()
    assert np.array_equal(back.data, ct.data)  # the transforms invert each other exactly
    assert np.array_equal(decrypt(sk, ct[-1]), m[3:4]) and np.array_equal(decrypt(sk, ct[np.int64(2)]), m[2:3])
    assert np.array_equal(decrypt(sk, ct[1:3]), m[1:3])
    with pytest.raises(IndexError):
        ct[4]


@pytest.mark.parametrize("shape,dtype,match", [
    ((2, 1, 1, N), np.int64, r"uint64 of shape \(2, B, L, 2048\), got int64"),
    ((3, 1, 1, N), np.uint64, "got uint64 \\(3, 1, 1, 2048\\)"),
    ((2, 1, 1, 512), np.uint64, "got uint64"),
    ((2, 1, 3, N), np.uint64, "ciphertext level 3 outside 1..2"),
    ((2, 1, 0, N), np.uint64, "ciphertext level 0 outside 1..2"),
])
def test_ciphertext_refuses_malformed_data(shape: tuple[int, ...], dtype: type, match: str) -> None:
    with pytest.raises(InputError, match=match):
        Ciphertext(_params(), np.zeros(shape, dtype=dtype), False)


# --------------------------------------------------------------------------- plaintexts in NTT form


def test_encode_sparse_equals_the_dense_encoding(nprng: np.random.Generator) -> None:
    params = cheetah(37)
    n = params.n
    exps = np.array([0, 5, n - 1, 17, 5])  # 5 repeated: the last value counts
    values = nprng.integers(-(1 << 20), 1 << 20, (3, exps.size))
    dense = np.zeros((3, n), dtype=np.int64)
    for k, e in enumerate(exps):
        dense[:, e] = values[:, k]
    a, b = PlainNTT.encode(params, dense), PlainNTT.encode_sparse(params, values, exps)
    assert np.array_equal(a.data, b.data) and (a.norm, a.count) == (b.norm, b.count)
    assert b.count == 4 and b.norm == int(np.abs(dense).max())
    assert b.data.dtype == np.uint32 and not b.data.flags.writeable and b.shape == (3,) and b.level == params.levels
    low = PlainNTT.encode_sparse(params, values, exps, level=2)
    assert low.level == 2 and np.array_equal(low.data, a.data[:, :2])


def test_plain_ntt_lifts_to_the_centred_range() -> None:
    params = _params(8)
    w = np.zeros(N, dtype=np.int64)
    w[:4] = [128, 129, 255, -1]  # mod 256: 128 is +128 (t/2 lifts up), 129 is -127, 255 and -1 are -1
    p = PlainNTT.encode(params, w)
    assert p.norm == 128 and p.count == 4


# --------------------------------------------------------------------------- accumulation in place


def test_multiply_accumulate_into_adds_to_the_accumulator(nprng: np.random.Generator) -> None:
    params = cheetah(37)
    sk, _ = keys(params)
    n, j, o = params.n, 18, 2
    m = nprng.integers(0, 1 << 37, (j, n), dtype=np.uint64)
    ct = encrypt_symmetric(sk, m, prg(4)).expand()
    w = np.zeros((o, j, n), dtype=np.int64)
    w[..., :3] = nprng.integers(-(1 << 10), 1 << 10, (o, j, 3))
    wt = PlainNTT.encode(params, w)
    primes = np.array(params.primes, dtype=np.uint64)[:, None]
    start = nprng.integers(0, 1 << 62, (2, o, params.levels, n), dtype=np.uint64) % primes
    out = start.copy()
    multiply_accumulate_into(ct, wt, out)
    want = (start + multiply_accumulate(ct, wt).data) % primes
    assert np.array_equal(out, want)
    view = np.zeros((2, o + 1, params.levels, n), dtype=np.uint64)[:, 1:]  # a strided row range
    multiply_accumulate_into(ct, wt, view)
    assert np.array_equal(view, multiply_accumulate(ct, wt).data)
    with pytest.raises(InputError, match=r"accumulator of shape \(2, 3, 4, 4096\) \(uint64\) does not match"):
        multiply_accumulate_into(ct, wt, np.zeros((2, 3, params.levels, n), dtype=np.uint64))
    with pytest.raises(InputError, match=r"\(int64\) does not match"):
        multiply_accumulate_into(ct, wt, np.zeros((2, o, params.levels, n), dtype=np.int64))
    with pytest.raises(InputError, match=r"do not match 17 ciphertexts \(need \(O, J\)\)"):
        multiply_accumulate_into(ct[:17], wt, out)


# --------------------------------------------------------------------------- typed errors of the operations


def test_operations_refuse_mismatched_levels_params_and_batches(nprng: np.random.Generator) -> None:
    params = _params(8)
    sk, _ = keys(params)
    m = nprng.integers(0, 256, (2, N))
    top = encrypt_symmetric(sk, m, prg(1)).expand()
    low = encrypt_symmetric(sk, m, prg(2), level=1).expand()
    with pytest.raises(InputError, match="cannot add ciphertexts at levels 2 and 1"):
        add(top, low)
    with pytest.raises(InputError, match="3 plaintexts for a batch of 2 ciphertexts"):
        add_plain(top, np.zeros((3, N), dtype=np.int64))
    w = PlainNTT.encode(params, np.ones((2, N), dtype=np.int64))
    with pytest.raises(InputError, match="plaintext level 2 != ciphertext level 1"):
        mul_plain(low, w)
    with pytest.raises(InputError, match="plaintext and ciphertext use different parameters"):
        mul_plain(top, PlainNTT.encode(_params(9), np.ones(N, dtype=np.int64)))
    with pytest.raises(InputError, match=r"plaintext batch \(3,\) does not match ciphertext batch 2"):
        mul_plain(top, PlainNTT.encode(params, np.ones((3, N), dtype=np.int64)))
    with pytest.raises(InputError, match=r"weights must be integers of shape \(\.\.\., 2048\), got float64"):
        PlainNTT.encode(params, np.ones(N))


@pytest.mark.parametrize("level", [0, -1, 3])
@pytest.mark.parametrize("what", ["encrypt", "plain", "encode"])
def test_a_level_outside_the_parameters_is_an_input_error(what: str, level: int) -> None:
    params = _params(8)
    sk, _ = keys(params)
    m = np.zeros(N, dtype=np.int64)
    with pytest.raises(InputError, match="level"):
        if what == "encrypt":
            encrypt_symmetric(sk, m, prg(1), level=level)
        elif what == "plain":
            PlainNTT.encode(params, m, level=level)
        else:
            encode_plain(params, m, level)
