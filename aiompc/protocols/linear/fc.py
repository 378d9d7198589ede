"""Secure fully-connected layer on additive shares: ``y = W x (+ b)`` for a vector or a batch of vectors.

Cheetah's matrix-vector encoding (``d0 = 1``) or, for a batch, the matrix-matrix encoding with blocks
``d0 x d1 x d2`` (``d0 d1 d2 <= N``) chosen to minimise ciphertexts.  Both parties call :func:`fc` with the
same label and ``out_features``; only the server passes ``weight``/``bias``.
"""

from __future__ import annotations

import numpy as np

from aiompc.errors import InputError
from aiompc.party import Party
from aiompc.protocols.linear.engine import check_weight_and_bias, run_linear
from aiompc.protocols.linear.plan import LinearPlan, Planner, plan_for
from aiompc.protocols.linear.tiling import MatmulShape

__all__ = ["fc", "fc_plan"]


def fc_plan(shape: MatmulShape, l: int, *, weight_bits: int | None = None,
            planner: Planner, out_shift: int = 0) -> LinearPlan:
    """The plan both parties derive for ``Y = X W^T`` (``weight_bits`` defaults to ``l``)."""
    return plan_for(planner, shape, l, weight_bits if weight_bits is not None else l, out_shift)


async def fc(
    party: Party,
    label: str,
    x_share: np.ndarray,
    *,
    out_features: int,
    l: int,
    weight: np.ndarray | None = None,
    bias: np.ndarray | None = None,
    weight_bits: int | None = None,
    planner: Planner | None = None,
    plan: LinearPlan | None = None,
    out_shift: int = 0,
    cache_weights: bool = True,
) -> np.ndarray:
    """This party's share of ``x W^T + b`` mod ``2^l``.

    ``x_share``: ``(in,)`` or ``(batch, in)`` mod ``2^l``; ``weight``: server only, ``(out_features, in)``;
    ``bias``: server only, ``(out_features,)``.  Returns ``(out,)`` or ``(batch, out)`` ``uint64``.
    ``out_shift = s > 0`` (approximate): shares of ``floor((x W^T + b) / 2^s) + e``, ``e ∈ {-1, 0, 1}``, mod
    ``2^(l - s)`` (see :func:`aiompc.protocols.linear.conv.conv2d`).  ``cache_weights = False``: the server's
    weight plaintexts are prepared for this call only (:func:`~aiompc.protocols.linear.engine.run_linear`).
    """
    x = np.asarray(x_share)
    if x.ndim not in (1, 2):
        raise InputError(f"{label}: fc takes a vector or a batch of vectors, got shape {x.shape}")
    xb = x.reshape(1, -1) if x.ndim == 1 else x
    shape = MatmulShape(xb.shape[0], xb.shape[1], out_features)
    if plan is None:
        if planner is None:
            raise InputError(f"{label}: pass a planner (aiompc.protocols.linear.PLANNERS) or a plan")
        # the planner's search (cached per shape) runs in the executor, never on the event loop
        plan = await party.compute(fc_plan, shape, l, weight_bits=weight_bits, planner=planner, out_shift=out_shift)
    elif plan.out_shift != out_shift:
        raise InputError(f"{label}: the plan truncates by {plan.out_shift} bits, not {out_shift}")
    if plan.l != l or tuple(plan.layout.in_shape) != xb.shape or tuple(plan.layout.out_shape) != (xb.shape[0], out_features):
        raise InputError(f"{label}: the plan does not match a {xb.shape} input, {out_features} outputs and l = {l}")
    check_weight_and_bias(party, label, weight, (out_features, xb.shape[1]), bias, out_features)
    offset = None if bias is None else np.asarray(bias).reshape(1, -1)
    y = await run_linear(party, label, plan, xb, weight, offset=offset, cache_weights=cache_weights)
    return y.reshape(out_features) if x.ndim == 1 else y
