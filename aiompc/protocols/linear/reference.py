"""Plaintext integer semantics of the linear layers over Z_{2^l}: what the secure protocols must equal.

Straightforward numpy (a loop over the ``kh * kw`` kernel offsets only), independent of the HE encodings,
so it can serve as their test oracle.  All inputs are ring elements (``uint64`` or signed ints, taken mod
``2^l``); outputs are ``uint64`` mod ``2^l``.  ``uint64`` arithmetic wraps mod ``2^64``, hence is exact mod ``2^l``.
"""

from __future__ import annotations

import numpy as np

from aiompc.ring import reduce
from aiompc.protocols.linear.tiling import ConvShape

__all__ = ["conv2d_ref", "matmul_ref", "batchnorm_ref"]


def conv2d_ref(x: np.ndarray, weight: np.ndarray, shape: ConvShape, l: int) -> np.ndarray:
    """Cross-correlation ``y[m, i, j] = sum_{c in group(m), a, b} w[m, c, a, b] x_pad[c, i s_h + a, j s_w + b]``."""
    x = reduce(np.asarray(x), 64).reshape(shape.in_shape)
    w = reduce(np.asarray(weight), 64).reshape(shape.weight_shape)
    t, b, lft, r = shape.padding
    xp = np.pad(x, ((0, 0), (t, b), (lft, r)))
    g = shape.groups
    cg, mg = shape.in_channels // g, shape.out_channels // g
    ho, wo = shape.out_height, shape.out_width
    sh, sw = shape.stride
    xg = xp.reshape(g, cg, *xp.shape[1:])
    wg = w.reshape(g, mg, cg, *shape.kernel)
    out = np.zeros((g, mg, ho, wo), dtype=np.uint64)
    for a in range(shape.kernel[0]):
        for bb in range(shape.kernel[1]):
            patch = xg[:, :, a : a + (ho - 1) * sh + 1 : sh, bb : bb + (wo - 1) * sw + 1 : sw]  # (g, cg, ho, wo)
            out += np.einsum("gmc,gcij->gmij", wg[:, :, :, a, bb], patch)
    return reduce(out.reshape(shape.out_shape), l)


def matmul_ref(x: np.ndarray, weight: np.ndarray, l: int) -> np.ndarray:
    """``x . weight^T mod 2^l`` for ``x`` of shape ``(batch, in)`` (or ``(in,)``) and ``weight`` ``(out, in)``."""
    x = reduce(np.asarray(x), 64)
    w = reduce(np.asarray(weight), 64)
    return reduce(x @ w.T, l)


def batchnorm_ref(x: np.ndarray, scale: np.ndarray, l: int) -> np.ndarray:
    """Per-channel product ``y[c] = scale[c] * x[c] mod 2^l`` for ``x`` of shape ``(C, ...)``."""
    x = reduce(np.asarray(x), 64)
    s = reduce(np.asarray(scale), 64).reshape((-1,) + (1,) * (x.ndim - 1))
    return reduce(x * s, l)
