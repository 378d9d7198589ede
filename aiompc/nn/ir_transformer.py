"""The transformer layers of the integer model IR (issue 25): token matmuls, attention products, head reshapes,
Softmax, LayerNorm and GELU in the two programs.

Per-sample token tensors are ``(S, H)`` (sequence, features), heads ``(heads, S, d)``; the batch axis comes first
at run time and is never named by a node (every ``axis`` / ``perm`` / ``shape`` below is per sample).  Activations
carry one scale per tensor (``TensorSpec.scale`` of length 1) and so do MatMul weights (one scale for the whole
``(K, O)`` matrix: a per-output-column scale would not survive the head reshapes).  All values are integers.

==============  ==============  =============================================================================
node            op              integer semantics (per sample)
==============  ==============  =============================================================================
MatMul          matmul          ``x @ W + b``: ``x (..., K)``, ``W`` int64 ``(K, O)``, ``b`` int64 ``(O,)``
MatMulShared    matmul_shared   ``a @ b``: ``a (..., S, K)``, ``b (..., K, T)``, same leading axes (heads)
Transpose       transpose       ``x.transpose(perm)``
Reshape         reshape         ``x.reshape(shape)`` (row-major; at most one ``-1``)
Slice           slice           ``x[..., start:stop, ...]`` on ``axis``
ReduceSum       reduce_sum      ``x.sum(axis, keepdims)`` (a mean is ReduceSum then Requantize)
AddConst        add_const       ``x + bias``, ``bias`` int64 of per-sample ``shape`` broadcast to ``x``'s (the
                                positional embedding; the server's secret, the server adds it to its share)
FeatureAffine   feature_affine  ``w[h] * x[..., h] + b[h]`` on the last axis (LayerNorm's gamma / beta)
Lookup          lookup          :func:`aiompc.qmath.lookup_int`: ``table[x mod 2^k]`` (GELU of a k-bit value)
SoftmaxQ        softmax_q       :func:`aiompc.qmath.softmax_int` on the last axis (:class:`~aiompc.qmath.SoftmaxParams`)
LayerNormQ      layernorm_q     :func:`aiompc.qmath.layernorm_int` on the last axis, no affine
                                (:class:`~aiompc.qmath.LayerNormParams`)
SoftmaxFx       softmax_fx      ``aiompc.fxmath.softmax_fixed(z, f=f, l=l)``: Iron's fixed-point Softmax
GeluFx          gelu_fx         ``aiompc.fxmath.gelu_fixed(x, f=f, l=l)`` (``l`` = 37 by default: Cheetah's ring)
LayerNormFx     layernorm_fx    ``aiompc.fxmath.layernorm_fixed(x, f=f, l=l, eps=eps)`` (no affine)
==============  ==============  =============================================================================

**Bounds.**  MatMul, FeatureAffine and AddConst bound their outputs from the weights, exactly (as
:class:`~aiompc.nn.ir.Linear`: every extreme is attained by some input); MatMulShared by ``K`` times the extreme
products of its inputs' bounds; the reshaping nodes keep their input's bounds and ReduceSum multiplies them by
the reduced length.  The quantized non-linearities are bounded by their public constants: SoftmaxQ
``[0, 2^out_bits - 1]``, LayerNormQ the signed ``out_bits`` range, Lookup the table's minimum and maximum.
The fixed-point (Iron) nodes *declare* their widths as :mod:`aiompc.nn.fixed_point` does for Cheetah's program
(fixed point has no proven range; values at scale ``2^-f``): SoftmaxFx unsigned ``f + 1`` bits (a probability),
GeluFx ``[-2^(f-2), h + h·2^-f + 2^(f-2)]`` for ``h = max(hi, 0)`` (GELU >= -0.17 and <= max(x, 0), with room for
the approximation's error), LayerNormFx ``±(ceil(sqrt(H)) + 1)·2^f`` (a normalized value is at most ``sqrt(H - 1)``).

Weights and biases (MatMul, AddConst, FeatureAffine) are the server's secret; tables, Softmax/LayerNorm
constants and ``f`` are public metadata.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar, Sequence

import numpy as np

from aiompc.crypto.he import CHEETAH_PLAIN_BITS
from aiompc import fxmath as fx
from aiompc.errors import InputError, UnsupportedModel
from aiompc.nn.bounds import linear_channel_ranges, range_of_width
from aiompc.nn.ir_base import Inferred, Node, TensorSpec, WeightedNode, params_field
from aiompc.qmath import LayerNormParams, SoftmaxParams, int_table, table_bits

__all__ = ["MatMul", "MatMulShared", "Transpose", "Reshape", "Slice", "ReduceSum", "AddConst", "FeatureAffine",
           "Lookup", "SoftmaxQ", "LayerNormQ", "SoftmaxFx", "GeluFx", "LayerNormFx", "TRANSFORMER_NODES",
           "sample_axis", "layout_node"]


def sample_axis(node: Node, axis: int, rank: int) -> int:
    """The per-sample ``axis`` (negative counts from the end) as an index in ``0..rank-1``;
    :class:`UnsupportedModel` if the rank has no such axis."""
    if not -rank <= axis < rank:
        raise UnsupportedModel(f"{node.op} node {node.name!r}: axis {axis} is out of range for rank {rank} per sample")
    return axis % rank


def _need_features(node: Node, x: TensorSpec, n: int, what: str) -> None:
    if not x.shape or x.shape[-1] != n:
        raise UnsupportedModel(f"{node.op} {node.name!r}: input shape {x.shape} has not {n} {what} on its last axis")


def _need_last_axis(node: Node, x: TensorSpec) -> None:
    if not x.shape or x.shape[-1] < 1:
        raise UnsupportedModel(f"{node.op} {node.name!r}: needs a non-empty last axis, input shape {x.shape}")


# --------------------------------------------------------------------------- linear (HE)


@dataclass(frozen=True, eq=False, kw_only=True)
class MatMul(WeightedNode):
    """``x @ W + b`` over the last axis of a token tensor: ``weight`` int64 ``(K, O)`` within signed ``weight_bits``
    bits (one scale for the whole matrix), ``bias`` int64 ``(O,)`` at the accumulator scale.  Output: the exact
    accumulator, shape ``(..., O)``."""

    op: ClassVar[str] = "matmul"
    weight_shape: tuple[int, int]

    def __post_init__(self) -> None:
        super().__post_init__()
        object.__setattr__(self, "weight_shape", tuple(int(d) for d in self.weight_shape))
        if len(self.weight_shape) != 2 or min(self.weight_shape) < 1:
            raise InputError(f"matmul {self.name!r}: weight_shape must be (K, O) with K, O >= 1")
        self._check_weights(self.weight_shape, self.weight_shape[1])

    @property
    def in_features(self) -> int:
        return self.weight_shape[0]

    @property
    def out_features(self) -> int:
        return self.weight_shape[1]

    def infer(self, inputs: Sequence[TensorSpec]) -> Inferred:
        (x,) = inputs
        _need_features(self, x, self.in_features, "features")
        shape = (*x.shape[:-1], self.out_features)
        if self.weight is None:
            return Inferred(shape, None, None)
        lo, hi = linear_channel_ranges(self.weight.T, self.bias, min(x.lo, 0), max(x.hi, 0))
        return Inferred(shape, int(lo.min()), int(hi.max()))


@dataclass(frozen=True, eq=False, kw_only=True)
class MatMulShared(Node):
    """``a @ b`` of two shared activations (attention's ``Q·Kᵀ`` and ``P·V``): ``a (..., S, K)``, ``b (..., K, T)``
    with the same leading axes (heads); output ``(..., S, T)``, the exact products' sum."""

    op: ClassVar[str] = "matmul_shared"
    arity: ClassVar[int | None] = 2

    def infer(self, inputs: Sequence[TensorSpec]) -> Inferred:
        a, b = inputs
        if len(a.shape) < 2 or a.shape[:-2] != b.shape[:-2] or len(b.shape) != len(a.shape) \
                or a.shape[-1] != b.shape[-2]:
            raise UnsupportedModel(f"matmul_shared {self.name!r}: cannot multiply {a.shape} by {b.shape} "
                                   "(want (..., S, K) @ (..., K, T), same leading axes)")
        k = a.shape[-1]
        corners = [a.lo * b.lo, a.lo * b.hi, a.hi * b.lo, a.hi * b.hi]
        return Inferred((*a.shape[:-1], b.shape[-1]), k * min(corners), k * max(corners))


# --------------------------------------------------------------------------- local reshaping and sums


@dataclass(frozen=True, eq=False, kw_only=True)
class Transpose(Node):
    """``x.transpose(perm)`` (a permutation of the per-sample axes)."""

    op: ClassVar[str] = "transpose"
    perm: tuple[int, ...]

    def __post_init__(self) -> None:
        super().__post_init__()
        object.__setattr__(self, "perm", tuple(int(p) for p in self.perm))
        if sorted(self.perm) != list(range(len(self.perm))):
            raise InputError(f"transpose {self.name!r}: perm {self.perm} is not a permutation of 0..{len(self.perm) - 1}")

    def infer(self, inputs: Sequence[TensorSpec]) -> Inferred:
        (x,) = inputs
        if len(x.shape) != len(self.perm):
            raise UnsupportedModel(f"transpose {self.name!r}: perm {self.perm} for a rank-{len(x.shape)} input")
        return Inferred(tuple(x.shape[p] for p in self.perm), x.lo, x.hi)


@dataclass(frozen=True, eq=False, kw_only=True)
class Reshape(Node):
    """Row-major ``x.reshape(shape)`` of the per-sample tensor; at most one ``-1`` (inferred)."""

    op: ClassVar[str] = "reshape"
    shape: tuple[int, ...]

    def __post_init__(self) -> None:
        super().__post_init__()
        object.__setattr__(self, "shape", tuple(int(d) for d in self.shape))
        if not self.shape or self.shape.count(-1) > 1 or any(d < 1 and d != -1 for d in self.shape):
            raise InputError(f"reshape {self.name!r}: shape {self.shape} needs positive dims and at most one -1")

    def infer(self, inputs: Sequence[TensorSpec]) -> Inferred:
        (x,) = inputs
        known = math.prod(d for d in self.shape if d != -1)
        shape = self.shape
        if -1 in shape:
            if x.size % known:
                raise UnsupportedModel(f"reshape {self.name!r}: {x.shape} does not reshape to {self.shape}")
            shape = tuple(x.size // known if d == -1 else d for d in shape)
        if math.prod(shape) != x.size:
            raise UnsupportedModel(f"reshape {self.name!r}: {x.shape} does not reshape to {self.shape}")
        return Inferred(shape, x.lo, x.hi)


@dataclass(frozen=True, eq=False, kw_only=True)
class Slice(Node):
    """``x[..., start:stop, ...]`` on the per-sample ``axis`` (a head split, the classifier token)."""

    op: ClassVar[str] = "slice"
    axis: int
    start: int
    stop: int

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 0 <= self.start < self.stop:
            raise InputError(f"slice {self.name!r}: needs 0 <= start < stop, got {self.start}:{self.stop}")

    def infer(self, inputs: Sequence[TensorSpec]) -> Inferred:
        (x,) = inputs
        a = sample_axis(self, self.axis, len(x.shape))
        if self.stop > x.shape[a]:
            raise UnsupportedModel(f"slice {self.name!r}: {self.start}:{self.stop} beyond axis {a} of {x.shape}")
        shape = list(x.shape)
        shape[a] = self.stop - self.start
        return Inferred(tuple(shape), x.lo, x.hi)


@dataclass(frozen=True, eq=False, kw_only=True)
class ReduceSum(Node):
    """``x.sum(axis, keepdims=keepdims)`` on the per-sample ``axis``; over ``n`` values the bounds are ``n·[lo, hi]``."""

    op: ClassVar[str] = "reduce_sum"
    axis: int
    keepdims: bool = True

    def infer(self, inputs: Sequence[TensorSpec]) -> Inferred:
        (x,) = inputs
        a = sample_axis(self, self.axis, len(x.shape))
        n = x.shape[a]
        shape = tuple(1 if i == a else d for i, d in enumerate(x.shape)) if self.keepdims else \
            tuple(d for i, d in enumerate(x.shape) if i != a)
        if not shape:
            raise UnsupportedModel(f"reduce_sum {self.name!r}: a sample cannot become a scalar (keep a dim)")
        return Inferred(shape, n * x.lo, n * x.hi)


@dataclass(frozen=True, eq=False, kw_only=True)
class AddConst(WeightedNode):
    """``x + bias`` with the server's int64 ``bias`` of per-sample ``shape`` (numpy broadcast to the input's shape:
    ``(S, H)`` for a positional embedding, ``(H,)`` for a per-feature constant).  No ``weight``; the server adds
    ``bias`` to its share (local)."""

    op: ClassVar[str] = "add_const"
    shape: tuple[int, ...]

    def __post_init__(self) -> None:
        super().__post_init__()
        object.__setattr__(self, "shape", tuple(int(d) for d in self.shape))
        if self.weight is not None:
            raise InputError(f"add_const {self.name!r}: takes a bias only")
        if self.bias is not None:
            b = np.asarray(self.bias, dtype=np.int64)
            if b.shape != self.shape:
                raise InputError(f"add_const {self.name!r}: bias {b.shape} does not match shape {self.shape}")
            object.__setattr__(self, "bias", b)

    @property
    def loaded(self) -> bool:
        return self.bias is not None

    def infer(self, inputs: Sequence[TensorSpec]) -> Inferred:
        (x,) = inputs
        try:
            out = np.broadcast_shapes(x.shape, self.shape)
        except ValueError:
            out = None
        if out != x.shape:
            raise UnsupportedModel(f"add_const {self.name!r}: a constant of shape {self.shape} does not broadcast "
                                   f"to the input's {x.shape}")
        if self.bias is None:
            return Inferred(x.shape, None, None)
        if not self.bias.size:
            return Inferred(x.shape, x.lo, x.hi)
        return Inferred(x.shape, x.lo + int(self.bias.min()), x.hi + int(self.bias.max()))


@dataclass(frozen=True, eq=False, kw_only=True)
class FeatureAffine(WeightedNode):
    """``weight[h] * x[..., h] + bias[h]`` on the last axis (LayerNorm's gamma / beta): ``weight``, ``bias`` int64
    ``(features,)``, ``weight`` within signed ``weight_bits`` bits.  Secure: a product by the server's private
    weights (OT) and the bias added by the server."""

    op: ClassVar[str] = "feature_affine"
    features: int

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.features < 1:
            raise InputError(f"feature_affine {self.name!r}: needs features >= 1")
        self._check_weights((self.features,), self.features)

    def infer(self, inputs: Sequence[TensorSpec]) -> Inferred:
        (x,) = inputs
        _need_features(self, x, self.features, "features")
        if self.weight is None or self.bias is None:
            return Inferred(x.shape, None, None)
        a, b = self.weight.astype(object), self.bias.astype(object)
        ends = np.concatenate([a * x.lo + b, a * x.hi + b])
        return Inferred(x.shape, int(min(ends)), int(max(ends)))


# --------------------------------------------------------------------------- quantized non-linearities (OT)


@dataclass(frozen=True, eq=False, kw_only=True)
class Lookup(Node):
    """``table[x mod 2^k]`` elementwise (:func:`aiompc.qmath.lookup_int`): the public ``table`` of ``2^k`` integers
    (``k <= 8``; GELU of a ``k``-bit quantized value); the input's width must be at most ``k`` bits (signed or
    unsigned).  Output bounds: the table's minimum and maximum."""

    op: ClassVar[str] = "lookup"
    table: tuple[int, ...]

    def __post_init__(self) -> None:
        super().__post_init__()
        object.__setattr__(self, "table", int_table(self.table, f"lookup {self.name!r}"))

    @property
    def k(self) -> int:
        """The table's index width."""
        return table_bits(self.table)

    def infer(self, inputs: Sequence[TensorSpec]) -> Inferred:
        (x,) = inputs
        if x.bits > self.k:
            raise UnsupportedModel(f"lookup {self.name!r}: a {x.bits}-bit input does not index a {self.k}-bit table")
        return Inferred(x.shape, min(self.table), max(self.table))


@dataclass(frozen=True, eq=False, kw_only=True)
class SoftmaxQ(Node):
    """The quantized Softmax :func:`aiompc.qmath.softmax_int` on the last axis: unsigned ``params.out_bits``."""

    op: ClassVar[str] = "softmax_q"
    params: SoftmaxParams = params_field(SoftmaxParams)

    def infer(self, inputs: Sequence[TensorSpec]) -> Inferred:
        (x,) = inputs
        _need_last_axis(self, x)
        return Inferred(x.shape, *range_of_width(self.params.out_bits, False))


@dataclass(frozen=True, eq=False, kw_only=True)
class LayerNormQ(Node):
    """The quantized LayerNorm without affine :func:`aiompc.qmath.layernorm_int` on the last axis: signed
    ``params.out_bits``."""

    op: ClassVar[str] = "layernorm_q"
    params: LayerNormParams = params_field(LayerNormParams)

    def infer(self, inputs: Sequence[TensorSpec]) -> Inferred:
        (x,) = inputs
        _need_last_axis(self, x)
        return Inferred(x.shape, *range_of_width(self.params.out_bits, True))


# --------------------------------------------------------------------------- Iron's fixed point (OT)


@dataclass(frozen=True, eq=False, kw_only=True)
class _FixedPointNode(Node):
    """An Iron fixed-point function on values at scale ``2^-f`` (``2 <= f <= 30``), on the last axis, computed in the
    ring ``Z_{2^l}`` (``l``: Cheetah's 37 bits by default; the fixed-point programs depend on it)."""

    f: int
    l: int = CHEETAH_PLAIN_BITS
    f_range: ClassVar[tuple[int, int]] = (2, 30)
    """The scales its program has tables for (the reciprocal's and rsqrt's look-up widths bound them)."""
    l_over_2f: ClassVar[int] = 1
    """The least ``l − 2f``: products of two scale-``2^-f`` values (and GELU's cube) must stay in the ring."""

    def __post_init__(self) -> None:
        super().__post_init__()
        f_lo, f_hi = self.f_range
        if not 2 <= self.f <= 30 or not 2 * self.f < self.l <= 62:
            raise InputError(f"{self.op} {self.name!r}: needs 2 <= f <= 30 and 2f < l <= 62, got f = {self.f}, "
                             f"l = {self.l}")
        if not f_lo <= self.f <= f_hi or self.l < 2 * self.f + self.l_over_2f:
            raise InputError(f"{self.op} {self.name!r}: its program needs {f_lo} <= f <= {f_hi} and "
                             f"l >= 2f + {self.l_over_2f}, got f = {self.f}, l = {self.l}")


@dataclass(frozen=True, eq=False, kw_only=True)
class SoftmaxFx(_FixedPointNode):
    """Iron's Softmax ``aiompc.fxmath.softmax_fixed`` on the last axis; declared unsigned ``f + 1`` bits
    (a probability, ``<= 2^f``, and the approximation's few LSBs above it)."""

    op: ClassVar[str] = "softmax_fx"
    f_range: ClassVar[tuple[int, int]] = (3, 18)  # aiompc.fxmath.recip_lut_bits

    def infer(self, inputs: Sequence[TensorSpec]) -> Inferred:
        (x,) = inputs
        _need_last_axis(self, x)
        return Inferred(x.shape, 0, (2 << self.f) - 1)


@dataclass(frozen=True, eq=False, kw_only=True)
class GeluFx(_FixedPointNode):
    """Iron's GELU ``aiompc.fxmath.gelu_fixed`` elementwise; declared ``[-2^(f-2), h + h·2^-f + 2^(f-2)]``,
    ``h = max(hi, 0)`` (GELU >= -0.17 and <= max(x, 0); the approximation errs by at most ``2 + |x|·2^-f`` LSB)."""

    op: ClassVar[str] = "gelu_fx"
    f_range: ClassVar[tuple[int, int]] = (3, 18)  # its tanh's reciprocal: aiompc.fxmath.recip_lut_bits
    l_over_2f: ClassVar[int] = fx.GELU_RING_MARGIN

    def infer(self, inputs: Sequence[TensorSpec]) -> Inferred:
        (x,) = inputs
        quarter, h = 1 << (self.f - 2), max(x.hi, 0)
        return Inferred(x.shape, -quarter, h + (h >> self.f) + quarter)


@dataclass(frozen=True, eq=False, kw_only=True)
class LayerNormFx(_FixedPointNode):
    """Iron's LayerNorm without affine ``aiompc.fxmath.layernorm_fixed`` on the last axis (``eps`` added to the
    variance); declared ``±(ceil(sqrt(H)) + 1)·2^f`` (a normalized value is at most ``sqrt(H - 1)``; the
    approximation errs by a few LSB)."""

    op: ClassVar[str] = "layernorm_fx"
    f_range: ClassVar[tuple[int, int]] = (2, 14)  # aiompc.fxmath.rsqrt_lut_bits
    l_over_2f: ClassVar[int] = fx.LAYERNORM_RING_MARGIN
    eps: float = 1e-5

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 0 < self.eps < 1:
            raise InputError(f"layernorm_fx {self.name!r}: eps must lie in (0, 1), got {self.eps}")

    def infer(self, inputs: Sequence[TensorSpec]) -> Inferred:
        (x,) = inputs
        _need_last_axis(self, x)
        top = (math.isqrt(x.shape[-1] - 1) + 2) << self.f
        return Inferred(x.shape, -top, top)


TRANSFORMER_NODES: tuple[type[Node], ...] = (MatMul, MatMulShared, Transpose, Reshape, Slice, ReduceSum, AddConst,
                                             FeatureAffine, Lookup, SoftmaxQ, LayerNormQ, SoftmaxFx, GeluFx,
                                             LayerNormFx)
"""Every node kind of this module (listed in :data:`aiompc.nn.ir.NODE_TYPES`)."""


def layout_node(op: str, attrs: dict[str, Any], *, name: str, edge: str, output: str) -> Transpose | Reshape | Slice:
    """The layout node of a float ``transpose`` / ``reshape`` / ``slice`` op with its ``attrs`` (both lowerings,
    :mod:`aiompc.nn.quantize_transformer` and :mod:`aiompc.nn.fixed_point_transformer`, emit them unchanged)."""
    if op == "transpose":
        return Transpose(name=name, inputs=(edge,), output=output, perm=tuple(attrs["perm"]))
    if op == "reshape":
        return Reshape(name=name, inputs=(edge,), output=output, shape=tuple(attrs["shape"]))
    if op == "slice":
        return Slice(name=name, inputs=(edge,), output=output, axis=attrs["axis"], start=attrs["start"],
                     stop=attrs["stop"])
    raise UnsupportedModel(f"node {name!r}: {op!r} is not a layout op (transpose, reshape, slice)")
