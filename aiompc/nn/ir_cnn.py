"""The CNN layers of the integer model IR (:mod:`aiompc.nn.ir` states its conventions and holds the graph).

============== =======================================================
node           integer semantics (per sample, ``x`` = input tensor)
============== =======================================================
Conv           ``conv2d(x, W, stride, pads, groups) + b`` (dilation 1)
Linear         ``W @ x + b``
ChannelAffine  ``a[c] * x[c] + b[c]`` (unfolded batch-norm)
Requantize     ``aiompc.quant.requantize(x[c], M[c], s, lo, hi, r)``
Relu           ``max(x, 0)``
PartialRelu    ``where(mask, max(x, 0), x)`` (a public 0/1 mask, broadcast)
PartialReluRequantize  ``Requantize`` whose lower clip is ``max(lo, 0)`` where the mask is 1
Clip           ``clip(x, lo, hi)``
MaxPool        window max; padding never wins (see :class:`MaxPool`)
SumPool        window sum (average pool numerator; 1/k² goes to M)
Add            ``sum_i m_i[c] * x_i[c]`` (public integer rescales)
Concat         concatenation along the channel axis
Flatten        row-major reshape to one axis
============== =======================================================

Each node states its per-sample output (:meth:`~aiompc.nn.ir_base.Node.infer`: shape and proven bounds) from its
inputs' :class:`~aiompc.nn.ir_base.TensorSpec`; :data:`CNN_NODES` lists them for
:data:`aiompc.nn.ir.NODE_TYPES`.  Which protocol evaluates each: :data:`aiompc.nn.node_protocols.NODE_PROTOCOLS`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Sequence

import numpy as np

from aiompc.errors import InputError, UnsupportedModel
from aiompc.nn.bounds import linear_channel_ranges, width_for_range
from aiompc.nn.ir_base import Inferred, Node, TensorSpec, WeightedNode
from aiompc.nn.tensor_ops import out_size
from aiompc.quant import Rounding, requantize

__all__ = ["Conv", "Linear", "ChannelAffine", "Requantize", "Relu", "ReluMasked", "PartialRelu",
           "PartialReluRequantize", "Clip", "MaxPool", "SumPool", "Add", "Concat", "Flatten", "CNN_NODES"]


def _check_window(node: Node, kernel: tuple[int, int], stride: tuple[int, int], pads: tuple[int, ...]) -> None:
    if len(kernel) != 2 or len(stride) != 2 or len(pads) != 4:
        raise InputError(f"{node.op} node {node.name!r}: kernel/stride need 2 entries, pads 4")
    if min(kernel) < 1 or min(stride) < 1 or min(pads) < 0:
        raise InputError(f"{node.op} node {node.name!r}: bad kernel {kernel}, stride {stride} or pads {pads}")


def _window_shape(node: Node, spec: TensorSpec, kernel: tuple[int, int], stride: tuple[int, int],
                  pads: tuple[int, int, int, int], channels: int) -> tuple[int, int, int]:
    _, h, w = spec.shape
    ho = out_size(h, kernel[0], stride[0], pads[0], pads[2])
    wo = out_size(w, kernel[1], stride[1], pads[1], pads[3])
    if ho < 1 or wo < 1:
        raise UnsupportedModel(f"{node.op} node {node.name!r}: window {kernel} larger than padded input {spec.shape}")
    return channels, ho, wo


@dataclass(frozen=True, eq=False, kw_only=True)
class Conv(WeightedNode):
    """Integer 2-D convolution, ONNX semantics with dilation 1, zero padding, ``groups`` (depthwise when
    ``groups == C``).  ``weight``: int64 ``(O, C/groups, kh, kw)`` within signed ``weight_bits`` bits;
    ``bias``: int64 ``(O,)`` at the accumulator scale.  Output: the exact accumulator."""

    op: ClassVar[str] = "conv"
    weight_shape: tuple[int, int, int, int]
    stride: tuple[int, int] = (1, 1)
    pads: tuple[int, int, int, int] = (0, 0, 0, 0)
    groups: int = 1

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_window(self, self.weight_shape[2:], self.stride, self.pads)
        if self.weight_shape[0] % self.groups:
            raise InputError(
                f"conv {self.name!r}: {self.weight_shape[0]} outputs not divisible by groups {self.groups}")
        self._check_weights(self.weight_shape, self.weight_shape[0])

    @property
    def kernel(self) -> tuple[int, int]:
        return self.weight_shape[2], self.weight_shape[3]

    @property
    def in_channels(self) -> int:
        return self.weight_shape[1] * self.groups

    @property
    def out_channels(self) -> int:
        return self.weight_shape[0]

    @property
    def depthwise(self) -> bool:
        """True for one input channel per group (``groups == C``)."""
        return self.weight_shape[1] == 1 and self.groups > 1

    def infer(self, inputs: Sequence[TensorSpec]) -> Inferred:
        (x,) = inputs
        self._need_input(x, 3, self.in_channels, "channels")
        shape = _window_shape(self, x, self.kernel, self.stride, self.pads, self.out_channels)
        return Inferred(shape, *_linear_range(self.weight, self.bias, x))


@dataclass(frozen=True, eq=False, kw_only=True)
class Linear(WeightedNode):
    """Fully connected layer ``W @ x + b``; ``weight`` int64 ``(O, I)``, ``bias`` int64 ``(O,)``.
    Output: the exact accumulator."""

    op: ClassVar[str] = "linear"
    weight_shape: tuple[int, int]

    def __post_init__(self) -> None:
        super().__post_init__()
        self._check_weights(self.weight_shape, self.weight_shape[0])

    @property
    def in_features(self) -> int:
        return self.weight_shape[1]

    @property
    def out_features(self) -> int:
        return self.weight_shape[0]

    def infer(self, inputs: Sequence[TensorSpec]) -> Inferred:
        (x,) = inputs
        self._need_input(x, 1, self.in_features, "features")
        return Inferred((self.out_features,), *_linear_range(self.weight, self.bias, x))


@dataclass(frozen=True, eq=False, kw_only=True)
class ChannelAffine(WeightedNode):
    """Per-channel ``weight[c] * x[c] + bias[c]`` (a batch-norm that could not be folded into a linear
    layer); ``weight``/``bias`` int64 ``(C,)``, ``weight`` within signed ``weight_bits`` bits."""

    op: ClassVar[str] = "affine"
    channels: int

    def __post_init__(self) -> None:
        super().__post_init__()
        self._check_weights((self.channels,), self.channels)

    def infer(self, inputs: Sequence[TensorSpec]) -> Inferred:
        (x,) = inputs
        if not x.shape or x.shape[0] != self.channels:
            raise UnsupportedModel(f"affine {self.name!r}: input shape {x.shape} has not {self.channels} channels")
        if self.weight is None or self.bias is None:
            return Inferred(x.shape, None, None)
        a = self.weight.astype(object)
        ends = np.concatenate([a * x.lo + self.bias.astype(object), a * x.hi + self.bias.astype(object)])
        return Inferred(x.shape, int(min(ends)), int(max(ends)))


@dataclass(frozen=True, eq=False, kw_only=True)
class Requantize(Node):
    """``aiompc.quant.requantize(x[c], multiplier[c], shift, lo, hi, rounding)``: rescale by the public
    fixed-point ``multiplier / 2^shift`` (one multiplier, or one per index of the first axis), round and
    clip to ``[lo, hi]`` (``lo = 0`` fuses a ReLU).  The output edge declares the target width."""

    op: ClassVar[str] = "requantize"
    multiplier: tuple[int, ...]
    shift: int
    lo: int
    hi: int
    rounding: Rounding = "nearest"

    def __post_init__(self) -> None:
        super().__post_init__()
        object.__setattr__(self, "multiplier", tuple(int(m) for m in self.multiplier))
        if not self.multiplier or min(self.multiplier) < 0 or not 0 <= self.shift <= 62 or self.lo > self.hi:
            raise InputError(f"requantize {self.name!r}: needs multipliers >= 0, 0 <= shift <= 62, lo <= hi")
        if self.rounding not in ("nearest", "floor"):
            raise InputError(f"requantize {self.name!r}: rounding must be 'nearest' or 'floor'")

    def channel_multipliers(self, channels: int) -> np.ndarray:
        """Multipliers broadcast to ``channels`` entries (int64)."""
        return np.broadcast_to(np.asarray(self.multiplier, dtype=np.int64), (channels,)).copy()

    def product_bits(self, x: TensorSpec) -> int:
        """Signed width of ``x * M + r`` before the shift (the ring a share-wise product needs)."""
        m = max(self.multiplier)
        r = (1 << (self.shift - 1)) if (self.rounding == "nearest" and self.shift > 0) else 0
        bits, signed = width_for_range(min(x.lo * m, 0), max(x.hi * m, 0) + r)
        return bits if signed else bits + 1

    def infer(self, inputs: Sequence[TensorSpec]) -> Inferred:
        (x,) = inputs
        if len(self.multiplier) not in (1, x.shape[0] if x.shape else 1):
            raise UnsupportedModel(f"requantize {self.name!r}: {len(self.multiplier)} multipliers for shape {x.shape}")
        ms = sorted(set(self.multiplier))
        lows = [int(requantize(np.array([x.lo]), m, self.shift, self.lo, self.hi, self.rounding)[0]) for m in ms]
        highs = [int(requantize(np.array([x.hi]), m, self.shift, self.lo, self.hi, self.rounding)[0]) for m in ms]
        return Inferred(x.shape, min(lows), max(highs))


@dataclass(frozen=True, eq=False, kw_only=True)
class Relu(Node):
    """``max(x, 0)`` on an already requantized tensor (fused into :class:`Requantize` where possible)."""

    op: ClassVar[str] = "relu"

    def infer(self, inputs: Sequence[TensorSpec]) -> Inferred:
        (x,) = inputs
        return Inferred(x.shape, max(x.lo, 0), max(x.hi, 0))


def _pack_mask(mask: np.ndarray) -> tuple[tuple[int, ...], str]:
    m = np.asarray(mask)
    if m.dtype != bool and not np.all((m == 0) | (m == 1)):
        raise InputError("a ReLU mask holds only 0 and 1")
    m = m.astype(bool)
    return tuple(int(d) for d in m.shape), np.packbits(m.reshape(-1)).tobytes().hex()


@dataclass(frozen=True, eq=False, kw_only=True)
class ReluMasked(Node):
    """Base of the layers with a public ReLU mask (SNL / SENet's selective linearization): ``mask_shape``
    is the mask's per-sample shape (same rank as the input, each axis 1 or the input's: per element
    ``(C, H, W)``, per channel ``(C, 1, 1)``), ``mask_bits`` its flattened bits, ``numpy.packbits`` order,
    as hex (compact in a handshake).  The mask is architecture: the client sees it (it decides which
    comparisons run).  Build with :meth:`masked`."""

    mask_shape: tuple[int, ...]
    mask_bits: str

    def __post_init__(self) -> None:
        super().__post_init__()
        object.__setattr__(self, "mask_shape", tuple(int(d) for d in self.mask_shape))
        size = int(np.prod(self.mask_shape, dtype=np.int64))
        try:
            raw = bytes.fromhex(self.mask_bits)
        except (TypeError, ValueError) as e:
            raise InputError(f"{self.op} {self.name!r}: mask_bits is not hex") from e
        if len(raw) != (size + 7) // 8 or min(self.mask_shape, default=1) < 1:
            raise InputError(f"{self.op} {self.name!r}: {len(raw)} mask bytes for a mask of shape {self.mask_shape}")

    @classmethod
    def masked(cls, *, mask: np.ndarray, **kwargs: Any) -> Any:
        """The node with ``mask`` (0/1 or bool, per-sample shape) packed into its fields."""
        shape, bits = _pack_mask(mask)
        return cls(mask_shape=shape, mask_bits=bits, **kwargs)

    @property
    def mask(self) -> np.ndarray:
        """The mask, ``bool[mask_shape]``."""
        size = int(np.prod(self.mask_shape, dtype=np.int64))
        bits = np.unpackbits(np.frombuffer(bytes.fromhex(self.mask_bits), dtype=np.uint8), count=size)
        return bits.astype(bool).reshape(self.mask_shape)

    def full_mask(self, shape: Sequence[int]) -> np.ndarray:
        """The mask broadcast to the per-sample ``shape``, ``bool``; :class:`UnsupportedModel` if it does not fit."""
        shape = tuple(shape)
        if len(self.mask_shape) != len(shape) or any(m not in (1, d) for m, d in zip(self.mask_shape, shape)):
            raise UnsupportedModel(f"{self.op} {self.name!r}: mask of shape {self.mask_shape} does not broadcast "
                                   f"to the input's per-sample shape {shape}")
        return np.broadcast_to(self.mask, shape)

    def kept(self, shape: Sequence[int]) -> int:
        """How many ReLUs the mask keeps per sample of ``shape``."""
        return int(np.count_nonzero(self.full_mask(shape)))


def _masked_bounds(mask: np.ndarray, lo: int, hi: int, shape: tuple[int, ...]) -> Inferred:
    """Bounds of ``where(mask, max(v, 0), v)`` for ``v`` in ``[lo, hi]``."""
    if not mask.size:
        return Inferred(shape, lo, hi)
    return Inferred(shape, max(lo, 0) if mask.all() else lo, max(hi, 0) if mask.any() else hi)


@dataclass(frozen=True, eq=False, kw_only=True)
class PartialRelu(ReluMasked):
    """``where(mask, max(x, 0), x)``: ReLU where the public mask is 1, the identity elsewhere."""

    op: ClassVar[str] = "partial_relu"

    def infer(self, inputs: Sequence[TensorSpec]) -> Inferred:
        (x,) = inputs
        return _masked_bounds(self.full_mask(x.shape), x.lo, x.hi, x.shape)


@dataclass(frozen=True, eq=False, kw_only=True)
class PartialReluRequantize(ReluMasked, Requantize):
    """A :class:`Requantize` with a ReLU fused where the mask is 1: the clip there is ``[max(lo, 0), hi]``
    (``max(requantize(x), 0)``, as ``hi >= 0``), elsewhere ``[lo, hi]``."""

    op: ClassVar[str] = "requantize_partial_relu"

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.hi < 0:
            raise InputError(f"{self.op} {self.name!r}: a fused ReLU needs hi >= 0")

    def infer(self, inputs: Sequence[TensorSpec]) -> Inferred:
        (x,) = inputs
        got = Requantize.infer(self, inputs)
        assert got.lo is not None and got.hi is not None
        return _masked_bounds(self.full_mask(x.shape), got.lo, got.hi, x.shape)


@dataclass(frozen=True, eq=False, kw_only=True)
class Clip(Node):
    """``clip(x, lo, hi)`` with integer bounds (ReLU6 and friends on a requantized tensor)."""

    op: ClassVar[str] = "clip"
    lo: int
    hi: int

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.lo > self.hi:
            raise InputError(f"clip {self.name!r}: lo > hi")

    def infer(self, inputs: Sequence[TensorSpec]) -> Inferred:
        (x,) = inputs
        c = lambda v: min(max(v, self.lo), self.hi)  # noqa: E731
        return Inferred(x.shape, c(x.lo), c(x.hi))


@dataclass(frozen=True, eq=False, kw_only=True)
class _Pool(Node):
    """A window operation per channel (:class:`MaxPool`, :class:`SumPool`): its window, checked, and output shape."""

    kernel: tuple[int, int]
    stride: tuple[int, int]
    pads: tuple[int, int, int, int] = (0, 0, 0, 0)

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_window(self, self.kernel, self.stride, self.pads)

    def _pooled_shape(self, x: TensorSpec) -> tuple[int, ...]:
        """The output shape for a ``(C, H, W)`` input ``x`` (``C`` channels out)."""
        self._need_rank(x, (3,))
        return _window_shape(self, x, self.kernel, self.stride, self.pads, x.shape[0])


@dataclass(frozen=True, eq=False, kw_only=True)
class MaxPool(_Pool):
    """Window maximum.  Pads are smaller than the kernel, so every window holds a real value and
    padding with anything no larger than every input value gives the same result: the reference
    pads with the input's ``lo``; the minimum of the input's width works for both parties alike."""

    op: ClassVar[str] = "maxpool"

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.pads[0] >= self.kernel[0] or self.pads[2] >= self.kernel[0] or \
                self.pads[1] >= self.kernel[1] or self.pads[3] >= self.kernel[1]:
            raise UnsupportedModel(
                f"maxpool {self.name!r}: pads {self.pads} must be smaller than the kernel {self.kernel}")

    def infer(self, inputs: Sequence[TensorSpec]) -> Inferred:
        (x,) = inputs
        return Inferred(self._pooled_shape(x), x.lo, x.hi)


@dataclass(frozen=True, eq=False, kw_only=True)
class SumPool(_Pool):
    """Window sum with zero padding: the numerator of an average pool (global when the kernel is the
    whole input).  The ``1/(kh*kw)`` lives in the scale and later in a requantization multiplier."""

    op: ClassVar[str] = "sumpool"

    @property
    def window(self) -> int:
        return self.kernel[0] * self.kernel[1]

    def infer(self, inputs: Sequence[TensorSpec]) -> Inferred:
        (x,) = inputs
        return Inferred(self._pooled_shape(x), self.window * min(x.lo, 0), self.window * max(x.hi, 0))


@dataclass(frozen=True, eq=False, kw_only=True)
class Add(Node):
    """``sum_i multipliers[i][c] * x_i[c]``: residual add after rescaling each input to a common scale
    by public non-negative integers (one per input, or one per index of the first axis)."""

    op: ClassVar[str] = "add"
    arity: ClassVar[int | None] = None
    multipliers: tuple[tuple[int, ...], ...]

    def __post_init__(self) -> None:
        super().__post_init__()
        object.__setattr__(self, "multipliers", tuple(tuple(int(m) for m in ms) for ms in self.multipliers))
        if len(self.multipliers) != len(self.inputs) or any(not ms or min(ms) < 0 for ms in self.multipliers):
            raise InputError(f"add {self.name!r}: needs one non-empty list of multipliers >= 0 per input")

    def channel_multipliers(self, channels: int) -> np.ndarray:
        """``int64[len(inputs), channels]``."""
        return np.stack([np.broadcast_to(np.asarray(m, dtype=np.int64), (channels,)) for m in self.multipliers])

    def infer(self, inputs: Sequence[TensorSpec]) -> Inferred:
        shape = inputs[0].shape
        if any(x.shape != shape for x in inputs):
            raise UnsupportedModel(f"add {self.name!r}: input shapes differ {[x.shape for x in inputs]}")
        if any(len(m) not in (1, shape[0]) for m in self.multipliers):
            raise UnsupportedModel(f"add {self.name!r}: multipliers do not match {shape[0]} channels")
        m = self.channel_multipliers(shape[0]).astype(object)
        lo = sum(m[i] * x.lo for i, x in enumerate(inputs))
        hi = sum(m[i] * x.hi for i, x in enumerate(inputs))
        return Inferred(shape, int(min(lo)), int(max(hi)))


@dataclass(frozen=True, eq=False, kw_only=True)
class Concat(Node):
    """Concatenation along the first (channel) axis."""

    op: ClassVar[str] = "concat"
    arity: ClassVar[int | None] = None

    def infer(self, inputs: Sequence[TensorSpec]) -> Inferred:
        rest = inputs[0].shape[1:]
        if any(x.shape[1:] != rest or not x.shape for x in inputs):
            raise UnsupportedModel(
                f"concat {self.name!r}: shapes {[x.shape for x in inputs]} differ beyond the channel axis")
        return Inferred((sum(x.shape[0] for x in inputs), *rest), min(x.lo for x in inputs), max(x.hi for x in inputs))


@dataclass(frozen=True, eq=False, kw_only=True)
class Flatten(Node):
    """Row-major flattening of the per-sample tensor to one axis."""

    op: ClassVar[str] = "flatten"

    def infer(self, inputs: Sequence[TensorSpec]) -> Inferred:
        (x,) = inputs
        return Inferred((x.size,), x.lo, x.hi)


def _linear_range(weight: np.ndarray | None, bias: np.ndarray | None, x: TensorSpec) -> tuple[int | None, int | None]:
    if weight is None:
        return None, None
    lo, hi = linear_channel_ranges(weight, bias, min(x.lo, 0), max(x.hi, 0))
    return int(lo.min()), int(hi.max())


CNN_NODES: tuple[type[Node], ...] = (Conv, Linear, ChannelAffine, Requantize, Relu, PartialRelu, PartialReluRequantize,
                                     Clip, MaxPool, SumPool, Add, Concat, Flatten)
"""The CNN layers' node types (:data:`aiompc.nn.ir.NODE_TYPES` lists them with the transformer's)."""
