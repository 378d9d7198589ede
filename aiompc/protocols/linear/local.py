"""Linear operations that each party applies to its own share, without communication.

Every function here is a ring homomorphism of Z_{2^l} (or adds a public constant on one side only), so
applying it to both additive shares gives shares of the result: ``f(x_S) + f(x_C) = f(x) mod 2^l``.
Inputs are ``uint64`` arrays mod ``2^l`` (``C x H x W`` for images, any leading batch axes allowed where
stated); outputs are ``uint64`` mod ``2^l``.  Cost: no bytes, no rounds.

Division is not a ring homomorphism: average pooling returns ``multiplier * (window sum)``; the division by
the window size is the caller's following truncation (choose ``multiplier ~= 2^f / window`` and truncate by
``f`` bits, or fold ``1 / window`` into the next requantization scale).
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from aiompc.errors import InputError
from aiompc.ring import check_width, reduce
from aiompc.protocols.linear.tiling import pair, quad

__all__ = [
    "add_shares",
    "sub_shares",
    "add_public",
    "mul_public",
    "sum_pool2d",
    "avg_pool2d",
    "global_avg_pool",
    "flatten",
    "reshape",
]


def _ring(x: np.ndarray, l: int, name: str = "share") -> np.ndarray:
    x = np.asarray(x)
    if x.dtype.kind not in "uib":
        raise InputError(f"{name} must hold ring elements (integers), got dtype {x.dtype}")
    return reduce(x, check_width(l))


def add_shares(a: np.ndarray, b: np.ndarray, l: int) -> np.ndarray:
    """Residual add: ``a + b mod 2^l`` (shapes must match)."""
    a, b = _ring(a, l), _ring(b, l)
    if a.shape != b.shape:
        raise InputError(f"residual add needs equal shapes, got {a.shape} and {b.shape}")
    return reduce(a + b, l)


def sub_shares(a: np.ndarray, b: np.ndarray, l: int) -> np.ndarray:
    """``a - b mod 2^l`` (shapes must match)."""
    a, b = _ring(a, l), _ring(b, l)
    if a.shape != b.shape:
        raise InputError(f"subtraction needs equal shapes, got {a.shape} and {b.shape}")
    return reduce(a - b, l)


def add_public(role: str, x: np.ndarray, constant: np.ndarray | int, l: int, *, axis: int | None = None) -> np.ndarray:
    """Add a public constant (e.g. a bias known to the server) to the shared value: only the server adds.

    ``constant`` broadcasts against ``x``; with ``axis`` it is a vector laid along that axis of ``x``
    (``axis=0`` adds a per-channel bias to ``C x H x W``).
    """
    x = _ring(x, l)
    if role not in ("server", "client"):
        raise InputError(f"role must be 'server' or 'client', got {role!r}")
    if role == "client":
        return x
    c = _constant(x, constant, l, axis)
    return reduce(x + c, l)


def _constant(x: np.ndarray, constant: np.ndarray | int, l: int, axis: int | None) -> np.ndarray:
    """``constant`` mod ``2^l``, shaped to broadcast against ``x``: as given, or (with ``axis``) a vector of
    ``x.shape[axis]`` values laid along that axis."""
    c = _ring(np.asarray(constant), l, "constant")
    if axis is not None:
        ax = axis % x.ndim
        if c.shape != (x.shape[ax],):
            raise InputError(f"a constant along axis {axis} must have shape ({x.shape[ax]},), got {c.shape}")
        c = c.reshape((-1,) + (1,) * (x.ndim - ax - 1))
    return c


def mul_public(x: np.ndarray, constant: np.ndarray | int, l: int, *, axis: int | None = None) -> np.ndarray:
    """Multiply the shared value by a public integer constant (both parties multiply their shares)."""
    x = _ring(x, l)
    c = _constant(x, constant, l, axis)
    return reduce(x * c, l)


def sum_pool2d(
    x: np.ndarray,
    kernel: int | tuple[int, int],
    l: int,
    *,
    stride: int | tuple[int, int] | None = None,
    padding: int | Sequence[int] = 0,
) -> np.ndarray:
    """Window sums over the last two axes (zero padding counted, as ``count_include_pad``).

    ``x`` is ``(..., H, W)``; the output is ``(..., Ho, Wo)`` with ``Ho = (H + pads - kh) // sh + 1``.
    ``stride`` defaults to the kernel size.  Vectorised over windows (a loop over the ``kh * kw`` offsets).
    """
    x = _ring(x, l)
    if x.ndim < 2:
        raise InputError(f"pooling needs at least 2 axes (H, W), got shape {x.shape}")
    kh, kw = pair(kernel, "kernel")
    sh, sw = pair(stride, "stride") if stride is not None else (kh, kw)
    if min(kh, kw, sh, sw) < 1:
        raise InputError("pooling kernel and stride must be positive")
    t, b, lft, r = quad(padding if isinstance(padding, int) else tuple(padding))
    xp = np.pad(x, [(0, 0)] * (x.ndim - 2) + [(t, b), (lft, r)])
    hp, wp = xp.shape[-2:]
    if hp < kh or wp < kw:
        raise InputError(f"pooling window {kh}x{kw} larger than the padded input {hp}x{wp}")
    ho, wo = (hp - kh) // sh + 1, (wp - kw) // sw + 1
    out = np.zeros(x.shape[:-2] + (ho, wo), dtype=np.uint64)
    for a in range(kh):
        for c in range(kw):
            out += xp[..., a : a + (ho - 1) * sh + 1 : sh, c : c + (wo - 1) * sw + 1 : sw]
    return reduce(out, l)


def avg_pool2d(
    x: np.ndarray, kernel: int | tuple[int, int], l: int, *, multiplier: int = 1, **window: Any
) -> np.ndarray:
    """``multiplier * sum_pool2d(x)``: average pooling up to the division, which the caller's truncation does
    (``window``: :func:`sum_pool2d`'s ``stride`` and ``padding``)."""
    return mul_public(sum_pool2d(x, kernel, l, **window), multiplier, l)


def global_avg_pool(x: np.ndarray, l: int, *, multiplier: int = 1) -> np.ndarray:
    """``multiplier * sum over (H, W)`` of ``(..., H, W)``: shape ``(...)`` (a ``C``-vector for one image)."""
    x = _ring(x, l)
    if x.ndim < 2:
        raise InputError(f"global pooling needs at least 2 axes (H, W), got shape {x.shape}")
    return mul_public(x.sum(axis=(-2, -1), dtype=np.uint64), multiplier, l)


def flatten(x: np.ndarray, start_axis: int = 0) -> np.ndarray:
    """Flatten the axes from ``start_axis`` on (C-order, as ONNX ``Flatten`` / ``torch.flatten``)."""
    x = np.asarray(x)
    return x.reshape(x.shape[:start_axis] + (-1,))


def reshape(x: np.ndarray, shape: Sequence[int]) -> np.ndarray:
    """C-order reshape of a share (both parties reshape alike); raises :class:`InputError` on a size mismatch."""
    x = np.asarray(x)
    try:
        return x.reshape(tuple(shape))
    except ValueError:
        raise InputError(f"cannot reshape a share of shape {x.shape} to {tuple(shape)}") from None
