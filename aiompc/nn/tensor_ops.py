"""Vectorised NCHW tensor kernels shared by the float and the integer interpreters.

Every kernel takes a batch ``x`` of shape ``(N, C, H, W)`` (or ``(N, F)`` for :func:`linear`) and
works for ``float64`` and ``int64`` alike.  Convolution is im2col through
:func:`numpy.lib.stride_tricks.sliding_window_view` followed by one batched matrix product per group.

Integer products are exact: when every partial sum is provably below ``2^53`` in magnitude the
product is computed with float64 BLAS (exact on integers of that size) and converted back, otherwise
with numpy's int64 matmul.  Pads are ``(top, left, bottom, right)`` as in the IR.
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

__all__ = ["out_size", "pad2d", "conv2d", "linear", "max_pool2d", "sum_pool2d", "exact_matmul"]

_FLOAT_EXACT = float(1 << 53)


def out_size(size: int, kernel: int, stride: int, pad_before: int, pad_after: int) -> int:
    """Output length of a window sweep: ``floor((size + pads - kernel) / stride) + 1``."""
    return (size + pad_before + pad_after - kernel) // stride + 1


def pad2d(x: np.ndarray, pads: tuple[int, int, int, int], value: float | int = 0) -> np.ndarray:
    """Pad the two spatial axes of ``(N, C, H, W)`` by ``(top, left, bottom, right)`` with ``value``."""
    top, left, bottom, right = pads
    if not any(pads):
        return x
    return np.pad(x, ((0, 0), (0, 0), (top, bottom), (left, right)), constant_values=value)


def _windows(x: np.ndarray, kernel: tuple[int, int], stride: tuple[int, int]) -> np.ndarray:
    """Strided view ``(N, C, Ho, Wo, kh, kw)`` of the (already padded) input's windows."""
    v = sliding_window_view(x, kernel, axis=(2, 3))
    return v[:, :, :: stride[0], :: stride[1]]


def exact_matmul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``a @ b`` (broadcasting matmul); exact for int64 operands, float64 BLAS whenever that is exact."""
    if a.dtype.kind != "i":
        return a @ b
    if a.size == 0 or b.size == 0:
        return a @ b
    bound = float(np.abs(a).max()) * float(np.abs(b).sum(axis=-2).max())
    if bound < _FLOAT_EXACT:
        return np.rint(a.astype(np.float64) @ b.astype(np.float64)).astype(np.int64)
    return a @ b


def conv2d(
    x: np.ndarray,
    weight: np.ndarray,
    bias: np.ndarray | None,
    stride: tuple[int, int],
    pads: tuple[int, int, int, int],
    groups: int,
) -> np.ndarray:
    """Grouped 2-D cross-correlation (dilation 1), ONNX ``Conv`` semantics.

    ``x``: ``(N, C, H, W)``; ``weight``: ``(O, C/groups, kh, kw)``; ``bias``: ``(O,)`` or None.
    Returns ``(N, O, Ho, Wo)`` in ``x``'s dtype.  Padding is with zeros.
    """
    n, c = x.shape[:2]
    o, cg, kh, kw = weight.shape
    og = o // groups
    cols = _windows(pad2d(x, pads, 0), (kh, kw), stride)  # N, C, Ho, Wo, kh, kw
    ho, wo = cols.shape[2:4]
    cols = cols.reshape(n, groups, cg, ho, wo, kh, kw).transpose(0, 1, 3, 4, 2, 5, 6)
    cols = cols.reshape(n, groups, ho * wo, cg * kh * kw)
    w = weight.astype(x.dtype, copy=False).reshape(groups, og, cg * kh * kw).transpose(0, 2, 1)
    y = exact_matmul(cols, w)  # N, g, Ho*Wo, og
    y = y.transpose(0, 1, 3, 2).reshape(n, o, ho, wo)
    if bias is not None:
        y = y + bias.astype(x.dtype, copy=False).reshape(1, o, 1, 1)
    return y


def linear(x: np.ndarray, weight: np.ndarray, bias: np.ndarray | None) -> np.ndarray:
    """``x @ weight.T + bias``: ``x`` ``(N, I)``, ``weight`` ``(O, I)``, returns ``(N, O)``."""
    y = exact_matmul(x, weight.astype(x.dtype, copy=False).T)
    if bias is not None:
        y = y + bias.astype(x.dtype, copy=False)
    return y


def max_pool2d(
    x: np.ndarray,
    kernel: tuple[int, int],
    stride: tuple[int, int],
    pads: tuple[int, int, int, int],
    pad_value: float | int,
) -> np.ndarray:
    """Window maximum; padding with ``pad_value`` (a lower bound of the data: -inf or the range minimum)."""
    return _windows(pad2d(x, pads, pad_value), kernel, stride).max(axis=(4, 5))


def sum_pool2d(
    x: np.ndarray,
    kernel: tuple[int, int],
    stride: tuple[int, int],
    pads: tuple[int, int, int, int],
) -> np.ndarray:
    """Window sum with zero padding (the numerator of an average pool)."""
    return _windows(pad2d(x, pads, 0), kernel, stride).sum(axis=(4, 5))
