"""Convolution as a matrix product (im2col): strided outputs, so output packing is cheap.

A convolution with ``groups = 1`` is the matrix product ``Y^T = X_col · W_col^T`` with::

    X_col[y·W_o + z, (c·k_h + a)·k_w + b] = x_pad[c, y·s_h + a, z·s_w + b]     (H_o·W_o x C·k_h·k_w)
    W_col[m, (c·k_h + a)·k_w + b]         = w[m, c, a, b]                     (M x C·k_h·k_w)
    y[m, y, z]                            = Y^T[y·W_o + z, m]

``X_col`` is a linear (gather with zero fill) function of ``x``, so each party builds it from its own share
locally — shares of the zero padding are zeros, no communication.  The layer is then the matrix-product
layout (:class:`~aiompc.protocols.linear.layouts.MatmulLayout`: blocks ``d0`` output pixels x ``d1`` inner
values x ``d2`` output channels, ``d0·d1·d2 <= N``; REFERENCE.md's Iron/BumbleBee encoding) whose output
coefficients ``r·d1·d2 + c·d1`` sit on the ``d1`` lattice: with ``d1 = 2^m`` output packing gathers ``2^m``
result ciphertexts per ciphertext with ``2^m − 1`` key switches
(:func:`aiompc.protocols.linear.packed.packing_stride`), where Cheetah's window layout needs one key switch
per output value and the channel-interleaved one (:mod:`~.interleaved`) one output channel per ciphertext.

What it costs: the upload is ``X_col``, ``k_h·k_w / (s_h·s_w)`` times the input for a ``k x k`` kernel (no
inflation for a ``1x1`` convolution, a quarter of the input for a ``1x1`` stride-2 one — exactly the values
it reads), no halo and no padding coefficients.  So it pays for ``1x1`` convolutions (ResNet-50's
bottlenecks, SqueezeNet's squeeze/expand layers, the downsampling shortcuts) and for layers whose image is
so small that a ``k x k`` window layout wastes most of a polynomial; the quantized planner weighs it
against the window layouts per layer (:mod:`aiompc.protocols.linear.quantized`).  The byte model, the noise
bound (``d1·d2`` weight non-zeros per polynomial) and the flooding are those of the matrix-product layout.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from aiompc.errors import ParameterError
from aiompc.protocols.linear import encoding as enc
from aiompc.protocols.linear.layouts import MatmulLayout, SourcedLayout
from aiompc.protocols.linear.tiling import ConvShape, MatmulShape

__all__ = ["im2col_shape", "im2col_input", "im2col_weight", "Im2colLayout"]


def im2col_shape(shape: ConvShape) -> MatmulShape | None:
    """The matrix product computing ``shape``: ``(H_o·W_o, C·k_h·k_w, M)``; ``None`` for a grouped convolution."""
    if shape.groups != 1:
        return None
    kh, kw = shape.kernel
    return MatmulShape(shape.out_height * shape.out_width, shape.in_channels * kh * kw, shape.out_channels)


def im2col_input(x: np.ndarray, shape: ConvShape) -> np.ndarray:
    """``C x H x W`` (shares or plain values, any integer dtype) → ``X_col`` (``H_o·W_o x C·k_h·k_w``, same dtype;
    zero where a window reads the padding)."""
    x = np.asarray(x)
    top, bottom, left, right = shape.padding
    xp = np.pad(x, ((0, 0), (top, bottom), (left, right)))
    (kh, kw), (sh, sw) = shape.kernel, shape.stride
    rows = np.arange(shape.out_height)[:, None] * sh + np.arange(kh)[None, :]  # (H_o, k_h)
    cols = np.arange(shape.out_width)[:, None] * sw + np.arange(kw)[None, :]  # (W_o, k_w)
    g = xp[:, rows[:, None, :, None], cols[None, :, None, :]]  # (C, H_o, W_o, k_h, k_w)
    return np.ascontiguousarray(g.transpose(1, 2, 0, 3, 4).reshape(shape.out_height * shape.out_width, -1))


def im2col_weight(w: np.ndarray, shape: ConvShape) -> np.ndarray:
    """``(M, C, k_h, k_w)`` weights → ``W_col`` (``M x C·k_h·k_w``)."""
    return np.asarray(w).reshape(shape.out_channels, -1)


@dataclass(frozen=True)
class Im2colLayout(SourcedLayout, MatmulLayout):
    """A :class:`MatmulLayout` of :func:`im2col_shape` computing the convolution ``source`` (see the module
    docstring): takes ``C x H x W`` shares, returns ``M x H_o x W_o``."""

    source: ConvShape | None = None

    def __post_init__(self) -> None:
        if self.source is None or self.vector or self.tiling.shape != im2col_shape(self.source):
            raise ParameterError("an im2col layout needs a tiling of im2col_shape(source), a convolution with groups = 1")

    @property
    def out_shape(self) -> tuple[int, ...]:
        assert self.source is not None
        return self.source.out_shape

    def input_polys(self, x: np.ndarray, l: int) -> np.ndarray:
        assert self.source is not None
        return super().input_polys(im2col_input(x, self.source), l)

    def weight_values(self, weight: np.ndarray, l: int) -> tuple[np.ndarray, np.ndarray]:
        assert self.source is not None
        return super().weight_values(im2col_weight(weight, self.source), l)

    def assemble(self, values: dict[tuple[int, int], np.ndarray]) -> np.ndarray:
        """``values[(row block, column block)]`` → ``M x H_o x W_o`` (the transpose of the product)."""
        assert self.source is not None
        y = enc.matmul_assemble(self.tiling, values)  # (H_o·W_o, M)
        return np.ascontiguousarray(y.T).reshape(self.source.out_shape)
