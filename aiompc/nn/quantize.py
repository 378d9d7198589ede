"""Post-training quantization of a :class:`FloatGraph` into an integer :class:`QGraph`.

Scheme (the HEQuant / LSQ conventions):

* weights: symmetric per output channel, ``w_bits`` bits, narrow range ``[-(2^(w-1)-1), 2^(w-1)-1]``;
  the *last* linear layer(s) per tensor, so the logits share one scale and their integer argmax is the
  float argmax; biases at the accumulator scale ``s_x * s_w[o]``, rounded;
* activations: per tensor, unsigned after ReLU (signed where values can be negative), ``a_bits`` bits,
  scale calibrated on the given data (``"mse"``: the clipping range minimising the quantization error,
  or ``"max"``); the network input at ``input_bits`` (8) bits;
* first and last linear layers (those with no linear layer upstream / downstream) get ``first_last_bits``
  (8) bit weights, and the activations feeding a last layer are quantized to that width;
* batch-norm is folded into the conv/gemm it follows; otherwise it becomes a per-channel affine layer
  with per-tensor ``affine_bits`` weights;
* a partial ReLU (SNL / SENet: ``where(mask, relu(x), x)`` with a public 0/1 mask) on an accumulator is fused
  into its requantization (:class:`~aiompc.nn.ir.PartialReluRequantize`: the clip's lower bound is 0 where the
  mask is 1), the output signed; on an activation it is a :class:`~aiompc.nn.ir.PartialRelu`; an all-ones
  mask is a ReLU, an all-zeros mask (or a non-negative input) the identity;
* a linear layer outputs its exact integer accumulator (per-channel scale).  A requantization — always
  :func:`aiompc.quant.requantize` with a fixed-point multiplier ``M / 2^shift`` (``M`` below
  ``2^multiplier_bits``) — is inserted only where the next layer needs a narrow activation: fused with a
  following ReLU/Clip (clip bounds), or before a linear layer.  Max-pool, sum-pool, flatten, add and
  concat work on whatever they receive;
* residual add of differently scaled inputs: each input is multiplied by a public integer so all share
  the scale ``min_i s_i / 2^k`` (``k`` the smallest exponent giving every multiplier a relative error of
  at most ``2^-rescale_bits``; 0 when the scales are equal), one requantization later;
* average pooling: integer window sum, the ``1/k^2`` folded into the next multiplier;
* transformer layers (matmul, attention products, Softmax, LayerNorm, GELU, head reshapes): per-tensor scales,
  lowered by :mod:`aiompc.nn.quantize_transformer` (Softmax, LayerNorm and the GELU look-up at ``nonlinear_bits``);
* the graph output is the final integer tensor (usually the last layer's accumulator, the logits) with
  its scale.

QDQ models (from :func:`aiompc.nn.onnx_import.load_onnx`) use their own integer weights and scales,
which take precedence over the configured widths: each ``fakequant`` fixes the scale and width of its
tensor, and calibration data is needed only for tensors the model leaves unquantized.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal, Sequence

import numpy as np

from aiompc.errors import InputError
from aiompc.nn.bounds import range_of_width, width_for_range
from aiompc.nn.graph import LINEAR_OPS, FloatGraph, FloatNode, fold_batchnorm
from aiompc.nn.interpret import run_float
from aiompc.nn.ir import (Add, ChannelAffine, Clip, Concat, Conv, Flatten, Linear, MaxPool, Node, PartialRelu,
                          PartialReluRequantize, QGraph, Relu, Requantize, SumPool, TensorSpec, fresh_name)
from aiompc.nn.quantize_transformer import TOKEN_HANDLERS, fold_layernorm_affine
from aiompc.quant import Rounding

__all__ = ["QuantConfig", "quantize", "calibrate_scale", "fixed_point_multipliers", "rescale_multipliers",
           "quantize_weights", "fakequant_range", "MissingCalibration"]

_PASSTHROUGH = frozenset({"relu", "partial_relu", "clip", "maxpool", "flatten", "concat", "fakequant", "reshape",
                          "transpose", "slice"})
_MAX_CALIBRATION_VALUES = 1 << 16


@dataclass(frozen=True)
class QuantConfig:
    """Quantization settings (see the module docstring)."""

    weight_bits: int = 4
    act_bits: int = 4
    input_bits: int = 8
    first_last_bits: int | None = 8
    multiplier_bits: int = 16
    rescale_bits: int = 8
    affine_bits: int = 8
    rounding: Rounding = "nearest"
    calibration: Literal["mse", "max"] = "mse"
    pow2_scales: bool = False
    nonlinear_bits: int = 8


    def __post_init__(self) -> None:
        for k in ("weight_bits", "act_bits", "input_bits", "affine_bits", "nonlinear_bits"):
            if not 2 <= getattr(self, k) <= 16:
                raise InputError(f"QuantConfig.{k} must be in 2..16")
        if self.first_last_bits is not None and not 2 <= self.first_last_bits <= 16:
            raise InputError("QuantConfig.first_last_bits must be in 2..16 or None")
        if not 1 <= self.multiplier_bits <= 30 or not 0 <= self.rescale_bits <= 20:
            raise InputError("QuantConfig.multiplier_bits must be in 1..30 and rescale_bits in 0..20")
        if self.rounding not in ("nearest", "floor") or self.calibration not in ("mse", "max"):
            raise InputError("QuantConfig: rounding is 'nearest'|'floor', calibration is 'mse'|'max'")

    def to_dict(self) -> dict[str, Any]:
        """Plain dict of the settings (for JSON reports)."""
        return asdict(self)


class MissingCalibration(InputError):
    """A tensor of the model needs a calibrated scale (no QDQ annotation) and no calibration inputs were given."""


# --------------------------------------------------------------------------- numerics


def calibrate_scale(values: np.ndarray, bits: int, signed: bool, method: str = "mse", pow2: bool = False) -> float:
    """Per-tensor scale for quantizing ``values`` to ``bits`` bits (symmetric; unsigned clips at 0).

    ``"max"``: ``max|v| / qmax``.  ``"mse"``: the clipping level among 64 fractions of ``max|v|``
    (0.15..1) minimising the mean squared quantization error (on at most 65,536 evenly spaced values).
    ``pow2`` rounds the scale up to a power of two.  An all-zero tensor gets scale 1."""
    v = np.abs(values) if signed else np.maximum(values, 0.0)
    v = np.asarray(v, dtype=np.float64).reshape(-1)
    if v.size > _MAX_CALIBRATION_VALUES:
        v = v[:: -(-v.size // _MAX_CALIBRATION_VALUES)]
    qmax = (1 << (bits - 1)) - 1 if signed else (1 << bits) - 1
    amax = float(v.max()) if v.size else 0.0
    if amax <= 0.0:
        return 1.0
    if method == "max":
        scale = amax / qmax
    else:
        s = amax * np.linspace(0.15, 1.0, 64) / qmax
        err = np.empty(s.size)
        for i in range(0, s.size, 16):  # chunks keep the (16, n) temporaries small
            sc = s[i:i + 16, None]
            err[i:i + 16] = np.mean((np.minimum(np.rint(v / sc), qmax) * sc - v) ** 2, axis=1)
        scale = float(s[int(np.argmin(err))])
    return float(2.0 ** np.ceil(np.log2(scale))) if pow2 else scale


def quantize_weights(w: np.ndarray, bits: int, per_channel: bool, pow2: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Symmetric narrow-range quantization ``q = clip(round(w / s), -(2^(b-1)-1), 2^(b-1)-1)``.

    Returns ``(q int64 like w, s float64[O])`` with ``s[o] = max|w[o]| / (2^(b-1)-1)`` per output channel
    (axis 0) or one shared value; an all-zero channel gets ``s = 1``."""
    qmax = (1 << (bits - 1)) - 1
    flat = np.abs(w.reshape(w.shape[0], -1))
    amax = flat.max(axis=1) if per_channel else np.full(w.shape[0], flat.max(initial=0.0))
    s = np.where(amax > 0, amax / qmax, 1.0)
    if pow2:
        s = 2.0 ** np.ceil(np.log2(s))
    q = np.clip(np.rint(w / s.reshape((-1,) + (1,) * (w.ndim - 1))), -qmax, qmax).astype(np.int64)
    return q, s


