"""aiompc.nn.ir_transformer node by node: construction checks with their typed errors, output shapes against
numpy, bounds that are sound (no value of the plaintext program falls outside) and, where the module docstring
says exact, attained; the declared widths of Iron's fixed-point nodes against aiompc.fxmath on edge inputs.

(``tests/nn/test_nn_ir_transformer.py`` covers the same nodes inside graphs: the interpreter, serialization,
validation and ring rules.)"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from aiompc import fxmath as fx
from aiompc import qmath
from aiompc.errors import InputError, UnsupportedModel
from aiompc.nn.ir_base import Node, TensorSpec
from aiompc.nn.ir_transformer import (TRANSFORMER_NODES, AddConst, FeatureAffine, GeluFx, LayerNormFx, LayerNormQ,
                                      Lookup, MatMul, MatMulShared, ReduceSum, Reshape, Slice, SoftmaxFx, SoftmaxQ,
                                      Transpose, layout_node, sample_axis)
from aiompc.qtables import layernorm_params, softmax_params

F, L = 12, 37


def spec(shape: tuple[int, ...], lo: int, hi: int, name: str = "x") -> TensorSpec:
    return TensorSpec.for_range(name, shape, lo, hi, (1.0,))


def _grid(k: int, lo: int, hi: int) -> np.ndarray:
    """Every vector of ``k`` values in ``[lo, hi]`` (a brute-force input set), ``(n, k)``."""
    return np.array(list(itertools.product(range(lo, hi + 1), repeat=k)), dtype=np.int64)


# --------------------------------------------------------------------------- sample_axis


@pytest.mark.parametrize("axis,rank,want", [(0, 1, 0), (-1, 1, 0), (-1, 3, 2), (-3, 3, 0), (2, 3, 2)])
def test_sample_axis_maps_negative_axes(axis: int, rank: int, want: int) -> None:
    node = ReduceSum(name="r", inputs=("x",), output="y", axis=0)
    assert sample_axis(node, axis, rank) == want


@pytest.mark.parametrize("axis,rank", [(3, 3), (-4, 3), (1, 1)])
def test_sample_axis_out_of_range_names_the_node(axis: int, rank: int) -> None:
    node = ReduceSum(name="r9", inputs=("x",), output="y", axis=0)
    with pytest.raises(UnsupportedModel, match=f"reduce_sum node 'r9': axis {axis} is out of range for rank {rank}"):
        sample_axis(node, axis, rank)


# --------------------------------------------------------------------------- MatMul


def test_matmul_checks_its_weights() -> None:
    kw = dict(name="m", inputs=("x",), output="y")
    with pytest.raises(InputError, match=r"matmul 'm': weight_shape must be \(K, O\)"):
        MatMul(**kw, weight_shape=(3,))
    with pytest.raises(InputError, match="weight_shape must be"):
        MatMul(**kw, weight_shape=(0, 3))
    with pytest.raises(InputError, match="give both weight and bias, or neither"):
        MatMul(**kw, weight_shape=(2, 3), weight=np.zeros((2, 3)))
    with pytest.raises(InputError, match=r"weight \(3, 2\) / bias \(3,\) do not match \(2, 3\) / \(3,\)"):
        MatMul(**kw, weight_shape=(2, 3), weight=np.zeros((3, 2)), bias=np.zeros(3))
    with pytest.raises(InputError, match="weights exceed signed 4 bits"):
        MatMul(**kw, weight_shape=(1, 1), weight=np.array([[8]]), bias=np.zeros(1), weight_bits=4)
    with pytest.raises(InputError, match="weights exceed signed 4 bits"):
        MatMul(**kw, weight_shape=(1, 1), weight=np.array([[-9]]), bias=np.zeros(1), weight_bits=4)
    ok = MatMul(**kw, weight_shape=(1, 2), weight=np.array([[-8, 7]]), bias=np.zeros(2), weight_bits=4)
    assert ok.loaded and (ok.in_features, ok.out_features) == (1, 2) and ok.weight.dtype == np.int64
    assert ok.private_fields == ("weight", "bias")


@pytest.mark.parametrize("lo,hi", [(-2, 1), (0, 3), (1, 3), (-3, -1)])
def test_matmul_bounds_are_exact_over_every_input(lo: int, hi: int, nprng: np.random.Generator) -> None:
    """Brute force over all of [lo, hi]^K (including ranges that exclude 0: the bound widens them to 0)."""
    w, b = nprng.integers(-7, 8, (3, 4)), nprng.integers(-20, 21, 4)
    node = MatMul(name="m", inputs=("x",), output="y", weight_shape=(3, 4), weight=w, bias=b, weight_bits=4)
    got = node.infer([spec((5, 3), lo, hi)])
    assert got.shape == (5, 4)
    ys = _grid(3, min(lo, 0), max(hi, 0)) @ w + b
    assert (got.lo, got.hi) == (ys.min(), ys.max())  # sound and attained on the widened range
    inside = _grid(3, lo, hi) @ w + b
    assert got.lo <= inside.min() and inside.max() <= got.hi


def test_matmul_bounds_beyond_the_widest_width_are_refused_not_wrapped() -> None:
    """32-bit weights on 40-bit inputs: products past int64 are computed exactly and refused (62 bits at most)."""
    big = (1 << 31) - 1
    node = MatMul(name="m", inputs=("x",), output="y", weight_shape=(2, 1), weight=np.array([[big], [big]]),
                  bias=np.zeros(1), weight_bits=32)
    with pytest.raises(UnsupportedModel, match=r"accumulator needs about 72 bits \(> 62\)"):
        node.infer([spec((1, 2), -(1 << 39), (1 << 39) - 1)])
    ok = node.infer([spec((1, 2), -(1 << 20), (1 << 20) - 1)])
    assert (ok.lo, ok.hi) == (-2 * big * (1 << 20), 2 * big * ((1 << 20) - 1))


def test_matmul_metadata_and_feature_mismatch() -> None:
    node = MatMul(name="m", inputs=("x",), output="y", weight_shape=(6, 2))
    got = node.infer([spec((2, 3, 6), -4, 3)])
    assert got == type(got)((2, 3, 2), None, None) and not node.loaded
    with pytest.raises(UnsupportedModel, match=r"matmul 'm': input shape \(4, 5\) has not 6 features"):
        node.infer([spec((4, 5), 0, 1)])


# --------------------------------------------------------------------------- MatMulShared


@pytest.mark.parametrize("a_rng,b_rng", [((-3, 2), (0, 3)), ((1, 2), (1, 3)), ((-2, -1), (-3, 2)), ((0, 0), (-5, 5))])
def test_matmul_shared_bounds_are_attained_by_constant_operands(a_rng: tuple[int, int], b_rng: tuple[int, int],
                                                                nprng: np.random.Generator) -> None:
    node = MatMulShared(name="m", inputs=("a", "b"), output="y")
    k = 3
    got = node.infer([spec((2, 4, k), *a_rng, "a"), spec((2, k, 5), *b_rng, "b")])
    assert got.shape == (2, 4, 5)
    ends = [k * p * q for p in a_rng for q in b_rng]  # constant corner operands attain both ends
    assert (got.lo, got.hi) == (min(ends), max(ends))
    a = nprng.integers(a_rng[0], a_rng[1] + 1, (200, 2, 4, k))
    b = nprng.integers(b_rng[0], b_rng[1] + 1, (200, 2, k, 5))
    y = a @ b
    assert got.lo <= y.min() and y.max() <= got.hi


def test_matmul_shared_needs_two_inputs_of_matching_rank() -> None:
    with pytest.raises(InputError, match="takes 2 input"):
        MatMulShared(name="m", inputs=("a",), output="y")
    node = MatMulShared(name="m", inputs=("a", "b"), output="y")
    with pytest.raises(UnsupportedModel, match="cannot multiply"):
        node.infer([spec((4,), 0, 1, "a"), spec((4,), 0, 1, "b")])  # rank 1
    with pytest.raises(UnsupportedModel, match="cannot multiply"):
        node.infer([spec((2, 3, 4), 0, 1, "a"), spec((4, 5), 0, 1, "b")])  # ranks differ


# --------------------------------------------------------------------------- layout nodes against numpy


def test_layout_node_shapes_follow_numpy(nprng: np.random.Generator) -> None:
    for _ in range(30):
        shape = tuple(int(d) for d in nprng.integers(1, 5, int(nprng.integers(1, 5))))
        x, a = spec(shape, -3, 4), np.empty(shape)
        perm = tuple(int(p) for p in nprng.permutation(len(shape)))
        t = layout_node("transpose", {"perm": list(perm)}, name="t", edge="x", output="y").infer([x])
        assert t.shape == a.transpose(perm).shape and (t.lo, t.hi) == (-3, 4)
        ax = int(nprng.integers(-len(shape), len(shape)))
        stop = int(nprng.integers(1, shape[ax] + 1))
        start = int(nprng.integers(0, stop))
        s = layout_node("slice", {"axis": ax, "start": start, "stop": stop}, name="s", edge="x", output="y").infer([x])
        idx = [slice(None)] * len(shape)
        idx[ax] = slice(start, stop)
        assert s.shape == a[tuple(idx)].shape
        target = (-1, shape[-1]) if len(shape) > 1 else (2, -1) if shape[0] % 2 == 0 else (-1,)
        r = layout_node("reshape", {"shape": list(target)}, name="r", edge="x", output="y").infer([x])
        assert r.shape == a.reshape(target).shape
        for keep in (True, False):
            if len(shape) == 1 and not keep:
                continue
            rs = ReduceSum(name="r", inputs=("x",), output="y", axis=ax, keepdims=keep).infer([x])
            assert rs.shape == a.sum(axis=ax, keepdims=keep).shape
            assert (rs.lo, rs.hi) == (-3 * shape[ax], 4 * shape[ax])  # attained by constant rows


def test_layout_node_construction_errors() -> None:
    with pytest.raises(InputError, match=r"reshape 'r': shape \(0, 4\) needs positive dims and at most one -1"):
        Reshape(name="r", inputs=("x",), output="y", shape=(0, 4))
    with pytest.raises(InputError, match="needs positive dims"):
        Reshape(name="r", inputs=("x",), output="y", shape=())
    with pytest.raises(InputError, match=r"slice 's': needs 0 <= start < stop, got -1:2"):
        Slice(name="s", inputs=("x",), output="y", axis=0, start=-1, stop=2)
    with pytest.raises(InputError, match=r"perm \(1, 2\) is not a permutation of 0..1"):
        Transpose(name="t", inputs=("x",), output="y", perm=(1, 2))
    with pytest.raises(InputError, match="takes 1 input"):
        Transpose(name="t", inputs=("x", "z"), output="y", perm=(0,))
    with pytest.raises(UnsupportedModel, match="a sample cannot become a scalar"):
        ReduceSum(name="r", inputs=("x",), output="y", axis=0, keepdims=False).infer([spec((5,), 0, 1)])
    with pytest.raises(UnsupportedModel, match=r"\(4, 6\) does not reshape to \(5, 5\)"):
        Reshape(name="r", inputs=("x",), output="y", shape=(5, 5)).infer([spec((4, 6), 0, 1)])


# --------------------------------------------------------------------------- AddConst / FeatureAffine


@pytest.mark.parametrize("shape", [(3, 4), (4,), (1, 4), (3, 1)])
def test_add_const_bounds_are_attained_and_sound(shape: tuple[int, ...], nprng: np.random.Generator) -> None:
    bias = nprng.integers(-50, 50, shape)
    node = AddConst(name="a", inputs=("x",), output="y", shape=shape, bias=bias)
    got = node.infer([spec((3, 4), -8, 7)])
    assert got.shape == (3, 4) and (got.lo, got.hi) == (-8 + bias.min(), 7 + bias.max())
    y = nprng.integers(-8, 8, (500, 3, 4)) + bias
    assert got.lo <= y.min() and y.max() <= got.hi


def test_add_const_checks_its_bias() -> None:
    with pytest.raises(InputError, match=r"add_const 'a': bias \(4,\) does not match shape \(3, 4\)"):
        AddConst(name="a", inputs=("x",), output="y", shape=(3, 4), bias=np.zeros(4))
    empty = AddConst(name="a", inputs=("x",), output="y", shape=(0,), bias=np.zeros(0))
    with pytest.raises(UnsupportedModel, match="does not broadcast"):
        empty.infer([spec((3, 4), -8, 7)])
    meta = AddConst(name="a", inputs=("x",), output="y", shape=(3, 4))
    assert not meta.loaded and meta.infer([spec((3, 4), 0, 1)]).hi is None


def test_feature_affine_bounds_over_every_input(nprng: np.random.Generator) -> None:
    w, b = nprng.integers(-7, 8, 5), nprng.integers(-9, 10, 5)
    node = FeatureAffine(name="f", inputs=("x",), output="y", features=5, weight=w, bias=b, weight_bits=4)
    got = node.infer([spec((2, 5), -4, 3)])
    ys = np.arange(-4, 4)[:, None] * w + b  # every input value on every feature
    assert got.shape == (2, 5) and (got.lo, got.hi) == (ys.min(), ys.max())


def test_feature_affine_bounds_do_not_overflow_int64() -> None:
    """Products of 32-bit weights and 62-bit bounds exceed int64: the bound is computed in Python integers."""
    big = (1 << 31) - 1
    node = FeatureAffine(name="f", inputs=("x",), output="y", features=1, weight=np.array([big]),
                         bias=np.array([0]), weight_bits=32)
    hi = (1 << 61) - 1
    got = node.infer([TensorSpec("x", (1,), 62, True, -(1 << 61), hi)])
    assert (got.lo, got.hi) == (big * -(1 << 61), big * hi)


def test_feature_affine_checks() -> None:
    with pytest.raises(InputError, match="feature_affine 'f': needs features >= 1"):
        FeatureAffine(name="f", inputs=("x",), output="y", features=0)
    with pytest.raises(InputError, match="weight_bits 33 outside 1..32"):
        FeatureAffine(name="f", inputs=("x",), output="y", features=1, weight_bits=33)
    meta = FeatureAffine(name="f", inputs=("x",), output="y", features=3)
    assert meta.infer([spec((2, 3), 0, 1)]).lo is None


# --------------------------------------------------------------------------- quantized non-linearities


@pytest.mark.parametrize("k", [1, 3, 8])
def test_lookup_bounds_hold_the_program_and_k_is_the_table_width(k: int, nprng: np.random.Generator) -> None:
    table = tuple(int(v) for v in nprng.integers(-100, 100, 1 << k))
    node = Lookup(name="l", inputs=("x",), output="y", table=table)
    assert node.k == k
    lo, hi = -(1 << (k - 1)), (1 << (k - 1)) - 1
    got = node.infer([spec((2, 3), lo, hi)])
    y = qmath.lookup_int(np.arange(lo, hi + 1), table)
    assert (got.lo, got.hi) == (y.min(), y.max()) == (min(table), max(table))
    node.infer([spec((2,), 0, (1 << k) - 1)])  # an unsigned k-bit input indexes it too
    with pytest.raises(UnsupportedModel, match=f"a {k + 1}-bit input does not index a {k}-bit table"):
        node.infer([spec((2,), 0, (1 << k))])


@pytest.mark.parametrize("size", [0, 1, 3, 512])
def test_lookup_tables_have_2_to_the_k_entries(size: int) -> None:
    with pytest.raises(InputError, match=f"lookup 'l': a table has 2\\^k entries, 1 <= k <= 8; got {size}"):
        Lookup(name="l", inputs=("x",), output="y", table=tuple(range(size)))


def test_softmax_and_layernorm_q_bounds_hold_the_programs(nprng: np.random.Generator) -> None:
    n = 8
    sp, _ = softmax_params(1 / 8, n, out_bits=6)
    z = np.concatenate([nprng.integers(-128, 128, (100, n)), np.full((1, n), 127), np.eye(n, dtype=np.int64) * 127])
    got = SoftmaxQ(name="s", inputs=("x",), output="y", params=sp).infer([spec((4, n), -128, 127)])
    y = qmath.softmax_int(z, sp)
    assert (got.lo, got.hi) == (0, 63) and got.lo <= y.min() and y.max() <= got.hi
    lp, _ = layernorm_params(0.05, n, out_bits=5)
    x = np.concatenate([nprng.integers(-128, 128, (100, n)), np.array([[-128, 127] * (n // 2)]), np.full((1, n), 3)])
    got = LayerNormQ(name="n", inputs=("x",), output="y", params=lp).infer([spec((4, n), -128, 127)])
    y = qmath.layernorm_int(x, lp)
    assert (got.lo, got.hi) == (-16, 15) and got.lo <= y.min() and y.max() <= got.hi


@pytest.mark.parametrize("kind", [SoftmaxQ, LayerNormQ, SoftmaxFx, LayerNormFx])
def test_row_nodes_need_a_non_empty_last_axis(kind: type[Node]) -> None:
    params = {SoftmaxQ: {"params": softmax_params(0.1, 4)[0]}, LayerNormQ: {"params": layernorm_params(0.1, 4)[0]},
              SoftmaxFx: {"f": F}, LayerNormFx: {"f": F}}[kind]
    node = kind(name="z", inputs=("x",), output="y", **params)
    with pytest.raises(UnsupportedModel, match="needs a non-empty last axis"):
        node.infer([TensorSpec("x", (), 8, True, -1, 1)])
    assert node.infer([spec((1,), -1, 1)]).shape == (1,)  # one value per row is fine


# --------------------------------------------------------------------------- Iron's fixed point: declared widths


@pytest.mark.parametrize("f,l,ok", [(2, 5, True), (30, 61, True), (30, 62, True), (1, 37, False), (31, 63, False),
                                    (12, 24, False), (12, 63, False), (20, 40, False)])
def test_fixed_point_nodes_check_f_and_l(f: int, l: int, ok: bool) -> None:
    """The common bounds of every fixed-point node (its own program's bounds come on top)."""
    for kind in (SoftmaxFx, GeluFx, LayerNormFx):
        f_lo, f_hi = kind.f_range
        if not ok:
            with pytest.raises(InputError, match=rf"needs 2 <= f <= 30 and 2f < l <= 62, got f = {f}, l = {l}"):
                kind(name="n", inputs=("x",), output="y", f=f, l=l)
        elif f_lo <= f <= f_hi and l >= 2 * f + kind.l_over_2f:
            assert kind(name="n", inputs=("x",), output="y", f=f, l=l).l == l
        else:
            with pytest.raises(InputError, match=rf"its program needs {f_lo} <= f <= {f_hi} and l >= 2f \+ "
                                                 rf"{kind.l_over_2f}, got f = {f}, l = {l}"):
                kind(name="n", inputs=("x",), output="y", f=f, l=l)


@pytest.mark.parametrize("kind,f,l,ok", [(SoftmaxFx, 3, 7, True), (SoftmaxFx, 18, 37, True), (SoftmaxFx, 19, 40, False),
                                         (GeluFx, 12, 32, True), (GeluFx, 12, 31, False), (GeluFx, 3, 14, True),
                                         (LayerNormFx, 14, 36, True), (LayerNormFx, 14, 35, False),
                                         (LayerNormFx, 15, 40, False)])
def test_fixed_point_nodes_check_their_programs_bounds(kind: type[Node], f: int, l: int, ok: bool) -> None:
    if ok:
        assert kind(name="n", inputs=("x",), output="y", f=f, l=l).f == f
    else:
        with pytest.raises(InputError, match="its program needs"):
            kind(name="n", inputs=("x",), output="y", f=f, l=l)


_FX_PROGRAMS = {SoftmaxFx: fx.softmax_fixed, GeluFx: fx.gelu_fixed, LayerNormFx: fx.layernorm_fixed}


@pytest.mark.parametrize("kind,f,l", [(SoftmaxFx, 2, 37), (GeluFx, 2, 37), (LayerNormFx, 15, 40), (LayerNormFx, 20, 62)])
def test_fixed_point_nodes_accept_only_what_their_programs_compute(kind: type[Node], f: int, l: int) -> None:
    try:
        kind(name="n", inputs=("x",), output="y", f=f, l=l)
    except InputError:
        return  # refused up front: fine
    x = np.array([[0, 1, -1, 5]], dtype=np.int64)
    _FX_PROGRAMS[kind](x, f=f, l=l)  # accepted: the plaintext program must compute it


@pytest.mark.parametrize("eps", [0.0, 1.0, -1e-5])
def test_layernorm_fx_checks_eps(eps: float) -> None:
    with pytest.raises(InputError, match="eps must lie in \\(0, 1\\)"):
        LayerNormFx(name="n", inputs=("x",), output="y", f=F, eps=eps)


def test_fixed_point_nodes_default_to_cheetahs_ring() -> None:
    assert {kind(name="n", inputs=("x",), output="y", f=F).l for kind in (SoftmaxFx, GeluFx, LayerNormFx)} == {37}


@pytest.mark.parametrize("n", [1, 2, 33])
def test_softmax_fx_declared_width_holds_fxmath(n: int, nprng: np.random.Generator) -> None:
    top = 1 << (L - 2)
    rows = [nprng.integers(-(8 << F), 8 << F, (50, n)), np.full((1, n), 5), np.full((1, n), -top),
            np.concatenate([[top - 1], np.full(n - 1, -top)])[None, :]]
    z = np.concatenate(rows)
    y = fx.softmax_fixed(z, f=F, l=L)
    got = SoftmaxFx(name="s", inputs=("x",), output="y", f=F).infer([spec((3, n), -top, top - 1)])
    assert (got.lo, got.hi) == (0, (2 << F) - 1) and got.lo <= y.min() and y.max() <= got.hi
    assert y.max() >= (1 << F) - 8  # a one-hot row reaches about 1.0 (the declaration is not loose by a bit)


@pytest.mark.parametrize("lo,hi", [(-(1 << 22) + 1, (1 << 22) - 1), (-(4 << F), 4 << F), (-(1 << 21), -5), (0, 0)])
def test_gelu_fx_declared_bounds_hold_fxmath(lo: int, hi: int, nprng: np.random.Generator) -> None:
    x = np.unique(np.concatenate([np.array([lo, hi, 0, -1, 1, -(1 << F), 1 << F, -(3 << (F - 1))]),
                                  nprng.integers(lo, hi + 1, 2000)]))
    x = x[(x >= lo) & (x <= hi)]
    y = fx.gelu_fixed(x, f=F, l=L)
    got = GeluFx(name="g", inputs=("x",), output="y", f=F).infer([spec((x.size,), lo, hi)])
    assert got.lo <= y.min() and y.max() <= got.hi
    h = max(hi, 0)
    assert (got.lo, got.hi) == (-(1 << (F - 2)), h + (h >> F) + (1 << (F - 2)))
    # GELU's minimum is about -0.17 (at x ~ -0.75): the declared -1/4 is within a tenth of it
    if lo <= -(3 << (F - 2)) <= hi:
        assert y.min() < -0.15 * 2**F


@pytest.mark.xfail(strict=True, reason="bug: GeluFx's lower bound -2^(f-2) leaves out the approximation's error of up to "
                                       "|x|·2^-(f+1) on negative inputs (the upper bound has its h >> f): at f = 8, l = 37 "
                                       "gelu_fixed(-(2^26 - 1)) = -2^17 < -64 (sound only where 2^(l-3-f) >> (f+1) "
                                       "<= 2^(f-2), e.g. f = 12, l = 37)")
@pytest.mark.parametrize("f,l", [(8, 37), (12, 45)])
def test_gelu_fx_lower_bound_holds_over_the_whole_domain(f: int, l: int) -> None:
    lim = 1 << (l - 3 - f)  # gelu_fixed's domain |x| < 2^(l-3-f)
    x = np.array([-lim + 1, -(lim >> 1), -(1 << (f + 4)), -(3 << (f - 2)), 0, lim - 1])
    y = fx.gelu_fixed(x, f=f, l=l)
    got = GeluFx(name="g", inputs=("x",), output="y", f=f, l=l).infer([spec((x.size,), -lim + 1, lim - 1)])
    assert got.lo <= y.min() and y.max() <= got.hi


@pytest.mark.parametrize("H", [1, 2, 5, 64])
def test_layernorm_fx_declared_bounds_hold_fxmath(H: int, nprng: np.random.Generator) -> None:
    plan = fx.layernorm_plan(H, f=F, l=L)
    dev = (1 << (plan.A + F)) - 1  # the plan's domain: |x − mean| < 2^A (real)
    spike = np.zeros((1, H), dtype=np.int64)
    spike[0, 0] = dev  # one value away from the others: the largest normalized value, sqrt(H − 1)
    rows = [nprng.integers(-(dev // 2), dev // 2, (200, H)), spike, -spike, np.full((1, H), 12345),
            np.array([[(-1) ** i * (dev // 2) for i in range(H)]])]
    x = np.concatenate(rows)
    y = fx.layernorm_fixed(x, f=F, l=L)
    got = LayerNormFx(name="n", inputs=("x",), output="y", f=F).infer([spec((4, H), -dev, dev)])
    assert got.lo <= y.min() and y.max() <= got.hi and got.lo == -got.hi
    assert got.hi >= (math.ceil(math.sqrt(H)) + 1) << F  # at least the docstring's ±(ceil(sqrt(H)) + 1)·2^f
    if H > 1:  # and the spike row comes within a few LSB of sqrt(H − 1)
        assert abs(y[200, 0] - math.sqrt(H - 1) * 2**F) < 0.02 * 2**F + 8
    assert np.all(y[202] == 0)  # a constant row: exactly 0


def test_transformer_nodes_lists_every_kind_once() -> None:
    assert len(set(TRANSFORMER_NODES)) == len(TRANSFORMER_NODES) == 14
    assert len({k.op for k in TRANSFORMER_NODES}) == 14 and all(issubclass(k, Node) for k in TRANSFORMER_NODES)
