"""Automorphisms with Galois keys and PackLWEs output packing: bit-exact against plaintext references on
random and edge inputs, serialization, and the measured key-switching noise against its stated bound."""

from __future__ import annotations

import functools

import numpy as np
import pytest
from he_testing import cheetah, keys, params_for, prg

from aiompc.crypto.he import (
    PlainNTT,
    ServerPipeline,
    decrypt,
    decrypt_result,
    encrypt_symmetric,
    measure_noise,
    measure_result_noise,
    multiply_accumulate,
    plan_output,
    rerandomize,
)
from aiompc.crypto.he.galois import (
    GaloisKeys,
    apply_automorphism,
    automorphism_map,
    galois_keys,
    key_switch_automorphism,
)
from aiompc.crypto.he.packing import (
    finish_packed,
    key_switches,
    pack_coefficients,
    packed_positions,
    packing_elements,
    packing_groups,
    packing_noise,
)
from aiompc.crypto.he.rns import get_basis, reduce_signed
from aiompc.errors import InputError, ProtocolError


@functools.cache
def gkeys(params, seed: int = 7) -> GaloisKeys:
    sk, _ = keys(params)
    return galois_keys(sk, packing_elements(params.n), prg(seed))


def _auto_plain(m: np.ndarray, g: int, t: int) -> np.ndarray:
    """σ_g on plaintexts mod t by the definition: X^i -> X^(g·i mod 2N), X^(N+k) = −X^k."""
    n = m.shape[-1]
    out = np.zeros_like(m, dtype=np.int64)
    for i in range(n):
        k = (g * i) % (2 * n)
        if k < n:
            out[..., k] += m[..., i]
        else:
            out[..., k - n] -= m[..., i]
    return out % t


def test_automorphism_map_is_the_definition():
    n = 16
    rng = np.random.default_rng(0)
    a = rng.integers(0, 97, n)
    for g in (3, 5, 17, 31, 2 * n - 1):
        src, neg = automorphism_map(n, g)
        got = np.where(neg, -a[src], a[src]) % 97
        assert np.array_equal(got, _auto_plain(a, g, 97))
    with pytest.raises(InputError):
        automorphism_map(n, 4)


@pytest.mark.parametrize("n,bits,l,g", [(2048, 54, 8, 5), (4096, 0, 16, 3), (4096, 0, 16, 4097), (8192, 108, 20, 9)])
def test_key_switched_automorphism_decrypts_exactly(n, bits, l, g):
    params = cheetah(l) if n == 4096 else params_for(n, bits, l)
    sk, _ = keys(params)
    gk = galois_keys(sk, (g,), prg(3))
    rng = np.random.default_rng(n + g)
    m = np.stack([rng.integers(0, params.t, n), np.zeros(n, np.int64), np.full(n, params.t - 1)])
    ct = encrypt_symmetric(sk, m, prg(4)).expand()
    out = key_switch_automorphism(ct, g, gk)
    assert np.array_equal(decrypt(sk, out), _auto_plain(m, g, params.t))
    # the plain automorphism on a coefficient-form ciphertext decrypts under σ_g(s) only: keys are needed
    basis = get_basis(params.primes)
    raw = apply_automorphism(ct.to_coeff().data, g, basis.col)
    assert raw.shape == ct.data.shape


def test_evaluation_domain_automorphism_and_monomials_match_the_transform():
    """The NTT-domain permutation and closed-form monomial transforms equal the coefficient-domain definitions."""
    from aiompc.crypto.he.galois import monomial_ntt, ntt_automorphism_map
    from aiompc.crypto.he.ntt import get_ntt

    params = params_for(2048, 54, 8)
    basis = get_basis(params.primes)
    ntt = get_ntt(params.n, params.primes)
    rng = np.random.default_rng(3)
    a = np.stack([rng.integers(0, p, params.n) for p in params.primes]).astype(np.uint64)
    for g in (3, 5, 2 * params.n - 1, params.n + 1):
        want = ntt.forward(apply_automorphism(a, g, basis.col))
        assert np.array_equal(ntt.forward(a)[:, ntt_automorphism_map(params.n, g)], want)
    for e in (0, 1, 7, params.n - 1, params.n, -3):
        mono = np.zeros(params.n, np.int64)
        mono[e % params.n] = 1 if (e % (2 * params.n)) < params.n else -1
        assert np.array_equal(monomial_ntt(params, np.array([e]))[0], ntt.forward(reduce_signed(mono, basis)))