def fixed_point_multipliers(ratios: np.ndarray, bits: int) -> tuple[tuple[int, ...], int]:
    """Approximate each ratio by ``M / 2^shift`` with one shared ``shift`` (0..62) and the largest ``M``
    in ``[2^(bits-1), 2^bits]`` when possible; common factors of two are removed (a power-of-two ratio
    becomes ``M = 1``).  Returns ``(M per ratio, or one M if all equal, shift)``."""
    r = np.asarray(ratios, dtype=np.float64).reshape(-1)
    top = float(r.max())
    if top <= 0:
        return (0,), 0
    shift = int(np.clip(bits - 1 - int(np.floor(np.log2(top))), 0, 62))
    m = np.rint(r * 2.0 ** shift).astype(np.int64)
    while shift > 0 and not np.any(m & 1):
        m >>= 1
        shift -= 1
    vals = tuple(int(x) for x in m)
    return (vals[0],) if len(set(vals)) == 1 else vals, shift


def rescale_multipliers(scales: Sequence[np.ndarray], precision: int) -> tuple[np.ndarray, np.ndarray]:
    """Integer multipliers bringing tensors of per-channel ``scales`` to a common scale.

    Returns ``(m int64[k, C], common float64[C])`` with ``common = min_i s_i / 2^e`` and
    ``m_i = round(s_i / common)``, ``e`` the smallest exponent whose multipliers all have relative
    error at most ``2^-precision`` (so equal scales give ``m = 1``)."""
    s = np.stack([np.asarray(x, dtype=np.float64) for x in scales])
    base = s.min(axis=0)
    r = s / base
    for e in range(precision + 1):
        exact = r * 2.0 ** e
        m = np.rint(exact)
        if np.max(np.abs(m - exact) / exact) <= 2.0 ** -precision:
            break
    return m.astype(np.int64), base / 2.0 ** e


