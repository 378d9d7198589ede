"""Secure 2-D convolution on additive shares (Cheetah's coefficient encoding; any planner).

``y = conv2d(x, w) (+ bias)`` with ``x`` shared between the parties mod ``2^l`` and ``w``, ``bias`` held by the
server.  Both parties call :func:`conv2d` with the same label and public layer description (channels,
kernel, stride, padding, groups, ``l``, ``weight_bits``, planner); only the server passes ``weight``/``bias``.
Cost (channel statistics under ``label``): see :mod:`aiompc.protocols.linear.engine`; with the ``cheetah`` planner,
``input_ciphertexts = spatial tiles * ceil(C / C_w)`` uploads and ``spatial tiles * M`` results.
"""

from __future__ import annotations

import numpy as np

from aiompc.errors import InputError
from aiompc.party import Party
from aiompc.protocols.linear.engine import check_weight_and_bias, run_linear
from aiompc.protocols.linear.kronecker import unpack_offset
from aiompc.protocols.linear.plan import LinearPlan, Planner, plan_for
from aiompc.protocols.linear.tiling import ConvShape

__all__ = ["conv2d", "conv_plan"]


def conv_plan(shape: ConvShape, l: int, *, weight_bits: int | None = None,
              planner: Planner, out_shift: int = 0, pack: int = 1) -> LinearPlan:
    """The plan both parties derive for a convolution (``weight_bits`` defaults to ``l``: any weight).

    ``pack = k > 1``: Kronecker packing of ``k`` input channels per coefficient in slots of ``l / k`` bits
    (:mod:`aiompc.protocols.linear.kronecker`; needs a planner that supports it, e.g. ``"quantized"``)."""
    return plan_for(planner, shape, l, weight_bits if weight_bits is not None else l, out_shift, pack)


async def conv2d(
    party: Party,
    label: str,
    x_share: np.ndarray,
    *,
    out_channels: int,
    kernel: int | tuple[int, int],
    l: int,
    stride: int | tuple[int, int] = 1,
    padding: int | tuple[int, ...] = 0,
    groups: int = 1,
    weight: np.ndarray | None = None,
    bias: np.ndarray | None = None,
    weight_bits: int | None = None,
    planner: Planner | None = None,
    plan: LinearPlan | None = None,
    out_shift: int = 0,
    pack: int = 1,
) -> np.ndarray:
    """This party's share of ``conv2d(x, weight) + bias`` mod ``2^l``.

    ``x_share``: ``C x H x W`` ring elements mod ``2^l``.  ``weight``: server only, ``(M, C // groups, kh, kw)``
    integers (signed or mod ``2^l``), each of magnitude at most ``2^(weight_bits - 1)`` (a public bound,
    default ``l`` = unrestricted).  ``bias``: server only, length ``M`` (added to the server's share).
    Returns ``M x Ho x Wo`` ``uint64`` mod ``2^l``.  ``plan`` overrides the planner (must match the shape).

    ``out_shift = s > 0`` (approximate): returns shares of ``floor((conv + bias) / 2^s) + e``, ``e ∈ {-1, 0,
    1}``, mod ``2^(l - s)`` — the truncation of a following requantization, done by decrypting fewer bits,
    which makes the layer's ciphertexts smaller (see :mod:`aiompc.protocols.linear.engine`).

    ``pack = k > 1`` (approximate, with ``out_shift >= (k - 1)·l/k``): ``k`` input channels share each
    coefficient in slots of ``B = l / k`` bits (:mod:`aiompc.protocols.linear.kronecker`): the result is
    ``floor((conv + bias) / 2^(out_shift - (k-1)B)) + e``, ``e ∈ {-1, 0, 1}``, mod ``2^(l - out_shift)``.
    ``B`` must be at least the signed width of the accumulator, and input channel ``k c + i`` needs only be a
    valid share mod ``2^((k - i)B)`` (it is taken mod ``2^l``).
    """
    x = np.asarray(x_share)
    if x.ndim != 3:
        raise InputError(f"{label}: conv2d takes a C x H x W share, got shape {x.shape}")
    shape = ConvShape.make(x.shape[0], x.shape[1], x.shape[2], out_channels, kernel, stride=stride,
                           padding=padding, groups=groups)
    if plan is None:
        if planner is None:
            raise InputError(f"{label}: pass a planner (aiompc.protocols.linear.PLANNERS) or a plan")
        # the planner's search (cached per shape) runs in the executor, never on the event loop
        plan = await party.compute(conv_plan, shape, l, weight_bits=weight_bits, planner=planner, out_shift=out_shift, pack=pack)
    elif plan.layout.pack != pack:
        raise InputError(f"{label}: the plan packs {plan.layout.pack} channels, not {pack}")
    elif plan.out_shift != out_shift:
        raise InputError(f"{label}: the plan truncates by {plan.out_shift} bits, not {out_shift}")
    elif getattr(plan.layout, "conv_shape", None) != shape:  # a window layout or a convolution as a product
        raise InputError(f"{label}: the plan is not for a {shape} convolution")
    if plan.l != l:
        raise InputError(f"{label}: the plan is for l = {plan.l}, not {l}")
    check_weight_and_bias(party, label, weight, shape.weight_shape, bias, out_channels)
    offset = None if bias is None else np.asarray(bias, dtype=np.int64).reshape(-1, 1, 1)
    if pack > 1 and party.is_server:  # the bias goes to the diagonal slot; centre the cross terms below it
        high = (pack - 1) * (l // pack)
        offset = (0 if offset is None else offset << high) + unpack_offset(pack, l // pack)
    return await run_linear(party, label, plan, x, weight, offset=offset)
