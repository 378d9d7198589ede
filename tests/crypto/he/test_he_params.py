"""Parameter validation, the Cheetah set, the noise estimator's refusals and the parameter finder."""

from __future__ import annotations

import math

import pytest
from he_testing import small_primes

from aiompc.crypto.he import (
    SECURITY_TABLE,
    HEParams,
    ServerPipeline,
    check,
    cheetah_params,
    choose_primes,
    estimate,
    find_params,
    min_modulus_bits,
    plan_output,
)
from aiompc.crypto.he.noise import OutputPlan
from aiompc.crypto.he.primes import is_prime
from aiompc.errors import InsecureParameters, UndecryptableParameters


def test_security_table_is_enforced_at_every_n() -> None:
    for n, max_bits in SECURITY_TABLE.items():
        count = math.ceil(max_bits / 29)
        ok = small_primes(n, count, int(2 ** (max_bits / count)))
        params = HEParams(n, ok, 8)
        assert params.q.bit_length() <= max_bits
        # one more prime of the same size pushes log2 q over the limit
        extra = small_primes(n, count + 1, int(2 ** (max_bits / count)))
        with pytest.raises(InsecureParameters, match=rf"exceeds {max_bits}\b.*N = {n}"):
            HEParams(n, extra, 8)


def test_insecure_parameters_name_the_number() -> None:
    with pytest.raises(InsecureParameters, match="N = 512"):
        HEParams(512, small_primes(512, 1, 1 << 20), 4)
    with pytest.raises(InsecureParameters, match="σ = 2.0"):
        HEParams(1024, small_primes(1024, 1, 1 << 27), 4, sigma=2.0)
    with pytest.raises(InsecureParameters, match="110"):
        HEParams(4096, small_primes(4096, 4, int(2**27.6)), 37)


def test_malformed_parameters() -> None:
    n = 1024
    p = small_primes(n, 1, 1 << 27)[0]
    not_4096 = next(q for q in small_primes(n, 50) if (q - 1) % 4096)  # ≡ 1 mod 2048 only
    big = next(c for c in range((1 << 30) + 1, (1 << 31), 2 * n) if is_prime(c))
    assert not is_prime(1 + 2 * n * 3)
    for bad in [
        dict(n=1000, primes=(p,), plain_bits=4),  # not a power of two
        dict(n=n, primes=(p, p), plain_bits=4),  # duplicate
        dict(n=2 * n, primes=(not_4096,), plain_bits=4),  # not ≡ 1 mod 2N
        dict(n=n, primes=(1 + 2 * n * 3,), plain_bits=4),  # composite
        dict(n=n, primes=(big,), plain_bits=4),  # too wide for the NTT
        dict(n=n, primes=(p,), plain_bits=0),
        dict(n=n, primes=(p,), plain_bits=61),
        dict(n=n, primes=(), plain_bits=4),
    ]:
        with pytest.raises(ValueError):
            HEParams(**bad)


def test_cheetah_params() -> None:
    p = cheetah_params()
    assert p.n == 4096 and p.plain_bits == 37 and p.t == 1 << 37
    assert 108.9 < p.log2_q <= 109 and p.q.bit_length() == 109
    assert len(p.primes) == 4 and all((q - 1) % 8192 == 0 for q in p.primes)
    assert p.delta * p.t + p.rho == p.q
    assert cheetah_params(12).fingerprint != p.fingerprint and cheetah_params().fingerprint == p.fingerprint
    assert len(p.aux_primes) == 3 and not set(p.aux_primes) & set(p.primes)


def test_estimator_refuses_undecryptable_and_names_numbers() -> None:
    p = cheetah_params()
    # Cheetah-sized conv with 12-bit weights and all 4096 outputs visible does not leave room for
    # 40-bit flooding in a 109-bit modulus: the estimator must say so.
    pipe = ServerPipeline(weight_norm=1 << 12, weight_count=9, accumulations=64)
    est = estimate(p, pipe)
    assert not est.decryptable and est.margin_bits < 0
    with pytest.raises(UndecryptableParameters, match=r"need log2 q >= 11\d\.\d, have 109\.0"):
        est.require()
    with pytest.raises(UndecryptableParameters):
        plan_output(p, pipe)
    with pytest.raises(UndecryptableParameters, match="weight norm 4096 × fan-in 576"):
        check(p, pipe)
    assert check(p, ServerPipeline(1 << 7, 9, 64)).margin_bits > 0
    # without flooding it fits, and so do small weights with few visible outputs
    assert estimate(p, ServerPipeline(1 << 12, 9, 64, flood=False)).decryptable
    assert plan_output(p, ServerPipeline(1 << 6, 9, 16, visible=64)).flood_bits > 40


