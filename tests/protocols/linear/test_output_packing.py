"""Output packing end to end: packed conv / fc layers equal the plaintext reference bit for bit, the byte model
equals the channel statistics (layer label and the once-per-session Galois keys), and the packed reply's
distribution does not depend on the weights (with negative controls)."""

from __future__ import annotations

import numpy as np
import pytest
from conv_check import check_conv
from test_privacy import KS_CRIT, client_view, ks_stat, twin_accumulators

from aiompc.crypto.he import cheetah_params
from aiompc.crypto.he.galois import galois_keys
from aiompc.crypto.he.packing import packing_elements, refresh
from aiompc.crypto.prg import PRG
from aiompc.protocols.linear.conv import conv_plan
from aiompc.protocols.linear.costs import galois_key_bytes, plan_cost
from aiompc.protocols.linear.engine import finish_group
from aiompc.protocols.linear.fc import fc
from aiompc.protocols.linear.layouts import MatmulLayout
from aiompc.protocols.linear.packed import layout_elements, packed_groups, packing_stride
from aiompc.protocols.linear.plan import CheetahPlanner, make_plan, packed_plan
from aiompc.protocols.linear.reference import matmul_ref
from aiompc.protocols.linear.tiling import ConvShape, MatmulShape, MatmulTiling
from aiompc.ring import reconstruct, share, to_signed
from aiompc.session import run_local

L = 16


async def _run(layer, label: str, x: np.ndarray, w: np.ndarray, kw: dict):
    xs, xc = share(x, L, PRG())

    async def server(p):
        return await layer(p, label, xs, weight=w, **kw)

    async def client(p):
        return await layer(p, label, xc, **kw), p.channel.stats()

    ys, (yc, stats) = await run_local(server, client)
    return to_signed(reconstruct(ys, yc, L), L), stats


# (C, H, W, M, kernel, stride, padding, groups), weight bits
CONV_CASES = [
    ((3, 6, 6, 4, 3, 2, 1, 1), 4),  # stride 2
    ((4, 5, 5, 4, 3, 1, 1, 4), 6),  # depthwise (groups)
    ((200, 5, 5, 2, 3, 1, 1, 1), 3),  # three channel blocks accumulated
    ((6, 3, 4, 1, 3, 1, (1, 0, 2, 1), 1), 8),  # one output channel, asymmetric padding
]


@pytest.mark.parametrize("geometry, wb", CONV_CASES)
async def test_packed_conv_equals_reference_and_model(geometry, wb, nprng) -> None:
    c, h, w_, m, k, s, p, g = geometry
    shape = ConvShape.make(c, h, w_, m, k, stride=s, padding=p, groups=g)
    plan = packed_plan(conv_plan(shape, L, weight_bits=wb, planner=CheetahPlanner()))
    assert plan.output_packing  # stride-1 windows pack per coefficient; stride 2 with even rows on a lattice
    x = nprng.integers(0, 16, shape.in_shape)
    x.reshape(-1)[:2] = [0, 15]
    w = nprng.integers(-(1 << (wb - 1)), 1 << (wb - 1), shape.weight_shape)
    w.reshape(-1)[:2] = [-(1 << (wb - 1)), (1 << (wb - 1)) - 1]
    cost = await check_conv(shape, plan, x, w, packed=True, weight_bits=wb)
    unpacked = plan_cost(conv_plan(shape, L, weight_bits=wb, planner=CheetahPlanner()), "conv")
    assert cost.download < unpacked.download or plan.layout.outputs == 1


# rows, in, out, (d0, d1, d2)
FC_CASES = [(1, 512, 100, (1, 256, 15)), (7, 64, 40, (3, 64, 20)), (1, 300, 1, (1, 256, 1))]


@pytest.mark.parametrize("rows, n_in, n_out, blocks", FC_CASES)
async def test_packed_fc_strided_equals_reference_and_model(rows, n_in, n_out, blocks, nprng) -> None:
    shape = MatmulShape(rows, n_in, n_out)
    layout = MatmulLayout(MatmulTiling(shape, 4096, *blocks))
    plan = packed_plan(make_plan(layout, L, 4, he=cheetah_params(L)))
    assert packing_stride(layout) >= 1  # whole ciphertexts are packed
    x = nprng.integers(0, 16, (rows, n_in))
    w = nprng.integers(-8, 8, (n_out, n_in))
    kw = dict(out_features=n_out, l=L, weight_bits=4, plan=plan)
    got, stats = await _run(fc, "fc", x, w, kw)
    assert np.array_equal(got, matmul_ref(x, w, 64).view(np.int64))
    cost = plan_cost(plan, "fc")
    assert (stats.select("fc").bytes_sent, stats.select("fc").bytes_recv) == (cost.upload, cost.download)
    assert stats.select("he-galois").bytes_sent == galois_key_bytes(plan.he, layout_elements(plan.layout))
    m = packing_stride(layout)
    assert len(layout_elements(layout)) == (layout.outputs - 1).bit_length() <= m  # only the tree's levels
    if layout.outputs > 1:
        assert cost.download < plan_cost(make_plan(layout, L, 4, he=cheetah_params(L)), "fc").download


