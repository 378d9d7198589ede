"""aiompc.protocols.linear.stat_sum: the result ciphertexts a call returns (counted on a real run, packed and
not), the summed statistical distance, and the check that refuses a set of calls above the budget."""

from __future__ import annotations

import math

import numpy as np
import pytest

from aiompc.crypto.prg import PRG
from aiompc.errors import InputError, InsecureParameters
from aiompc.protocols.linear import engine
from aiompc.protocols.linear.conv import conv2d, conv_plan
from aiompc.protocols.linear.plan import CheetahPlanner, packed_plan
from aiompc.protocols.linear.reference import conv2d_ref
from aiompc.protocols.linear.stat_sum import distance, require_distance, result_ciphertexts, security_bits
from aiompc.protocols.linear.tiling import ConvShape
from aiompc.ring import reconstruct, share, to_signed
from aiompc.session import run_local

L = 16
SHAPE = ConvShape.make(3, 6, 6, 5, 3, padding=1)


def _plans() -> dict[str, object]:
    plain = conv_plan(SHAPE, L, weight_bits=4, planner=CheetahPlanner())  # q ~ 2^109: room to pack
    return {"unpacked": plain, "packed": packed_plan(plain)}


@pytest.mark.parametrize("kind", ["unpacked", "packed"])
async def test_result_ciphertexts_are_what_the_client_decrypts(kind: str, monkeypatch, nprng) -> None:
    plan = _plans()[kind]
    decrypted: list[int] = []
    original = engine._decrypt

    def counting(plan_, sk, res, count):
        decrypted.append(res.batch)
        return original(plan_, sk, res, count)

    monkeypatch.setattr(engine, "_decrypt", counting)
    x = nprng.integers(0, 16, SHAPE.in_shape)
    w = nprng.integers(-8, 8, SHAPE.weight_shape)
    xs, xc = share(x, L, PRG())
    kw = dict(out_channels=SHAPE.out_channels, kernel=3, padding=1, l=L, weight_bits=4, plan=plan)

    async def server(p):
        return await conv2d(p, "conv", xs, weight=w, **kw)

    async def client(p):
        return await conv2d(p, "conv", xc, **kw)

    ys, yc = await run_local(server, client)
    assert np.array_equal(to_signed(reconstruct(ys, yc, L), L), conv2d_ref(x, w, SHAPE, 64).view(np.int64))
    assert sum(decrypted) == result_ciphertexts(plan) > 0
    if kind == "packed":
        assert result_ciphertexts(plan) < result_ciphertexts(_plans()["unpacked"])


def test_distances_add_over_results_and_calls() -> None:
    plan = _plans()["unpacked"]
    r, bits = result_ciphertexts(plan), plan.stat_security
    assert bits >= 40
    assert distance([(plan, 1)]) == pytest.approx(r * 2.0**-bits)
    assert distance([(plan, 3), (plan, 2)]) == pytest.approx(5 * r * 2.0**-bits)
    assert security_bits([(plan, 4)]) == pytest.approx(bits - math.log2(4 * r))
    assert security_bits([(plan, 0)]) == math.inf
    with pytest.raises(InputError):
        distance([(plan, -1)])


def test_the_check_refuses_a_set_of_results_above_the_budget() -> None:
    plan = _plans()["unpacked"]  # 40 bits per result ciphertext: several results are above 2^-40 together
    assert require_distance([(plan, 1)], target=35) == pytest.approx(security_bits([(plan, 1)]))
    with pytest.raises(InsecureParameters, match=r"result ciphertexts together.*stat_bits >= 40 \+ log2"):
        require_distance([(plan, 1)])
    # planned at 40 + ceil(log2 R) bits per ciphertext, the same calls pass
    r = result_ciphertexts(plan)
    strong = conv_plan(SHAPE, L, weight_bits=4, planner=CheetahPlanner(stat_bits=40 + math.ceil(math.log2(r))))
    assert result_ciphertexts(strong) == r
    assert require_distance([(strong, 1)]) >= 40