def test_plan_must_flood_enough_and_drop_little_enough() -> None:
    p = cheetah_params()
    pipe = ServerPipeline(weight_norm=15, weight_count=9, accumulations=16, visible=256)
    plan = plan_output(p, pipe)
    est = estimate(p, pipe, plan)
    assert est.decryptable and est.final < est.limit
    with pytest.raises(UndecryptableParameters, match="privacy needs"):
        estimate(p, pipe, OutputPlan(plan.modulus, plan.drop0, plan.drop1, plan.flood_bits - 1))
    assert not estimate(p, pipe, OutputPlan(plan.modulus, plan.drop0 + 1, plan.drop1, plan.flood_bits)).decryptable \
        or not estimate(p, pipe, OutputPlan(plan.modulus, plan.drop0, plan.drop1 + 1, plan.flood_bits)).decryptable
    # Cheetah's shape: c0 keeps about l+1 bits, c1 about l + log2(N)/2 + a few
    assert plan.bits0 <= p.plain_bits + 3 and plan.bits1 <= p.plain_bits + 14


@pytest.mark.parametrize(
    "l,norm,count,acc,visible", [(4, 7, 9, 16, 64), (8, 127, 25, 32, None), (16, 1 << 10, 256, 8, 512)]
)
def test_find_params_is_smallest_and_works(l: int, norm: int, count: int, acc: int, visible: int | None) -> None:
    pipe = ServerPipeline(norm, count, acc, visible=visible)
    params = find_params(l, pipe)
    assert params.plain_bits == l
    need = min_modulus_bits(params.n, l, pipe)
    assert need <= params.log2_q <= SECURITY_TABLE[params.n] and params.log2_q < need + 1.5
    plan_output(params, pipe)
    smaller = params.n // 2
    if smaller >= 1024 and count <= smaller and (visible or 0) <= smaller:
        assert min_modulus_bits(smaller, l, pipe) > SECURITY_TABLE[smaller]
    if (1 << l) <= 2 * params.n or l <= 20:
        assert params.rho == 1  # q ≡ 1 (mod t) whenever it is free


def test_find_params_raises_when_nothing_fits() -> None:
    with pytest.raises(UndecryptableParameters, match="no secure parameters.*needs log2 q >= "):
        find_params(40, ServerPipeline(1 << 39, 32768, 1 << 800))
    # a 60-bit plaintext cannot be carried by a 62-bit result modulus whatever q is
    with pytest.raises(UndecryptableParameters, match="no secure parameters.*2\\^62 result modulus"):
        find_params(60, ServerPipeline(1, 1, flood=False))


def test_choose_primes_bounds() -> None:
    primes = choose_primes(4096, 100.0, 109)
    q = math.prod(primes)
    assert 100 <= math.log2(q) and q.bit_length() <= 109
    unit = choose_primes(8192, 80.0, 218, plain_bits=22)
    assert math.prod(unit) % (1 << 22) == 1
    with pytest.raises(UndecryptableParameters):
        choose_primes(1024, 28.0, 27)


@pytest.mark.parametrize("terms", [1, 2])
def test_a_plans_flood_counts_in_the_noise_even_over_a_pipeline_that_asks_for_none(terms: int) -> None:
    """A hand-built plan that floods over a ``flood=False`` pipeline: the flood is noise all the same, so
    the estimate carries it and require() refuses a flood too large to decrypt."""
    p = cheetah_params()
    pipe = ServerPipeline(weight_norm=15, weight_count=9, accumulations=16, visible=256, flood=False)
    plain = plan_output(p, pipe)
    assert plain.flood_bits == 0
    for bits in (40, p.log2_q - p.plain_bits):  # a modest flood, then one at the decryption limit
        plan = OutputPlan(plain.modulus, plain.drop0, plain.drop1, int(bits), terms)
        est = estimate(p, pipe, plan)
        assert est.flood_bits == int(bits)
        assert est.flooded >= est.rerandomized + terms * 2.0 ** (int(bits) - 1)
    with pytest.raises(UndecryptableParameters):
        check(p, pipe, plan)