def fakequant_range(attrs: dict[str, Any]) -> tuple[int, int]:
    """The integers ``[lo, hi]`` a QDQ-annotated tensor takes in the integer program: ``v = q - zero_point``
    for ``q`` in the quantized type's range, so that ``real = scale * v`` (the zero point folded away)."""
    lo, hi = range_of_width(int(attrs["bits"]), bool(attrs["signed"]))
    zp = int(attrs.get("zero_point", 0))
    return lo - zp, hi - zp


# --------------------------------------------------------------------------- the pass


def _first_last(g: FloatGraph) -> tuple[set[str], set[str]]:
    """Names of linear nodes with no linear node upstream (first) / downstream (last)."""
    up = {g.input: False}
    for n in g.nodes:
        up[n.output] = n.op in LINEAR_OPS or any(up[i] for i in n.inputs)
    consumers: dict[str, list[FloatNode]] = {}
    for n in g.nodes:
        for i in n.inputs:
            consumers.setdefault(i, []).append(n)
    down: dict[str, bool] = {}
    for n in reversed(g.nodes):
        down[n.output] = any(c.op in LINEAR_OPS or down[c.output] for c in consumers.get(n.output, []))
    linear = [n for n in g.nodes if n.op in LINEAR_OPS]
    return ({n.name for n in linear if not any(up[i] for i in n.inputs)},
            {n.name for n in linear if not down[n.output]})


