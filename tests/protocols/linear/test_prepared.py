"""Prepared weights: whole and streamed forms give the same plaintexts, and a streamed layer is still exact."""

from __future__ import annotations

import numpy as np
import pytest

from aiompc.protocols.linear.planners import PLANNERS
from aiompc.crypto.he import PlainNTT
from aiompc.errors import InputError
from aiompc.session import run_local
from aiompc.protocols.linear import prepared
from aiompc.protocols.linear.conv import conv_plan
from aiompc.protocols.linear.encoding import scatter_coefficients
from aiompc.protocols.linear.fc import fc_plan
from aiompc.protocols.linear.prepared import prepare_weights
from aiompc.protocols.linear.reference import conv2d_ref
from aiompc.protocols.linear.tiling import ConvShape, MatmulShape
from tests.protocols.linear.test_conv_protocol import CASES, run_conv


def _plans(nprng: np.random.Generator):
    """(plan, weight) pairs: a grouped conv on Cheetah's parameters, a Kronecker-packed quantized conv, an fc."""
    grouped = ConvShape.make(4, 9, 9, 4, 3, stride=2, padding=1, groups=2)
    yield conv_plan(grouped, 37, weight_bits=12, planner=PLANNERS["cheetah"]), nprng.integers(-2048, 2049, grouped.weight_shape)
    packed = ConvShape.make(64, 8, 8, 16, 3, padding=1)
    yield conv_plan(packed, 28, weight_bits=4, planner=PLANNERS["quantized"], pack=2, out_shift=14), nprng.integers(-8, 9, packed.weight_shape)
    yield fc_plan(MatmulShape(1, 300, 20), 16, weight_bits=8, planner=PLANNERS["cheetah-smallest"]), nprng.integers(-128, 129, (20, 300))


