"""Finishing a result: re-randomisation, flooding, modulus switching, dropped bits, selected outputs —
correctness against plaintext references, and measured noise against the estimator's bounds."""

from __future__ import annotations

import numpy as np
import pytest
from he_testing import cheetah, keys, negacyclic_mod_2k, params_for, prg

from aiompc.crypto.he import (
    OutputPlan,
    PlainNTT,
    ServerPipeline,
    add_plain,
    decrypt,
    decrypt_result,
    drop_bits,
    encrypt_symmetric,
    estimate,
    finalize,
    find_params,
    min_modulus_bits,
    measure_noise,
    measure_result_noise,
    mul_plain,
    multiply_accumulate,
    params_for_modulus,
    plan_output,
    rerandomize,
    select,
    switch_level,
    switch_modulus,
)
from aiompc.crypto.he.result import sample_flood
from aiompc.crypto.he.rns import centered_to_float, get_basis
from aiompc.errors import InputError


def _full_range_product(n: int, bits: int, l: int, seed: int):
    params = cheetah(l) if n == 4096 else params_for(n, bits, l)
    sk, pk = keys(params)
    rng = np.random.default_rng(seed)
    m = rng.integers(0, params.t, size=(2, n), dtype=np.uint64)
    w = rng.integers(0, params.t, size=(2, n), dtype=np.uint64)
    ct = mul_plain(encrypt_symmetric(sk, m, prg(seed)).expand(), PlainNTT.encode(params, w))
    ref = np.stack([negacyclic_mod_2k(m[b], w[b], l) for b in range(2)])
    return params, sk, pk, ct, ref


