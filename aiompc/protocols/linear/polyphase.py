"""Polyphase layout of strided convolutions: a stride-``s`` convolution computed as a stride-1 one.

Cheetah's encoding of a stride-``s`` convolution sends every input coefficient of a tile and returns
ciphertexts whose outputs sit ``s`` coefficients apart along rows and ``s`` rows apart: a quarter of the
coefficients of an output window carry outputs at ``s = 2``, so a layer costs about ``s²`` times the output
ciphertexts (each with its whole ``c1``) of a dense one.  Splitting the zero-padded input into its ``s_h·s_w``
*phases* turns it into a stride-1 convolution with a smaller kernel (the standard polyphase identity)::

    x_(u,v)[c, i, j] = x_pad[c, i·s_h + u, j·s_w + v]           (u < min(s_h, k_h), v < min(s_w, k_w))
    w'[m, (c, u, v), a, b] = w[m, c, a·s_h + u, b·s_w + v]      (0 where the tap lies outside the kernel)
    y[m, i, j] = Σ_(c,u,v,a,b) w'[m, (c,u,v), a, b] · x_(u,v)[c, i + a, j + b]

with ``C·p_h·p_w`` channels (``p = min(s, k)``: phases no tap reads are left out — a ``1x1`` stride-2
convolution just reads every other row and column, a quarter of the input), kernel ``⌈k/s⌉``, no padding, and
exactly ``H_o + ⌈k_h/s_h⌉ − 1`` rows per phase (rows past the padded input are zeros that meet zero weights),
so the stride-1 convolution's output *is* ``y`` — exact, no extra output.  Channel ``(c, u, v)`` is numbered
``c·p_h·p_w + u·p_w + v``: the channels of a group stay contiguous, so grouped (depthwise) convolutions
keep their groups.

Both parties rearrange their own shares locally (a permutation with zero fill: shares of zero are zero), the
server its weights; the protocol, the byte model and the noise bound are those of the inner stride-1 layout
(:class:`PolyphaseConvLayout` over :class:`~.layouts.ConvLayout`, :class:`PolyphaseInterleavedLayout` over
the channel-interleaved one).  The outputs are dense, so a ciphertext carries up to ``s²`` times more of them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from aiompc.errors import ParameterError
from aiompc.protocols.linear.interleaved import InterleavedConvLayout
from aiompc.protocols.linear.layouts import ConvLayout, SourcedLayout
from aiompc.protocols.linear.tiling import ConvShape

__all__ = ["phase_shape", "phase_input", "phase_weight", "PolyphaseConvLayout", "PolyphaseInterleavedLayout"]


def _phases(shape: ConvShape) -> tuple[int, int]:
    (kh, kw), (sh, sw) = shape.kernel, shape.stride
    return min(sh, kh), min(sw, kw)


def phase_shape(shape: ConvShape) -> ConvShape | None:
    """The stride-1 convolution computing ``shape`` (see the module docstring); ``None`` at stride 1."""
    if shape.stride == (1, 1):
        return None
    (kh, kw), (sh, sw) = shape.kernel, shape.stride
    ph, pw = _phases(shape)
    kh2, kw2 = -(-kh // sh), -(-kw // sw)
    return ConvShape(shape.in_channels * ph * pw, shape.out_height + kh2 - 1, shape.out_width + kw2 - 1,
                     shape.out_channels, (kh2, kw2), (1, 1), (0, 0, 0, 0), shape.groups)


def _axis(size: int, pad_lo: int, stride: int, phases: int, length: int) -> tuple[np.ndarray, np.ndarray]:
    """Source index (into the unpadded axis) and validity of phase ``u``'s position ``i``: ``(phases, length)``."""
    src = np.arange(length)[None, :] * stride + np.arange(phases)[:, None] - pad_lo
    valid = (src >= 0) & (src < size)
    return np.where(valid, src, 0), valid


def phase_input(x: np.ndarray, shape: ConvShape) -> np.ndarray:
    """``C x H x W`` (shares, any integer dtype) → the ``C·p_h·p_w x H' x W'`` phase images of
    :func:`phase_shape` (zero where a phase reads the padding or past the input)."""
    ps = phase_shape(shape)
    if ps is None:
        return np.asarray(x)
    x = np.asarray(x)
    top, _, left, _ = shape.padding
    ph, pw = _phases(shape)
    rows, rv = _axis(shape.height, top, shape.stride[0], ph, ps.height)  # (ph, H')
    cols, cv = _axis(shape.width, left, shape.stride[1], pw, ps.width)  # (pw, W')
    out = x[:, rows[:, None, :, None], cols[None, :, None, :]]  # (C, ph, pw, H', W')
    out = np.where(rv[:, None, :, None] & cv[None, :, None, :], out, np.zeros((), dtype=x.dtype))
    return out.reshape(ps.in_shape)


def phase_weight(w: np.ndarray, shape: ConvShape) -> np.ndarray:
    """``(M, C/g, k_h, k_w)`` weights → ``(M, C/g·p_h·p_w, ⌈k_h/s_h⌉, ⌈k_w/s_w⌉)`` of :func:`phase_shape`."""
    ps = phase_shape(shape)
    if ps is None:
        return np.asarray(w)
    w = np.asarray(w)
    (kh, kw), (sh, sw) = shape.kernel, shape.stride
    ph, pw = _phases(shape)
    kh2, kw2 = ps.kernel
    taps_h = np.arange(kh2)[None, :] * sh + np.arange(ph)[:, None]  # (ph, kh2): original row of tap (u, a)
    taps_w = np.arange(kw2)[None, :] * sw + np.arange(pw)[:, None]
    vh, vw = taps_h < kh, taps_w < kw
    g = w[:, :, np.where(vh, taps_h, 0)[:, None, :, None], np.where(vw, taps_w, 0)[None, :, None, :]]
    g = np.where(vh[:, None, :, None] & vw[None, :, None, :], g, np.zeros((), dtype=w.dtype))  # (M, C/g, ph, pw, kh2, kw2)
    return g.reshape(w.shape[0], w.shape[1] * ph * pw, kh2, kw2)


class _Polyphase(SourcedLayout):
    """The overrides shared by both polyphase layouts (``source``: the strided convolution computed)."""

    source: ConvShape | None
    tiling: object

    def _check(self) -> None:
        if self.source is None or self.tiling.shape != phase_shape(self.source):  # type: ignore[attr-defined]
            raise ParameterError("the tiling must be of phase_shape(source), a strided convolution")

    def input_polys(self, x: np.ndarray, l: int) -> np.ndarray:
        assert self.source is not None
        return super().input_polys(phase_input(x, self.source), l)  # type: ignore[misc]

    def weight_values(self, weight: np.ndarray, l: int) -> tuple[np.ndarray, np.ndarray]:
        assert self.source is not None
        return super().weight_values(phase_weight(weight, self.source), l)  # type: ignore[misc]


@dataclass(frozen=True)
class PolyphaseConvLayout(_Polyphase, ConvLayout):
    """A :class:`ConvLayout` of :func:`phase_shape` computing the strided ``source`` convolution."""

    source: ConvShape | None = None

    def __post_init__(self) -> None:
        self._check()


@dataclass(frozen=True)
class PolyphaseInterleavedLayout(_Polyphase, InterleavedConvLayout):
    """A channel-interleaved layout (outputs on a lattice: cheap to pack) of :func:`phase_shape`."""

    source: ConvShape | None = None

    def __post_init__(self) -> None:
        self._check()
        super().__post_init__()