def test_streamed_blocks_equal_whole(nprng: np.random.Generator) -> None:
    for plan, w in _plans(nprng):
        whole = prepare_weights(plan, w)
        streamed = prepare_weights(plan, w, max_bytes=0)
        assert not whole.streamed and streamed.streamed
        assert streamed.nbytes < whole.nbytes
        # the whole NTT form is the plaintext of the dense polynomials the layout encodes
        dense = scatter_coefficients(whole.values, whole.exps, plan.he.n)
        ref = PlainNTT.encode(plan.he, dense)
        assert np.array_equal(whole.whole.data[whole.nonzero], ref.data[whole.nonzero])
        assert (whole.norm, whole.count) == (ref.norm, ref.count)
        k = plan.layout.inputs
        for k0, k1 in [(0, k), (0, 1), (k - 1, k), (k // 2, k)]:
            (a, ma), (b, mb) = whole.block(k0, k1), streamed.block(k0, k1)
            assert np.array_equal(ma, mb) and np.array_equal(a.data[ma], b.data[mb]) and not b.data[~mb].any()
            assert (a.norm, a.count) == (b.norm, b.count) == (whole.norm, whole.count)


def test_row_blocks_cover_every_output_once(nprng: np.random.Generator, monkeypatch: pytest.MonkeyPatch) -> None:
    plan, w = next(_plans(nprng))
    outputs = plan.layout.outputs
    assert prepare_weights(plan, w).row_blocks(0, 1) == [(0, outputs)]  # whole: one block
    streamed = prepare_weights(plan, w, max_bytes=0)
    per_row = len(plan.he.primes) * plan.he.n * 4  # uint32 residues
    for limit, rows in [(1, 1), (3 * per_row, 3), (1 << 40, outputs)]:
        monkeypatch.setattr(prepared, "BLOCK_MAX_BYTES", limit)
        blocks = streamed.row_blocks(0, 1)
        assert blocks[0][0] == 0 and blocks[-1][1] == outputs
        assert all(a1 == b0 for (_, a1), (b0, _) in zip(blocks, blocks[1:]))
        assert max(j1 - j0 for j0, j1 in blocks) == min(rows, outputs)
        (whole_block, _), parts = streamed.block(0, 1), [streamed.block(0, 1, j0, j1)[0] for j0, j1 in blocks]
        assert np.array_equal(np.concatenate([p.data for p in parts]), whole_block.data)


def test_weight_bound_checked_before_anything(nprng: np.random.Generator) -> None:
    plan, w = next(_plans(nprng))
    w[0, 0, 0, 0] = 1 << 12  # above the public bound 2^11
    with pytest.raises(InputError, match="weight_bits"):
        prepare_weights(plan, w, max_bytes=0)


def test_resnet50_layer_is_streamed_in_little_memory() -> None:
    """The layer that ran a ResNet-50 out of memory: 1×1, stride 2, 256×56×56 → 512 under Cheetah's
    parameters would need 512·256 plaintexts × 4 primes × 4096 × 8 B = 17.2 GB in NTT form."""
    shape = ConvShape.make(256, 56, 56, 512, 1, stride=2)
    plan = conv_plan(shape, 37, weight_bits=12, planner=PLANNERS["cheetah-baseline"])
    w = np.ones(shape.weight_shape, dtype=np.int64)
    p = prepare_weights(plan, w)
    lay = plan.layout
    assert lay.outputs * lay.inputs * len(plan.he.primes) * plan.he.n * 8 > 16e9
    assert p.streamed and p.nbytes < 10 * 2**20
    block, mask = p.block(0, plan.chunk)
    assert block.shape == (lay.outputs, plan.chunk) and mask.all()


@pytest.mark.parametrize("name", ["cheetah params, stride 2, groups 2, l=37", "many channel blocks (C*HW > N), l=16",
                                  "depthwise, l=16"])
@pytest.mark.parametrize("block_bytes", [prepared.BLOCK_MAX_BYTES, 1])
async def test_streamed_conv_exact(name: str, block_bytes: int, nprng: np.random.Generator,
                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(prepared, "WHOLE_MAX_BYTES", 0)  # every layer streamed
    monkeypatch.setattr(prepared, "BLOCK_MAX_BYTES", block_bytes)  # 1: one output row per transform
    c, h, w_, m, k, s, p, g, l, wb, planner = CASES[name]
    shape = ConvShape.make(c, h, w_, m, k, stride=s, padding=p, groups=g)
    x = nprng.integers(0, 1 << l, shape.in_shape, dtype=np.uint64)
    w = nprng.integers(-(1 << (wb - 1)), (1 << (wb - 1)) + 1, shape.weight_shape)
    (ys, _), (yc, _) = await run_conv(run_local, x, w, None, shape, l, wb, planner)
    assert np.array_equal((ys + yc) & np.uint64((1 << l) - 1), conv2d_ref(x, w, shape, l))


async def test_repeated_exponents_of_a_narrow_compact_tile_are_prepared_once(nprng: np.random.Generator) -> None:
    """W = 1 with a 3×3 kernel and padding 1 in a compact tile (row pitch 2 < kernel width 3): the layout lists
    taps that share an exponent.  They are transformed once (the last value, as the dense polynomial holds it),
    the plaintexts equal those of the dense polynomials, and the layer stays exact."""
    from aiompc.crypto.prg import PRG
    from aiompc.protocols.linear.conv import conv2d
    from aiompc.protocols.linear.layouts import ConvLayout
    from aiompc.protocols.linear.plan import make_plan
    from aiompc.protocols.linear.tiling import ConvTiling
    from aiompc.ring import reconstruct, share

    shape = ConvShape.make(4, 1, 1, 4, 3, padding=1)
    layout = ConvLayout(ConvTiling(shape, 4096, channels=4, tile_h=3, tile_w=3, out_pack=4, compact=True))
    listed = np.asarray(layout.weight_exponents()).reshape(-1)
    assert np.unique(listed).size < listed.size  # the case exists
    l, wb = 16, 4
    plan = make_plan(layout, l, wb)
    w = nprng.integers(-(1 << (wb - 1)), (1 << (wb - 1)) + 1, shape.weight_shape)
    for max_bytes in (None, 0):  # whole and streamed
        p = prepare_weights(plan, w, max_bytes=max_bytes)
        assert p.exps.size == np.unique(listed).size == np.unique(p.exps).size
        raw, _ = layout.weight_values(w, l)
        dense = scatter_coefficients(raw, listed, plan.he.n)  # the layout's own dense polynomials
        ref = PlainNTT.encode(plan.he, dense)
        got, mask = p.block(0, layout.inputs)
        assert np.array_equal(got.data[mask], ref.data[mask]) and (p.norm, p.count) == (ref.norm, ref.count)
    x = nprng.integers(0, 1 << l, shape.in_shape, dtype=np.uint64)
    xs, xc = share(x, l, PRG())
    kw = dict(out_channels=4, kernel=3, padding=1, l=l, plan=plan)
    ys, yc = await run_local(lambda q: conv2d(q, "c", xs, weight=w, **kw), lambda q: conv2d(q, "c", xc, **kw))
    assert np.array_equal(reconstruct(ys, yc, l), conv2d_ref(x, w, shape, l))


def test_prepared_nbytes_bounds_what_is_held(nprng: np.random.Generator) -> None:
    for plan, w in _plans(nprng):
        for max_bytes in (None, 0):
            held = prepare_weights(plan, w, max_bytes=max_bytes).nbytes
            assert held <= prepared.prepared_nbytes(plan, max_bytes=max_bytes) <= held * 1.05 + 1024
