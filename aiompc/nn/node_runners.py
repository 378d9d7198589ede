"""The protocol runners of the CNN layers of :mod:`aiompc.nn.ir` (their table: :mod:`aiompc.nn.node_protocols`).

================  ======  ============================================================================
node              kind    protocol
================  ======  ============================================================================
Conv / Linear     he      :func:`aiompc.protocols.linear.conv2d` / :func:`aiompc.protocols.linear.fc`
ChannelAffine     he      :func:`aiompc.protocols.linear.batchnorm`
Requantize        ot      :func:`aiompc.protocols.nonlinear.requantize`, output in the consumer's ring
Relu              ot      :func:`aiompc.protocols.nonlinear.relu`
PartialRelu       ot      :func:`aiompc.protocols.nonlinear.partial_relu` (the kept elements only)
PartialRelu-      ot      :func:`aiompc.protocols.nonlinear.partial_relu_requantize` (two requantizations,
 Requantize               kept / identity elements, side by side)
Clip              ot      requantize with ``M = 1, s = 0``
MaxPool           ot      :func:`aiompc.protocols.nonlinear.maxpool2d`
SumPool           local   window sums on shares
Add               local   public per-channel rescales and a sum on shares
Concat / Flatten  local   reshaping of shares
================  ======  ============================================================================

Each ``run_*`` is a :data:`~aiompc.nn.node_step.Runner`: ``(step, node, xs)`` with this party's shares of the
node's inputs (a batch ``(B, *shape)`` each) to its share of the output.  Beside them, what the transformer runners
(:mod:`aiompc.nn.node_runners_transformer`), the engine and the HE-call planning (:mod:`aiompc.nn.prepare`) share
with them: the IR's pads in the protocols' order (:func:`pads_tblr`), an HE layer's folded requantization
(:func:`fold_shift`, :func:`fold_lift`) and the narrow-ring arguments of a max-pool / argmax (:func:`narrow_kwargs`).
"""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Any

import numpy as np

from aiompc import ring
from aiompc.errors import UnsupportedModel
from aiompc.nn.bounds import range_of_width
from aiompc.nn.ir_base import Node, TensorSpec
from aiompc.nn.ir_cnn import (Add, ChannelAffine, Clip, Concat, Conv, Flatten, Linear, MaxPool, PartialRelu, Relu,
                              ReluMasked, Requantize, SumPool)
from aiompc.nn.node_step import Step
from aiompc.nn.rings import FOLD_LIFT
from aiompc.party import Party
from aiompc.protocols.linear.batchnorm import batchnorm
from aiompc.protocols.linear.conv import conv2d
from aiompc.protocols.linear.fc import fc
from aiompc.protocols.linear.local import flatten, sum_pool2d
from aiompc.protocols.nonlinear import maxpool2d, partial_relu, partial_relu_requantize, relu, requantize

__all__ = ["pads_tblr", "narrow_kwargs", "fold_shift", "fold_lift", "run_conv", "run_linear",
           "run_channel_affine", "run_requantize", "run_relu", "run_partial_relu", "run_clip", "run_maxpool",
           "run_sum_pool", "run_add", "run_concat", "run_flatten"]


def pads_tblr(pads: tuple[int, int, int, int]) -> tuple[int, int, int, int]:
    """IR pads are ONNX's (top, left, bottom, right); the protocols take (top, bottom, left, right)."""
    top, left, bottom, right = pads
    return (top, bottom, left, right)


async def _per_sample(coros: list[Any]) -> np.ndarray:
    """The per-sample results of ``coros`` (run concurrently) stacked as a batch."""
    return np.stack(await asyncio.gather(*coros))


async def _requantize_channels(
    party: Party, label: str, x: np.ndarray, node: Requantize, *, l_in: int, l_out: int, exact: bool,
    msb_known_zero: bool, shift: int | None = None, x_range: tuple[int, int] | None = None, baseline: bool = False,
    folded: bool = False, relu_mask: np.ndarray | None = None,
) -> np.ndarray:
    """Requantize a batch ``(B, C, ...)`` with one multiplier, or one per channel (axis 1) in one protocol
    instance (the multipliers broadcast as ``(1, C, 1, ...)``); ``shift`` overrides ``node.shift`` (the
    rest of a folded requantization).  ``x_range``: the input's public range (its width's; it lets the
    quantized mode requantize on the narrow ring); ``baseline``: Cheetah's own protocol (wrap-based, m = 4
    digits, the dropped carry's ``{-1, 0}`` error).  An unfolded approximate requantization of the quantized
    rings is unbiased (``e ∈ {-1, 0, 1}``); a folded one keeps ``{-1, 0}``, which :class:`Fold`'s bound
    needs.  ``relu_mask`` (per-sample, broadcast): a ReLU fused on the elements where it is 1
    (:func:`~aiompc.protocols.nonlinear.partial_relu_requantize`)."""
    multiplier: int | np.ndarray = node.multiplier[0]
    if len(node.multiplier) > 1:
        multiplier = node.channel_multipliers(x.shape[1]).reshape((1, -1) + (1,) * (x.ndim - 2))
    kwargs: dict[str, Any] = dict(
        l_in=l_in, shift=node.shift if shift is None else shift, rounding=node.rounding, l_out=l_out, exact=exact,
        msb_known_zero=msb_known_zero, x_range=None if baseline else x_range, narrow=not baseline,
        digit_bits=4 if baseline else None, unbiased=not (baseline or folded))
    if relu_mask is not None:
        return await partial_relu_requantize(party, label, x, mask=relu_mask, multiplier=multiplier, lo=node.lo,
                                             hi=node.hi, **kwargs)
    return await requantize(party, label, x, multiplier=multiplier, lo=node.lo, hi=node.hi, **kwargs)


