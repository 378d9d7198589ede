"""Secure batch-norm (per-channel affine ``y[c] = scale[c] * x[c] + shift[c]``) when it is not folded.

Computed as a depthwise 1x1 convolution (so Cheetah's conv encoding and tiling apply unchanged: for a
``64 x 56 x 56`` input that is 64 uploads and 64 results, as in the reference figures) followed by the
server adding ``shift`` to its share.  ``scale``/``shift`` are the server's integers (fixed point already
applied by the caller).
"""

from __future__ import annotations

import numpy as np

from aiompc.errors import InputError
from aiompc.party import Party
from aiompc.protocols.linear.conv import conv2d
from aiompc.protocols.linear.plan import Planner

__all__ = ["batchnorm"]


async def batchnorm(
    party: Party,
    label: str,
    x_share: np.ndarray,
    *,
    l: int,
    scale: np.ndarray | None = None,
    shift: np.ndarray | None = None,
    weight_bits: int | None = None,
    planner: Planner,
) -> np.ndarray:
    """This party's share of ``scale[c] * x[c, i, j] + shift[c]`` mod ``2^l`` for a ``C x H x W`` share."""
    x = np.asarray(x_share)
    if x.ndim != 3:
        raise InputError(f"{label}: batchnorm takes a C x H x W share, got shape {x.shape}")
    c = x.shape[0]
    weight = None
    if party.is_server:
        if scale is None or np.shape(scale) != (c,):
            raise InputError(f"{label}: the server must pass scale of shape ({c},)")
        weight = np.asarray(scale).reshape(c, 1, 1, 1)
    elif scale is not None or shift is not None:
        raise InputError(f"{label}: the client must not pass scale or shift")
    return await conv2d(party, label, x, out_channels=c, kernel=1, groups=c, l=l, weight=weight, bias=shift,
                        weight_bits=weight_bits, planner=planner)