def test_galois_keys_round_trip_and_reject_garbage():
    params = cheetah(16)
    gk = gkeys(params)
    data = gk.to_bytes()
    assert len(data) == gk.wire_bytes
    back = GaloisKeys.from_bytes(params, gk.elements, data)
    assert np.array_equal(back.k0, gk.k0) and back.seed == gk.seed
    with pytest.raises(ProtocolError):
        GaloisKeys.from_bytes(params, gk.elements[:-1], data)
    bad = bytearray(data)
    bad[100] ^= 1
    with pytest.raises(ProtocolError):
        GaloisKeys.from_bytes(params, gk.elements, bytes(bad))
    with pytest.raises(InputError):
        key_switch_automorphism(encrypt_symmetric(keys(params)[0], np.zeros(params.n, np.int64), prg(1)).expand(),
                                7, GaloisKeys(params, gk.elements[:1], gk.k0[:1], gk.seed))


def _pack_case(params, m: np.ndarray, index: np.ndarray, positions: np.ndarray, seed: int):
    sk, _ = keys(params)
    ct = encrypt_symmetric(sk, m, prg(seed)).expand()
    packed = pack_coefficients(ct, gkeys(params), index, positions)
    want = m[index, positions] % params.t
    got = np.concatenate([decrypt(sk, packed[g])[0, packed_positions(params.n, k1 - k0)]
                          for g, (k0, k1) in enumerate(packing_groups(params.n, index.size))])
    return got, want, packed, sk


@pytest.mark.parametrize("count", [1, 2, 3, 17, 64])
def test_pack_random_leaves_bit_exact(count):
    params = cheetah(16)
    rng = np.random.default_rng(count)
    m = rng.integers(0, params.t, (5, params.n))
    index = rng.integers(0, 5, count)
    positions = rng.choice(params.n, count, replace=False)
    got, want, packed, _ = _pack_case(params, m, index, positions, count)
    assert packed.batch == 1
    assert np.array_equal(got, want)