def _baseline(step: Step) -> bool:
    """Cheetah's rings (``cheetah``, ``cheetah-int``): Cheetah's own non-linear protocols."""
    return step.config.mode.rings == "cheetah"


def narrow_kwargs(step: Step, edge: str) -> dict[str, Any]:
    """Keyword arguments of a max-pool / argmax on the narrow ring of ``edge``'s public width (quantized
    rings), or none (Cheetah's own)."""
    if _baseline(step):
        return {}
    spec = step.graph.tensors[edge]
    return {"value_range": range_of_width(spec.bits, spec.signed), "digit_bits": None}


def fold_shift(step: Step, node: Node) -> int:
    """The output shift of an HE layer folded into its requantization (approximate mode,
    :class:`~aiompc.nn.rings.Fold`): the low bits the client does not decrypt; 0 when the layer is not folded."""
    fold = step.rings.folds.get(node.name)
    return 0 if fold is None else fold.shift


def fold_lift(step: Step, node: Node, y: np.ndarray) -> np.ndarray:
    """An HE layer's output share ``y``; folded, the server adds the lift of the error bound in the fold's ring, so
    the shares are of ``floor(acc / 2^s') + e + lift`` mod ``2^(l - s')`` (``e ∈ {-1, 0, 1}``, see
    :class:`~aiompc.nn.rings.Fold`)."""
    fold = step.rings.folds.get(node.name)
    if fold is not None and step.party.is_server:
        return ring.reduce(y + np.uint64(FOLD_LIFT), fold.out_ring)
    return y


async def run_conv(step: Step, node: Conv, xs: list[np.ndarray]) -> np.ndarray:
    """A Conv on shares mod ``2^l``, one concurrent call per sample (labels ``{label}/b{b}``), folded as
    :func:`fold_lift` says."""
    party, x = step.party, xs[0]
    server = party.is_server
    y = await _per_sample([conv2d(
        party, f"{step.label}/b{b}", x[b], out_channels=node.out_channels, kernel=node.kernel,
        l=step.rings.compute_ring(node), stride=node.stride, padding=pads_tblr(node.pads), groups=node.groups,
        weight=node.weight if server else None, bias=node.bias if server else None, weight_bits=node.weight_bits,
        planner=step.config.mode.planner, out_shift=fold_shift(step, node),
    ) for b in range(len(x))])
    return fold_lift(step, node, y)


async def run_linear(step: Step, node: Linear, xs: list[np.ndarray]) -> np.ndarray:
    """A Linear on the whole batch's shares mod ``2^l`` in one call, folded as :func:`fold_lift` says."""
    party, server = step.party, step.party.is_server
    y = await fc(party, step.label, xs[0], out_features=node.out_features, l=step.rings.compute_ring(node),
                 weight=node.weight if server else None, bias=node.bias if server else None,
                 weight_bits=node.weight_bits, planner=step.config.mode.planner, out_shift=fold_shift(step, node))
    return fold_lift(step, node, y)


async def run_channel_affine(step: Step, node: ChannelAffine, xs: list[np.ndarray]) -> np.ndarray:
    party, x, server = step.party, xs[0], step.party.is_server
    return await _per_sample([batchnorm(
        party, f"{step.label}/b{b}", x[b], l=step.rings.compute_ring(node), scale=node.weight if server else None,
        shift=node.bias if server else None, weight_bits=node.weight_bits, planner=step.config.mode.planner,
    ) for b in range(len(x))])