# --------------------------------------------------------------------------- privacy of the packed reply

TRIALS = 100


def _interleaved_plan(shape: ConvShape, wb: int):
    from aiompc.protocols.linear.interleaved import interleaved_tilings

    lay = interleaved_tilings(shape, 4096, [(shape.padded_height, shape.padded_width)])[0]
    return packed_plan(make_plan(lay, L, wb, he=cheetah_params(L)))


@pytest.fixture(scope="module", params=["per-coefficient", "interleaved", "shared-keys"])
def packed_setting(request):
    """Two weight sets giving the same outputs (the input's channel 1 is zero); the packed reply of either.
    ``per-coefficient``: Cheetah's tiling, every output a leaf; ``interleaved``: whole ciphertexts on the
    ``2^k`` lattice are the leaves (the layout the planner packs most); ``shared-keys``: the same with the keys
    made once for the primes (``HEParams.key_params``, another ``t``) and bound to the layer's ``t``, as a
    network's shared key sets are (:mod:`aiompc.nn.key_plan`)."""
    rng = np.random.default_rng(9)
    if request.param == "per-coefficient":
        shape = ConvShape.make(2, 2, 2, 1, 3, padding=1)
        plan = packed_plan(conv_plan(shape, L, weight_bits=L // 2, planner=CheetahPlanner()))
    else:
        shape = ConvShape.make(2, 2, 2, 4, 3, padding=1)
        plan = _interleaved_plan(shape, L // 2)
        assert packing_stride(plan.layout) >= 1 and plan.layout.outputs == 4
    keyed = plan.he.key_params if request.param == "shared-keys" else None
    sk, pk, accs = twin_accumulators(plan, shape, L, 8, rng, channel=1, keyed=keyed)
    gk = galois_keys(sk, packing_elements(plan.he.n), PRG(b"\x05" * 32))
    sk = sk.at(plan.he) if keyed is not None else sk
    groups, _ = packed_groups(plan.layout, 0)
    group = groups[0]  # one packed reply (the interleaved case packs 2 output ciphertexts per reply)
    assert group.leaves >= 2 or request.param == "per-coefficient"
    return plan, sk, pk, gk, accs, group


def _replies(setting, rerandomise: bool) -> list[tuple[np.ndarray, np.ndarray]]:
    plan, sk, pk, gk, accs, group = setting
    r = np.zeros(group.count, dtype=np.uint64)
    views = []
    for s, acc in enumerate(accs):
        c1s, noises = [], []
        for i in range(TRIALS):
            rng = PRG(bytes([s, i]) * 16)
            fresh = refresh(acc, pk, rng.fork()) if rerandomise else acc
            c1, noise = client_view(plan, sk, finish_group(plan, fresh, group, r, gk, rng.fork()), group.positions)
            c1s.append(c1[:8])
            noises.append(noise)
        views.append((np.array(c1s), np.array(noises)))
    return views


@pytest.mark.slow
def test_packed_replies_are_identically_distributed(packed_setting) -> None:
    (c1_a, n_a), (c1_b, n_b) = _replies(packed_setting, rerandomise=True)
    for j in range(c1_a.shape[1]):
        assert ks_stat(c1_a[:, j], c1_b[:, j]) < KS_CRIT
    for j in range(n_a.shape[1]):
        assert ks_stat(n_a[:, j], n_b[:, j]) < KS_CRIT
    assert np.unique(n_a[:, 0]).size > TRIALS // 2  # the flooded noise is spread: the test is not blind


def test_control_packing_without_rerandomisation_leaks(packed_setting) -> None:
    """Packing the raw results (no fresh c1 first): the packed c1 is a function of the weights."""
    plan, sk, pk, gk, accs, group = packed_setting
    r = np.zeros(group.count, dtype=np.uint64)
    def packed_c1(acc, seed: bytes) -> np.ndarray:
        return client_view(plan, sk, finish_group(plan, acc.to_coeff(), group, r, gk, PRG(seed)), group.positions)[0]

    c1 = [packed_c1(acc, bytes([i]) * 32) for i, acc in enumerate(accs)]
    again = packed_c1(accs[0], b"\x09" * 32)
    assert np.array_equal(c1[0], again)  # deterministic in the weights ...
    assert not np.array_equal(c1[0], c1[1])  # ... and different for the two weight sets


# --------------------------------------------------------------------------- the quantized planner


def test_planner_weighs_packing_and_is_never_worse_than_cheetah() -> None:
    from aiompc.protocols.linear.plan import CheetahBaselinePlanner
    from aiompc.protocols.linear.quantized import QuantizedPlanner

    shape = ConvShape.make(64, 4, 4, 64, 3, padding=1)
    off = QuantizedPlanner(output_packing=False).search(shape, 16, 4).best
    free = QuantizedPlanner(key_share=0.0, compute_rate=0.0)
    res = free.search(shape, 16, 4)
    assert res.best.plan.output_packing and res.best.cost.total < off.cost.total
    assert res.best.cost.setup > 0 and res.best.cost.packing_seconds > 0
    # with the keys and the compute charged, the choice is never worse than Cheetah's rule in the planner's key
    for planner in (free, QuantizedPlanner(), QuantizedPlanner(key_share=1.0, compute_rate=1e9)):
        r = planner.search(shape, 16, 4)
        assert planner.key(r.best.cost) <= planner.key(r.cheetah.cost)
        assert r.best.cost.total <= r.cheetah.cost.total  # and never more bytes
    # prohibitive compute price: no packing
    assert not QuantizedPlanner(compute_rate=1e12).search(shape, 16, 4).best.plan.output_packing
    # the baseline never packs
    assert not CheetahBaselinePlanner()(shape, 37, 8).output_packing


INTERLEAVED = [
    ((32, 4, 4, 20, 3, 1, 1, 1), 4),  # one block of 32 lanes
    ((48, 6, 6, 8, 3, 2, 1, 1), 3),  # stride 2, a full and a partial block
    ((16, 5, 5, 16, 3, 1, 1, 16), 6),  # depthwise
    ((8, 9, 9, 4, 5, 1, 2, 1), 2),  # 5x5 kernel
]


@pytest.mark.parametrize("geometry, wb", INTERLEAVED)
async def test_interleaved_layout_packed_equals_reference(geometry, wb, nprng) -> None:
    from aiompc.protocols.linear.interleaved import interleaved_tilings

    c, h, w_, m, k, s, p, g = geometry
    shape = ConvShape.make(c, h, w_, m, k, stride=s, padding=p, groups=g)
    layouts = interleaved_tilings(shape, 4096, [(shape.padded_height, shape.padded_width)])
    lay = min(layouts, key=lambda x: x.tiling.channels)
    plan = packed_plan(make_plan(lay, L, wb, he=cheetah_params(L)))
    assert packing_stride(lay) >= (lay.tiling.channels & -lay.tiling.channels).bit_length() - 1
    x = nprng.integers(0, 16, shape.in_shape)
    w = nprng.integers(-(1 << (wb - 1)), 1 << (wb - 1), shape.weight_shape)
    await check_conv(shape, plan, x, w, packed=True, weight_bits=wb)


def test_compute_rate_trades_bytes_for_modelled_compute() -> None:
    """ResNet-18's 512x4x4 layer: bytes only and the default rate both pack its results on the interleaved
    lattice (packing's key switch and re-randomisation are compiled, so packing itself adds little modelled
    compute); a prohibitive rate keeps an unpacked layout, whose modelled CPU is several times lower (fewer
    output ciphertexts, fewer products).  Bytes do not rise and modelled CPU does not fall in that order."""
    from aiompc.protocols.linear.quantized import QuantizedPlanner

    shape = ConvShape.make(512, 4, 4, 512, 3, padding=1)
    greedy = QuantizedPlanner(compute_rate=0.0).search(shape, 19, 4).best
    default = QuantizedPlanner().search(shape, 19, 4).best
    frugal = QuantizedPlanner(compute_rate=1e9).search(shape, 19, 4).best
    assert greedy.plan.output_packing and default.plan.output_packing and not frugal.plan.output_packing
    assert greedy.cost.total <= default.cost.total < frugal.cost.total / 4
    assert 0 < default.cost.packing_seconds < 0.2 * (default.cost.server_seconds + default.cost.client_seconds)
    seconds = [c.cost.server_seconds + c.cost.client_seconds for c in (greedy, default, frugal)]
    assert seconds[0] >= seconds[1] > 2 * seconds[2]