def test_pack_edges_zero_max_and_wrapping_positions():
    params = cheetah(16)
    n, t = params.n, params.t
    m = np.stack([np.zeros(n, np.int64), np.full(n, t - 1), np.arange(n) % t])
    index = np.array([0, 1, 1, 2, 2, 0, 1, 2])
    positions = np.array([0, 0, n - 1, n - 1, 1, n - 1, n // 2, 0])
    got, want, *_ = _pack_case(params, m, index, positions, 11)
    assert np.array_equal(got, want)


@pytest.mark.slow
def test_pack_beyond_one_batch_and_padding():
    """130 leaves: depth-first recursion over chunks, a non-power-of-two count (padding), several N."""
    for params, count in ((cheetah(12), 130), (params_for(8192, 108, 18), 70)):
        rng = np.random.default_rng(count)
        m = rng.integers(0, params.t, (9, params.n))
        index = rng.integers(0, 9, count)
        positions = rng.integers(0, params.n, count)
        got, want, *_ = _pack_case(params, m, index, positions, 5)
        assert np.array_equal(got, want)


def test_groups_and_switch_counts():
    assert packing_groups(4096, 8192) == [(0, 4096), (4096, 8192)]
    assert key_switches(4096, 8192) == 2 * 4095
    assert key_switches(4096, 5) == 7 and key_switches(4096, 1) == 0
    assert np.array_equal(packed_positions(4096, 3), [0, 1024, 2048])
    with pytest.raises(InputError):
        packed_positions(4096, 0)


@pytest.mark.parametrize("count", [4, 64])
def test_packing_noise_stays_under_its_bound(count):
    """The leaves' noise is carried over exactly (the 2^-l scaling cancels); what packing adds is below
    :func:`packing_noise`, measured on a full-range product (the worst digits of re-randomised c1's)."""
    params = cheetah(16)
    sk, pk = keys(params)
    rng = np.random.default_rng(count + 100)
    x = rng.integers(0, params.t, (4, params.n))
    w = rng.integers(-8, 8, (2, 4, params.n))
    ct = rerandomize(multiply_accumulate(encrypt_symmetric(sk, x, prg(2)).expand(), PlainNTT.encode(params, w)),
                     pk, prg(3))
    index = rng.integers(0, 2, count)
    positions = rng.integers(0, params.n, count)
    before = measure_noise(sk, ct, decrypt(sk, ct))[index, positions]
    packed = pack_coefficients(ct, gkeys(params), index, positions)
    pos = packed_positions(params.n, count)
    expect = np.zeros((1, params.n), np.uint64)
    expect[0, pos] = decrypt(sk, ct)[index, positions]
    after = measure_noise(sk, packed, expect)[0, pos]
    added = np.abs(after - before).max()
    bound = packing_noise(params, count)
    print(f"packing noise measured 2^{np.log2(added):.1f}, bound 2^{np.log2(bound):.1f}")
    assert added > 0  # the key switching really adds noise
    assert added <= bound
    assert bound < params.q / (2 * params.t) / 2**20  # and the bound leaves room


def test_strided_packing_noise_is_bounded_by_its_leaf_count():
    """A strided group carries many values per leaf (here 128 per leaf, 32 leaves: 4096 values) but its tree has
    only log2(32) levels: the noise added at every packed coefficient stays below ``packing_noise(params, 32)``,
    the bound the planner now uses for it (not the much larger bound of a 4096-leaf tree)."""
    from aiompc.crypto.he.packing import leaf_offsets, pack_strided, refresh

    params = cheetah(16)
    sk, pk = keys(params)
    n, count, stride_bits = params.n, 32, 5
    rng = np.random.default_rng(31)
    x = rng.integers(0, params.t, (4, n))
    w = rng.integers(-8, 8, (count, 4, n))
    ct = refresh(multiply_accumulate(encrypt_symmetric(sk, x, prg(32)).expand(), PlainNTT.encode(params, w)),
                 pk, prg(33))
    plain = decrypt(sk, ct)
    lattice = np.arange(0, n, 1 << stride_bits)
    before = measure_noise(sk, ct, plain)[:, lattice]  # (leaf, lattice point)
    packed = pack_strided(ct, gkeys(params), np.arange(count), stride_bits)
    offsets = leaf_offsets(n, count, stride_bits)
    expect = np.zeros((1, n), np.uint64)
    for k in range(count):
        expect[0, lattice + offsets[k]] = plain[k, lattice]
    after = measure_noise(sk, packed, expect)[0]
    added = max(np.abs(after[lattice + offsets[k]] - before[k]).max() for k in range(count))
    bound = packing_noise(params, count)
    print(f"strided packing noise measured 2^{np.log2(added):.1f}, bound 2^{np.log2(bound):.1f}")
    assert 0 < added <= bound
    assert bound < packing_noise(params, n) / 2**8


def test_refresh_keeps_the_message_and_draws_a_fresh_c1():
    """refresh adds (b·u, a·u + e1): same plaintext, a c1 that differs between two draws (fresh RLWE samples), and
    phase noise e_pk·u + e1·s within the re-randomisation bound that the flooding covers (no e0 is needed)."""
    from aiompc.crypto.he.packing import refresh

    params = cheetah(16)
    sk, pk = keys(params)
    rng = np.random.default_rng(21)
    m = rng.integers(0, params.t, (3, params.n))
    m[0, :4] = [0, params.t - 1, params.t // 2, 1]
    ct = encrypt_symmetric(sk, m, prg(22)).expand()
    a, b = refresh(ct, pk, prg(23)), refresh(ct, pk, prg(24))
    assert a.ntt_form and np.array_equal(decrypt(sk, a), m % params.t) and np.array_equal(decrypt(sk, b), m % params.t)
    assert not np.array_equal(a.to_coeff().c1, b.to_coeff().c1)
    assert not np.array_equal(a.to_coeff().c1, ct.to_coeff().c1)
    added = np.abs(measure_noise(sk, a, m % params.t) - measure_noise(sk, ct, m % params.t)).max()
    s_e, z = params.sigma + 0.5, 9.5  # e_pk·u (N terms) + e1·s (N terms): proxy 2N·s_e², tail well below 2^-40
    assert 0 < added <= z * s_e * np.sqrt(2 * params.n)


def test_finish_packed_end_to_end_with_mask_and_flooding():
    """Server: multiply, re-randomise, pack, mask, flood, switch, drop, select; client: decrypt = y − r."""
    params = cheetah(16)
    sk, pk = keys(params)
    rng = np.random.default_rng(5)
    x = rng.integers(0, params.t, (3, params.n))
    w = rng.integers(-8, 8, (6, 3, 50))
    wpoly = np.zeros((6, 3, params.n), np.int64)
    wpoly[..., :50] = w
    acc = multiply_accumulate(encrypt_symmetric(sk, x, prg(2)).expand(), PlainNTT.encode(params, wpoly))
    y = decrypt(sk, acc)
    count = 6 * 16
    index = np.repeat(np.arange(6), 16)
    positions = np.tile(np.arange(100, 116), 6)
    pipeline = ServerPipeline(weight_norm=8, weight_count=50, accumulations=3, visible=count,
                              packing_noise=packing_noise(params, count))
    plan = plan_output(params, pipeline)
    packed = pack_coefficients(rerandomize(acc, pk, prg(3)), gkeys(params), index, positions)
    pos = packed_positions(params.n, count)
    r = rng.integers(0, params.t, count).astype(np.uint64)
    mask = np.zeros((1, params.n), np.uint64)
    mask[0, pos] = (np.uint64(0) - r) & np.uint64(params.t - 1)
    res = finish_packed(packed, mask, plan, prg(9), pos)
    got = decrypt_result(sk, res)[0]
    assert np.array_equal((got + r) & np.uint64(params.t - 1), y[index, positions])
    noise = np.abs(measure_result_noise(sk, res, got)).max()
    assert noise < res.modulus / (2 * params.t)
    assert len(res.to_bytes()) < 6 * (params.n * res.bits1) // 8  # smaller than six unpacked c1's
    with pytest.raises(InputError):
        pack_coefficients(acc, gkeys(params), np.array([6]), np.array([0]))


def test_pipeline_rejects_negative_packing_noise():
    with pytest.raises(InputError):
        ServerPipeline(weight_norm=1, weight_count=1, packing_noise=-1.0)




@pytest.mark.parametrize("stride_bits,count", [(3, 8), (5, 3), (8, 7), (0, 1)])
def test_pack_strided_whole_ciphertexts(stride_bits, count):
    """Ciphertexts whose values fill the multiples of 2^m (the matmul layout's outputs) pack whole: every
    multiple of 2^m of leaf k lands at c + k·2^(m−ℓ), bit for bit, with 2^ℓ − 1 key switches."""
    from aiompc.crypto.he.packing import leaf_offsets, pack_strided

    params = cheetah(16)
    sk, _ = keys(params)
    n, t = params.n, params.t
    rng = np.random.default_rng(stride_bits * 10 + count)
    m = rng.integers(0, t, (count + 1, n))
    m[0, ::4] = t - 1
    index = rng.permutation(count + 1)[:count]
    ct = encrypt_symmetric(sk, m, prg(stride_bits)).expand()
    packed = pack_strided(ct, gkeys(params), index, stride_bits)
    dec = decrypt(sk, packed)[0]
    lattice = np.arange(0, n, 1 << stride_bits)
    offsets = leaf_offsets(n, count, stride_bits)
    for k in range(count):
        assert np.array_equal(dec[lattice + offsets[k]], m[index[k], lattice] % t)
    with pytest.raises(InputError):
        leaf_offsets(n, (1 << stride_bits) + 1, stride_bits)