async def run_requantize(step: Step, node: Requantize, xs: list[np.ndarray]) -> np.ndarray:
    src = step.graph.tensors[node.inputs[0]]
    l_in = step.rings.edges[node.inputs[0]]
    folded = step.rings.folded.get(node.name)
    if folded is None:
        msb_known_zero, shift = not src.signed and l_in > src.bits, node.shift
        x_range = range_of_width(src.bits, src.signed)  # public (the proven bounds are the server's)
    else:  # the input is y = floor(acc / 2^shift) + e + lift (out_ring holds y_lo..y_hi): shift the rest
        msb_known_zero, shift, x_range = folded.y_lo >= 0, folded.rest, (folded.y_lo, folded.y_hi)
    l_out = step.rings.compute_ring(node)
    x, offset = xs[0], _msb_offset(step, node, src, l_in, shift)
    if offset:  # x + 2^(b-1) >= 0 has its MSB known; the offset comes off the output exactly
        lift, drop = offset
        x = ring.reduce(x + np.uint64(lift), l_in) if step.party.is_server else x
        node = dataclasses.replace(node, lo=node.lo + drop, hi=node.hi + drop)
        msb_known_zero = True
    y = await _requantize_channels(
        step.party, step.label, x, node, l_in=l_in, l_out=l_out,
        exact=step.config.exact, msb_known_zero=msb_known_zero, shift=shift, x_range=x_range,
        baseline=_baseline(step), folded=folded is not None,
        relu_mask=node.full_mask(x.shape[1:]) if isinstance(node, ReluMasked) else None,
    )
    if offset and step.party.is_server:
        y = ring.reduce(y - np.uint64(offset[1] % (1 << l_out)), l_out)
    return y


def _msb_offset(step: Step, node: Requantize, src: TensorSpec, l_in: int, shift: int) -> tuple[int, int] | None:
    """``(2^(b-1), 2^(b-1)·M / 2^shift)`` when the fixed-point program truncates a signed ``b``-bit edge held in a
    wider ring with one multiplier that makes the second an integer (a partial ReLU's output,
    :mod:`aiompc.nn.fixed_point`): adding the first makes the input's MSB known, the output is then the
    second too high.  ``None`` otherwise (the usual wrap)."""
    if (step.config.mode.program != "fixed-point" or not src.signed or src.bits >= l_in
            or len(set(node.multiplier)) != 1 or isinstance(node, ReluMasked)):
        return None
    lift = 1 << (src.bits - 1)
    if (lift * node.multiplier[0]) % (1 << shift):
        return None
    return lift, (lift * node.multiplier[0]) >> shift


async def run_relu(step: Step, node: Relu, xs: list[np.ndarray]) -> np.ndarray:
    return await relu(step.party, step.label, xs[0], l=step.rings.compute_ring(node))


async def run_partial_relu(step: Step, node: PartialRelu, xs: list[np.ndarray]) -> np.ndarray:
    return await partial_relu(step.party, step.label, xs[0], mask=node.full_mask(xs[0].shape[1:]),
                              l=step.rings.compute_ring(node))


async def run_clip(step: Step, node: Clip, xs: list[np.ndarray]) -> np.ndarray:
    l = step.rings.compute_ring(node)
    clip = Requantize(name=node.name, inputs=node.inputs, output=node.output, multiplier=(1,), shift=0,
                      lo=node.lo, hi=node.hi)
    spec = step.graph.tensors[node.inputs[0]]
    fits = spec.bits + (0 if spec.signed else 1) <= l  # the input's width inside the ring it is reduced to
    return await _requantize_channels(step.party, step.label, xs[0], clip, l_in=l, l_out=l, exact=True,
                                      msb_known_zero=False, baseline=_baseline(step),
                                      x_range=range_of_width(spec.bits, spec.signed) if fits else None)


async def run_maxpool(step: Step, node: MaxPool, xs: list[np.ndarray]) -> np.ndarray:
    t, left, b, r = node.pads
    if (t, left) != (b, r):
        raise UnsupportedModel(f"max-pool {node.name!r}: asymmetric padding {node.pads} is not supported; "
                               "pad symmetrically or pad the input before the pooling")
    return await maxpool2d(step.party, step.label, xs[0], l=step.rings.compute_ring(node), kernel=node.kernel,
                           stride=node.stride, padding=(t, left), **narrow_kwargs(step, node.inputs[0]))


async def run_sum_pool(step: Step, node: SumPool, xs: list[np.ndarray]) -> np.ndarray:
    return sum_pool2d(xs[0], node.kernel, step.rings.compute_ring(node), stride=node.stride,
                      padding=pads_tblr(node.pads))


async def run_add(step: Step, node: Add, xs: list[np.ndarray]) -> np.ndarray:
    l = step.rings.compute_ring(node)
    ms = node.channel_multipliers(xs[0].shape[1])
    out = np.zeros(xs[0].shape, dtype=np.uint64)
    for m, xi in zip(ms, xs):
        scale = ring.reduce(m, l).reshape((1, -1) + (1,) * (xi.ndim - 2))
        out = ring.reduce(out + xi * scale, l)
    return out


async def run_concat(step: Step, node: Concat, xs: list[np.ndarray]) -> np.ndarray:
    return np.concatenate(xs, axis=1)


async def run_flatten(step: Step, node: Flatten, xs: list[np.ndarray]) -> np.ndarray:
    return flatten(xs[0], 1)