class _Quantizer:
    def __init__(self, graph: FloatGraph, calibration: np.ndarray | None, cfg: QuantConfig) -> None:
        self.source = graph
        self.fg = fold_layernorm_affine(fold_batchnorm(graph))
        self.cfg = cfg
        self.acts = run_float(self.fg, calibration, collect=True) if calibration is not None else None
        self.first, self.last = _first_last(self.fg)
        self.consumers: dict[str, list[FloatNode]] = {}
        for n in self.fg.nodes:
            for i in n.inputs:
                self.consumers.setdefault(i, []).append(n)
        self.tensors: dict[str, TensorSpec] = {}
        self.nodes: list[Node] = []
        self.env: dict[str, str] = {}  # float edge -> integer edge holding it
        self.is_act: dict[str, bool] = {}  # integer edge -> requantized activation (vs accumulator)
        self.cache: dict[tuple[str, int], str] = {}
        self.fixed: set[str] = set()  # integer edges whose scale and width a QDQ annotation fixed
        self.masks: dict[str, tuple[str, np.ndarray]] = {}  # masked scores -> (unmasked scores, mask): softmax's

    # ---- bookkeeping

    def _fresh(self, name: str) -> str:
        return fresh_name(name, self.tensors)

    def _emit(self, node: Node, scale: Sequence[float], act: bool,
              declared: tuple[int, bool] | None = None) -> str:
        got = node.infer([self.tensors[i] for i in node.inputs])
        assert got.lo is not None and got.hi is not None
        if declared is None:
            spec = TensorSpec.for_range(node.output, got.shape, got.lo, got.hi, tuple(scale))
        else:
            spec = TensorSpec(node.output, got.shape, declared[0], declared[1], got.lo, got.hi, tuple(scale))
        if len(set(spec.scale or ())) == 1 and spec.scale is not None and len(spec.scale) > 1:
            spec = TensorSpec(spec.name, spec.shape, spec.bits, spec.signed, spec.lo, spec.hi, spec.scale[:1])
        self.tensors[node.output] = spec
        self.nodes.append(node)
        self.is_act[node.output] = act
        return node.output

    def _annotation(self, fedge: str) -> FloatNode | None:
        return next((c for c in self.consumers.get(fedge, []) if c.op == "fakequant"), None)

    def _hp(self, n: FloatNode) -> bool:
        return self.cfg.first_last_bits is not None and (n.name in self.first or n.name in self.last)

    def _bits_for(self, fedge: str) -> int:
        """Activation width of a float tensor: wider if it feeds a first/last layer through pass-through ops."""
        bits, stack, seen = self.cfg.act_bits, [fedge], {fedge}
        while stack:
            for c in self.consumers.get(stack.pop(), []):
                if c.op in LINEAR_OPS and self._hp(c):
                    bits = max(bits, self.cfg.first_last_bits or 0)
                elif c.op in _PASSTHROUGH and c.output not in seen:
                    seen.add(c.output)
                    stack.append(c.output)
        return bits

    def _target(self, fedge: str, bits: int, signed: bool) -> tuple[float, int, int]:
        """``(scale, lo, hi)`` for requantizing float tensor ``fedge`` to integers ``[lo, hi]``: its QDQ
        annotation if it has one (zero point folded into the range), else calibrated to ``bits``."""
        ann = self._annotation(fedge)
        if ann is not None:
            return (ann.attrs["scale"], *fakequant_range(ann.attrs))
        if self.acts is None:
            raise MissingCalibration(
                f"tensor {fedge!r} needs a quantization scale: the model has no QuantizeLinear/DequantizeLinear "
                "there and no calibration data was given; pass calibration inputs to quantize()")
        scale = calibrate_scale(self.acts[fedge], bits, signed, self.cfg.calibration, self.cfg.pow2_scales)
        return (scale, *range_of_width(bits, signed))

    def _requant(self, q: str, fedge: str, scale: float, rlo: int, rhi: int,
                 lo: int | None = None, hi: int | None = None, relu_mask: np.ndarray | None = None) -> str:
        """Requantize ``q`` to scale ``scale`` and the integer range ``[rlo, rhi]`` (a width's range, or a
        QDQ range shifted by its zero point), clipped further to ``[lo, hi]`` if given, with a ReLU fused
        where ``relu_mask`` is 1 (per-sample 0/1 mask; not needed when the clip starts at 0 or above)."""
        spec = self.tensors[q]
        bits, signed = width_for_range(rlo, rhi)
        lo = rlo if lo is None else min(max(lo, rlo), rhi)  # a clip beyond the range saturates at its end
        hi = rhi if hi is None else max(min(hi, rhi), rlo)
        mult, shift = fixed_point_multipliers(spec.channel_scales() / scale, self.cfg.multiplier_bits)
        out = self._fresh(f"{fedge}:q{bits}")
        fields = dict(name=f"requant:{out}", inputs=(q,), output=out, multiplier=mult, shift=shift, lo=lo, hi=hi,
                      rounding=self.cfg.rounding)
        node = (Requantize(**fields) if relu_mask is None or lo >= 0 else
                PartialReluRequantize.masked(mask=relu_mask, **fields))
        return self._emit(node, (scale,), act=True, declared=(bits, signed))

    def _as_activation(self, fedge: str, bits: int) -> str:
        """The integer edge holding ``fedge`` as a per-tensor activation of at most ``bits`` bits."""
        q = self.env[fedge]
        spec = self.tensors[q]
        if q == self.q_input or q in self.fixed or (self.is_act[q] and spec.per_tensor and spec.bits <= bits):
            return q
        if (fedge, bits) not in self.cache:
            signed = spec.lo < 0
            scale, rlo, rhi = self._target(fedge, bits, signed)
            self.cache[(fedge, bits)] = self._requant(q, fedge, scale, rlo, rhi)
        return self.cache[(fedge, bits)]

    # ---- layers

    def _linear(self, n: FloatNode) -> None:
        hp = self._hp(n)
        in_bits = (self.cfg.first_last_bits or self.cfg.act_bits) if hp else self.cfg.act_bits
        x = self._as_activation(n.inputs[0], in_bits)
        s_x = self.tensors[x].scale[0]  # type: ignore[index]
        w = n.params["weight"]
        if "weight_q" in n.params:
            wq = n.params["weight_q"]
            s_w = np.broadcast_to(np.asarray(n.attrs["weight_scale"], dtype=np.float64), (w.shape[0],))
            wbits = int(n.attrs["weight_bits"])
        else:
            wbits = (self.cfg.first_last_bits or self.cfg.weight_bits) if hp else self.cfg.weight_bits
            wbits = n.attrs.get("weight_bits", wbits)
            wq, s_w = quantize_weights(w, wbits, per_channel=n.name not in self.last, pow2=self.cfg.pow2_scales)
        acc_scale = s_x * s_w
        bias = np.rint(n.params["bias"] / acc_scale).astype(np.int64)
        out = self._fresh(n.output)
        if n.op == "conv":
            a = n.attrs
            node: Node = Conv(name=n.name, inputs=(x,), output=out, weight_shape=wq.shape, stride=a["stride"],
                              pads=a["pads"], groups=a["groups"], weight_bits=wbits, weight=wq, bias=bias)
        else:
            node = Linear(name=n.name, inputs=(x,), output=out, weight_shape=wq.shape, weight_bits=wbits,
                          weight=wq, bias=bias)
        self.env[n.output] = self._emit(node, tuple(acc_scale), act=False)

    def _batchnorm(self, n: FloatNode) -> None:
        x = self._as_activation(n.inputs[0], self.cfg.act_bits)
        p = n.params
        a = p["scale"] / np.sqrt(p["var"] + n.attrs["eps"])
        beta = p["bias"] - p["mean"] * a
        aq, s_a = quantize_weights(a, self.cfg.affine_bits, per_channel=False, pow2=self.cfg.pow2_scales)
        acc_scale = self.tensors[x].channel_scales() * s_a
        bias = np.rint(beta / acc_scale).astype(np.int64)
        node = ChannelAffine(name=n.name, inputs=(x,), output=self._fresh(n.output), channels=a.size,
                             weight_bits=self.cfg.affine_bits, weight=aq, bias=bias)
        self.env[n.output] = self._emit(node, tuple(acc_scale), act=False)

    def _relu_clip(self, n: FloatNode) -> None:
        q = self.env[n.inputs[0]]
        spec = self.tensors[q]
        flo = 0.0 if n.op == "relu" else n.attrs["lo"]
        fhi = None if n.op == "relu" else n.attrs["hi"]
        if self.is_act[q] and spec.per_tensor:
            s = spec.scale[0]  # type: ignore[index]
            lo = spec.lo if flo is None else max(spec.lo, int(np.rint(flo / s)))
            hi = spec.hi if fhi is None else min(spec.hi, int(np.rint(fhi / s)))
            if lo <= spec.lo and hi >= spec.hi:
                self.env[n.output] = q
                return
            node: Node = (Relu(name=n.name, inputs=(q,), output=self._fresh(n.output)) if n.op == "relu" and lo == 0
                          and hi >= spec.hi else
                          Clip(name=n.name, inputs=(q,), output=self._fresh(n.output), lo=lo, hi=max(lo, hi)))
            self.env[n.output] = self._emit(node, (s,), act=True)
            return
        signed = flo is None and spec.lo < 0 or (flo is not None and flo < 0)
        scale, rlo, rhi = self._target(n.output, self._bits_for(n.output), signed)
        clip_lo = None if flo is None else int(np.rint(flo / scale))
        clip_hi = None if fhi is None else int(np.rint(fhi / scale))
        self.env[n.output] = self._requant(q, n.output, scale, rlo, rhi, clip_lo, clip_hi)

    def _partial_relu(self, n: FloatNode) -> None:
        mask = n.params["mask"] != 0
        q = self.env[n.inputs[0]]
        spec = self.tensors[q]
        if mask.all():
            self._relu_clip(FloatNode("relu", n.name, n.inputs, n.output))
            return
        if not mask.any() or spec.lo >= 0:  # the identity everywhere
            self.env[n.output] = q
            return
        if self.is_act[q] and spec.per_tensor:
            node = PartialRelu.masked(mask=mask, name=n.name, inputs=(q,), output=self._fresh(n.output))
            self.env[n.output] = self._emit(node, spec.scale, act=True)  # type: ignore[arg-type]
            return
        scale, rlo, rhi = self._target(n.output, self._bits_for(n.output), True)
        self.env[n.output] = self._requant(q, n.output, scale, rlo, rhi, relu_mask=mask)

    def _pool(self, n: FloatNode) -> None:
        q = self.env[n.inputs[0]]
        spec = self.tensors[q]
        out = self._fresh(n.output)
        if n.op == "maxpool":
            a = n.attrs
            node: Node = MaxPool(name=n.name, inputs=(q,), output=out, kernel=a["kernel"], stride=a["stride"],
                                 pads=a["pads"])
            self.env[n.output] = self._emit(node, spec.scale, act=self.is_act[q])  # type: ignore[arg-type]
            return
        if n.op == "avgpool":
            kernel, stride, pads = n.attrs["kernel"], n.attrs["stride"], n.attrs["pads"]
        else:
            kernel, stride, pads = spec.shape[1:], (1, 1), (0, 0, 0, 0)
        node = SumPool(name=n.name, inputs=(q,), output=out, kernel=kernel, stride=stride, pads=pads)
        scale = spec.channel_scales() / (kernel[0] * kernel[1])
        self.env[n.output] = self._emit(node, tuple(scale), act=False)

    def _add(self, n: FloatNode) -> None:
        qs = [self.env[i] for i in n.inputs]
        m, common = rescale_multipliers([self.tensors[q].channel_scales() for q in qs], self.cfg.rescale_bits)
        mults = tuple(tuple(int(v) for v in (row[:1] if np.all(row == row[0]) else row)) for row in m)
        node = Add(name=n.name, inputs=tuple(qs), output=self._fresh(n.output), multipliers=mults)
        self.env[n.output] = self._emit(node, tuple(common), act=False)

    def _concat(self, n: FloatNode) -> None:
        qs = [self.env[i] for i in n.inputs]
        specs = [self.tensors[q] for q in qs]
        scale = np.concatenate([s.channel_scales() for s in specs])
        act = all(self.is_act[q] for q in qs) and bool(np.all(scale == scale[0]))
        node = Concat(name=n.name, inputs=tuple(qs), output=self._fresh(n.output))
        self.env[n.output] = self._emit(node, tuple(scale), act=act)

    def _flatten(self, n: FloatNode) -> None:
        q = self.env[n.inputs[0]]
        spec = self.tensors[q]
        per = spec.size // spec.shape[0]
        scale = spec.scale if spec.per_tensor else tuple(np.repeat(spec.channel_scales(), per))
        node = Flatten(name=n.name, inputs=(q,), output=self._fresh(n.output))
        self.env[n.output] = self._emit(node, scale, act=self.is_act[q])  # type: ignore[arg-type]

    def _fakequant(self, n: FloatNode) -> None:
        q = self.env[n.inputs[0]]
        spec = self.tensors[q]
        scale = n.attrs["scale"]
        rlo, rhi = fakequant_range(n.attrs)
        if (self.is_act[q] and spec.per_tensor and np.isclose(spec.scale[0], scale, rtol=1e-9, atol=0)  # type: ignore[index]
                and rlo <= spec.lo and spec.hi <= rhi):
            self.env[n.output] = q
        else:
            self.env[n.output] = self._requant(q, n.output, scale, rlo, rhi)
        self.fixed.add(self.env[n.output])

    # ---- driver

    def _input(self) -> None:
        g = self.fg
        ann = self._annotation(g.input)
        if ann is not None:
            scale = ann.attrs["scale"]
            lo, hi = fakequant_range(ann.attrs)
        elif self.acts is None:
            raise MissingCalibration("quantizing a float model needs calibration inputs (a batch of typical inputs of "
                             f"shape (N, {', '.join(map(str, g.input_shape))}))")
        else:
            signed = bool(self.acts[g.input].min() < 0)
            bits = self.cfg.input_bits
            scale = calibrate_scale(self.acts[g.input], bits, signed, self.cfg.calibration, self.cfg.pow2_scales)
            lo, hi = range_of_width(bits, signed)
        self.tensors[g.input] = TensorSpec(g.input, g.input_shape, *width_for_range(lo, hi), lo, hi, (scale,))
        if ann is not None:
            self.fixed.add(g.input)
        self.env[g.input] = self.q_input = g.input
        self.is_act[g.input] = True

    def run(self) -> QGraph:
        self._input()
        handlers = {"conv": self._linear, "gemm": self._linear, "batchnorm": self._batchnorm,
                    "relu": self._relu_clip, "partial_relu": self._partial_relu, "clip": self._relu_clip,
                    "maxpool": self._pool, "avgpool": self._pool, "global_avgpool": self._pool, "add": self._add,
                    "concat": self._concat, "flatten": self._flatten, "fakequant": self._fakequant,
                    **{op: (lambda n, h=h: h(self, n)) for op, h in TOKEN_HANDLERS.items()}}
        for n in self.fg.nodes:
            handlers[n.op](n)
        out = self.env[self.fg.output]
        return QGraph(self.q_input, out, self.tensors, self.nodes, float_graph=self.source).validate()


def quantize(graph: FloatGraph, calibration: np.ndarray | None = None, config: QuantConfig | None = None) -> QGraph:
    """Quantize a float graph into the integer IR.

    ``calibration``: a batch ``(N, *input_shape)`` of typical float inputs (needed unless every tensor
    that must be requantized carries a QDQ annotation).  Returns a validated :class:`QGraph` whose
    ``float_graph`` is ``graph``.  Raises :class:`MissingCalibration` (an :class:`InputError`) without the
    needed calibration data and
    :class:`UnsupportedModel` when an accumulator would exceed 62 bits."""
    return _Quantizer(graph, calibration, config or QuantConfig()).run()
