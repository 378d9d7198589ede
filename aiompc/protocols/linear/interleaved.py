"""Channel-interleaved convolution layout: outputs on a lattice, so output packing costs one key switch per
ciphertext instead of one per output.

Cheetah's encoding puts channel ``c`` of a tile in the block ``c·H_w·W_w + …`` and every output of a ciphertext
in a window of consecutive coefficients.  Here the channel is the *fast* index (``C = C_w`` channels per
ciphertext, ``S = H_w·W_w`` spatial positions, ``O = (kh − 1)·W_w + (kw − 1)``)::

    input   x^ = Σ T[c, i, j] · X^(C·(i·W_w + j) + c)
    kernel  k^ = Σ K[m, c, a, b] · X^(C·(O + 1 − a·W_w − b) − c)          (one output channel m per ciphertext)
    output  coefficient C·(O + 1 + y·W_w + z) of Σ_blocks x^·k^ is output (m, y, z) summed over the channels

A term of channels ``c, c'`` lands at exponent ``≡ c − c' (mod C)``: only ``c = c'`` reaches the multiples of
``C``, where the spatial indices combine exactly as in Cheetah's encoding (scaled by ``C``).  No term wraps
when ``C·(S + O) < N`` (the layout's constraint, stricter than Cheetah's ``C·S <= N``).  With ``C = 2^k`` every
output sits on the ``2^k`` lattice: :func:`aiompc.protocols.linear.packed.packing_stride` is ``>= k`` and the
packed reply gathers ``2^k`` output ciphertexts per ciphertext with ``2^k − 1`` key switches.

The layout reuses :class:`~aiompc.protocols.linear.tiling.ConvTiling` (non-compact, ``out_pack = 1``) for the
geometry, the weight values and the output assembly; only the exponents differ.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from aiompc.errors import ParameterError
from aiompc.protocols.linear import encoding as enc
from aiompc.protocols.linear.layouts import ConvLayout
from aiompc.protocols.linear.tiling import ConvShape, ConvTiling

__all__ = ["InterleavedConvLayout", "interleaved_tilings"]


@dataclass(frozen=True)
class InterleavedConvLayout(ConvLayout):
    """A :class:`ConvLayout` whose polynomials interleave the channels (see the module docstring)."""

    def __post_init__(self) -> None:
        t = self.tiling
        if t.compact or t.out_pack != 1:
            raise ParameterError("the interleaved layout needs a non-compact tiling with one output channel per ciphertext")
        if t.channels * (t.tile_h * t.tile_w + self._spatial_offset) >= t.n:
            raise ParameterError(
                f"interleaving {t.channels} channels of {t.tile_h}x{t.tile_w} tiles needs "
                f"C·(H_w·W_w + O) < N = {t.n}")

    @property
    def _spatial_offset(self) -> int:
        kh, kw = self.tiling.shape.kernel
        return (kh - 1) * self.tiling.tile_w + (kw - 1)

    def input_polys(self, x: np.ndarray, l: int) -> np.ndarray:
        t = self.tiling
        cheetah = super().input_polys(x, l)  # (units, blocks, N): channel-major in the first C·S coefficients
        size = t.tile_h * t.tile_w
        block = cheetah[..., : t.channels * size].reshape(self.units, self.inputs, t.channels, size)
        out = np.zeros_like(cheetah)
        out[..., : t.channels * size] = block.transpose(0, 1, 3, 2).reshape(self.units, self.inputs, -1)
        return out

    def weight_exponents(self) -> np.ndarray:
        """``C·(O + 1 − a·W_w − b) − c`` in the order ``(channel c, row a, col b)`` of the weight values."""
        t = self.tiling
        kh, kw = t.shape.kernel
        c = np.arange(t.channels)[:, None, None]
        a = np.arange(kh)[None, :, None]
        b = np.arange(kw)[None, None, :]
        return (t.channels * (self._spatial_offset + 1 - a * t.tile_w - b) - c).reshape(-1).astype(np.int64)

    def positions(self, unit: int, out: int) -> np.ndarray:
        t = self.tiling
        a, b = self._ab(unit)
        local = enc.conv_output_positions(t, a, b, out) - (t.channels - 1) * t.channel_size  # O + y·W_w + z
        return t.channels * (local + 1)


def interleaved_tilings(shape: ConvShape, n: int, tiles: list[tuple[int, int]]) -> list[InterleavedConvLayout]:
    """Interleaved layouts at ring degree ``n`` for the spatial ``tiles`` ``(H_w, W_w)``: the largest
    power-of-two channel count that fits each, and all channels in one block when they fit (a denser upload,
    a coarser lattice when the count is not a power of two)."""
    out: list[InterleavedConvLayout] = []
    kh, kw = shape.kernel
    for th, tw in tiles:
        span = th * tw + (kh - 1) * tw + (kw - 1)
        most = (n - 1) // span
        if most < 1:
            continue
        pow2 = 1 << (min(most, shape.in_channels).bit_length() - 1)
        for c in dict.fromkeys((pow2, shape.in_channels if shape.in_channels <= most else pow2)):
            try:
                out.append(InterleavedConvLayout(ConvTiling(shape, n, c, th, tw, 1, False)))
            except ParameterError:
                continue
    return out