@pytest.mark.parametrize("n,bits,l", [(1024, 27, 4), (4096, 109, 30), (8192, 150, 40)])
def test_full_range_product_after_switching_and_dropping(n: int, bits: int, l: int) -> None:
    """mul_plain with full-range m, w survives every switch and the largest drops the estimator allows."""
    params, sk, pk, ct, ref = _full_range_product(n, bits, l, n)
    pipe = ServerPipeline(params.t // 2, n, 1, plain_before_multiply=False, plain_after_multiply=0, flood=False)
    plan = plan_output(params, pipe)
    assert plan.flood_bits == 0 and plan.drop0 > 0 and plan.drop1 > 0
    res = finalize(ct, pk, plan, prg(1))
    assert np.array_equal(decrypt_result(sk, res), ref)
    est = estimate(params, pipe, plan)
    assert np.abs(measure_result_noise(sk, res, ref)).max() <= est.final
    # level switching (RNS prime dropping) keeps the plaintext while enough primes remain
    if params.levels > 1:
        lower = switch_level(ct, params.levels - 1)
        assert lower.level == params.levels - 1 and np.array_equal(decrypt(sk, lower), ref)
    # switching to 2**k for several k, then dropping bits step by step
    for k in (62, l + 20):
        res = switch_modulus(ct, 1 << k)
        assert np.array_equal(decrypt_result(sk, res), ref)
        res = drop_bits(drop_bits(res, 2, 3), 6, 8)
        assert res.bits0 == k - 6 and res.bits1 == k - 8
        assert np.array_equal(decrypt_result(sk, res), ref)


def test_switch_to_one_prime() -> None:
    params = params_for(4096, 100, 12)  # four ~25-bit primes; the first alone carries t = 2**12
    sk, pk = keys(params)
    rng = np.random.default_rng(3)
    m = rng.integers(0, params.t, size=(3, 4096), dtype=np.uint64)
    w = np.zeros(4096, dtype=np.int64)
    w[:5] = [1, -1, 2, 3, -2]
    ct = mul_plain(encrypt_symmetric(sk, m, prg(3)).expand(), PlainNTT.encode(params, w))
    ref = np.stack([negacyclic_mod_2k(m[b], w, 12) for b in range(3)])
    one = switch_level(ct, 1)
    assert one.level == 1 and np.array_equal(decrypt(sk, one), ref)
    res = switch_modulus(ct, params.primes[0])
    assert res.modulus == params.primes[0] and np.array_equal(decrypt_result(sk, res), ref)
    pos = np.array([4095, 0, 17, 1000])
    res = select(drop_bits(res, 5, 2), pos)
    assert res.c0.shape == (3, 4) and np.array_equal(decrypt_result(sk, res), ref[:, pos])
    plan = OutputPlan(params.primes[0], 5, 2, 0)
    pipe = ServerPipeline(3, 5, plain_before_multiply=False, plain_after_multiply=0, flood=False)
    assert estimate(params, pipe, plan).decryptable
    res2 = finalize(ct, pk, plan, prg(4), pos)
    assert np.array_equal(decrypt_result(sk, res2), ref[:, pos])
    assert np.abs(measure_result_noise(sk, res2, ref[:, pos])).max() <= estimate(params, pipe, plan).final


def test_select_positions() -> None:
    params, sk, pk, ct, ref = _full_range_product(4096, 109, 20, 9)
    res = switch_modulus(ct, 1 << 62)
    pos = np.array([5, 3, 4000, 77])
    sub = select(res, pos)
    assert np.array_equal(decrypt_result(sk, sub), ref[:, pos])
    subsub = select(sub, np.array([77, 5]))
    assert np.array_equal(decrypt_result(sk, subsub), ref[:, [77, 5]])
    for bad in ([4096], [1, 1], [-1]):
        with pytest.raises(InputError):
            select(res, np.array(bad))
    with pytest.raises(InputError):
        select(sub, np.array([6]))
    with pytest.raises(InputError):
        drop_bits(drop_bits(res, 4, 4), 3, 5)


def test_flood_sampling_is_exact_and_uniform() -> None:
    basis = get_basis(cheetah().primes)
    for bits in (1, 31, 32, 33, 70):
        v = centered_to_float(sample_flood(prg(bits), bits, (4, 4096), basis), basis)
        lo, hi = -(2.0 ** (bits - 1)), 2.0 ** (bits - 1)
        assert v.min() >= lo and v.max() < hi
        assert np.all(v == np.round(v))
        if bits >= 8:  # spread over the whole range, mean near 0
            assert v.max() > 0.99 * hi and v.min() < 0.99 * lo
            assert abs(v.mean()) < hi * 0.05
    with pytest.raises(InputError):
        sample_flood(prg(1), 0, (1, 4096), basis)


def test_rerandomize_keeps_plaintext_and_refreshes_c1() -> None:
    params = cheetah(16)
    sk, pk = keys(params)
    rng = np.random.default_rng(1)
    m = rng.integers(0, params.t, size=(2, 4096), dtype=np.uint64)
    ct = encrypt_symmetric(sk, m, prg(11)).expand()
    r1 = rerandomize(ct, pk, prg(12), flood_bits=60)
    r2 = rerandomize(ct, pk, prg(13), flood_bits=60)
    assert np.array_equal(decrypt(sk, r1), m) and np.array_equal(decrypt(sk, r2), m)
    assert not r1.ntt_form
    c1 = ct.to_coeff().c1
    assert np.mean(r1.c1 == c1) < 0.01 and np.mean(r1.c1 == r2.c1) < 0.01
    assert np.log2(np.abs(measure_noise(sk, r1, m)).max()) > 58


# --------------------------------------------------------------------------- noise vs estimator

NOISE_CASES = [
    # (params, weight norm, weight count, accumulations, visible, structured inputs)
    ("cheetah37", 63, 9, 20, 128, False),
    ("cheetah37", 255, 32, 4, 16, True),
    ("find8", 7, 25, 16, None, True),
    ("find16", 1000, 64, 3, 1024, False),
    # primes chosen without regard to t (shared key sets, aiompc.nn.key_plan): q mod t is far from 1
    ("balanced16", 1000, 64, 3, 1024, True),
    ("balanced16", 1000, 64, 3, 1024, False),
]


def _noise_params(name: str, pipe: ServerPipeline):
    if name == "cheetah37":
        return cheetah(37)
    if name.startswith("balanced"):
        l = int(name[8:])
        need = min_modulus_bits(4096, l, pipe)
        params = params_for_modulus(4096, need, l, unit_rho=False)
        assert params.rho != 1 and params.rho.bit_length() > l // 2  # the worst case is ρ-independent
        return params
    return find_params(int(name[4:]), pipe)


@pytest.mark.parametrize("name,norm,count,acc,visible,structured", NOISE_CASES)
def test_measured_noise_never_exceeds_the_estimate(name, norm, count, acc, visible, structured) -> None:
    pipe = ServerPipeline(norm, count, acc, visible=visible)
    params = _noise_params(name, pipe)
    n, t = params.n, params.t
    sk, pk = keys(params)
    plan = plan_output(params, pipe)
    est = estimate(params, pipe, plan)
    rng = np.random.default_rng(len(name) + norm)
    worst = dict(fresh=0.0, product=0.0, rerandomized=0.0, flooded=0.0, final=0.0)
    mask = np.uint64(t - 1)
    for trial in range(3):
        if structured:  # correlated inputs and same-sign weights push the encoding roundings together
            m = np.full((acc, n), (t // 3) | 1, dtype=np.uint64)
            x = np.full((acc, n), t // 5, dtype=np.uint64)
            w = np.zeros((2, acc, n), dtype=np.int64)
            w[..., :count] = norm
        else:
            m = rng.integers(0, t, size=(acc, n), dtype=np.uint64)
            x = rng.integers(0, t, size=(acc, n), dtype=np.uint64)
            w = np.zeros((2, acc, n), dtype=np.int64)
            idx = rng.choice(n, count, replace=False)
            w[..., idx] = rng.integers(-norm, norm + 1, size=(2, acc, count))
            w[..., idx[0]] = norm
        r = rng.integers(0, t, size=(2, n), dtype=np.uint64)
        ct = encrypt_symmetric(sk, m, prg(100 + trial)).expand()
        worst["fresh"] = max(worst["fresh"], np.abs(measure_noise(sk, ct, m)).max())
        total = (m + x) & mask
        acc_ct = add_plain(multiply_accumulate(add_plain(ct, x), PlainNTT.encode(params, w)), (0 - r) & mask)
        ref = np.zeros((2, n), dtype=np.uint64)
        for o in range(2):
            for j in range(acc):
                ref[o] += negacyclic_mod_2k(total[j], w[o, j], 64)
        ref = (ref - r) & mask
        worst["product"] = max(worst["product"], np.abs(measure_noise(sk, acc_ct, ref)).max())
        rr = rerandomize(acc_ct, pk, prg(200 + trial))
        worst["rerandomized"] = max(worst["rerandomized"], np.abs(measure_noise(sk, rr, ref)).max())
        fl = rerandomize(acc_ct, pk, prg(300 + trial), plan.flood_bits)
        worst["flooded"] = max(worst["flooded"], np.abs(measure_noise(sk, fl, ref)).max())
        pos = np.sort(rng.choice(n, visible or n, replace=False))
        res = finalize(acc_ct, pk, plan, prg(400 + trial), pos)
        assert np.array_equal(decrypt_result(sk, res), ref[:, pos])
        worst["final"] = max(worst["final"], np.abs(measure_result_noise(sk, res, ref[:, pos])).max())
    for stage, measured in worst.items():
        bound = getattr(est, stage)
        assert measured <= bound, f"{stage}: measured 2^{np.log2(measured):.2f} > bound 2^{np.log2(bound):.2f}"
    # and the bounds are not vacuous: within a few bits of what is observed
    assert np.log2(est.product / worst["product"]) < 5
    assert np.log2(est.flooded / worst["flooded"]) < 0.1
