"""Channel-interleaved convolution layout: outputs on a lattice, so output packing costs one key switch per
ciphertext instead of one per output.

Cheetah's encoding puts channel ``c`` of a tile in the block ``c·S + …`` and every output of a ciphertext in a
window of consecutive coefficients.  Here the channel is the *fast* index (``C = C_w`` channels per ciphertext,
``S`` stored positions per channel — ``H_w·W_w``, or fewer for a *compact* tile, :class:`~.tiling.ConvTiling`
— row pitch ``P``, ``O = (kh − 1)·P + (kw − 1)``), and the ``out_pack`` output channels ``j`` of a group sit in
slots ``D`` lattice points apart::

    input   x^ = Σ T[c, q] · X^(C·q + c)                                    (q < S a stored position)
    kernel  k^ = Σ K[j, c, a, b] · X^(C·(j·D + O + 1 − a·P − b) − c)        (output slot j of the group)
    output  coefficient C·(j·D + O + 1 + y·P + z) of Σ_blocks x^·k^ is output (j, y, z) summed over the channels

A term of channels ``c, c'`` lands at exponent ``≡ c − c' (mod C)``: only ``c = c'`` reaches the multiples of
``C``, where the spatial indices combine exactly as in Cheetah's encoding (scaled by ``C``; a compact tile's
reads past a stored row meet zeros as there).  In units of ``C`` (``R = N/C`` lattice points), the diagonal
terms of slot ``j`` cover ``j·D + [1, S + O]`` and its outputs ``j·D + O + 1 + [0, last]`` (``last`` the offset
of a tile's last output); with ``D = max(S, O + last + 1)`` no slot's terms reach another slot's outputs.
Terms past ``N`` wrap once (negacyclically: sign flipped, still ``≡ c − c' (mod C)``) to lattice point
``k − R <= (out_pack − 1)·D + S + O − R``, below slot 0's first output ``O + 1`` when ``(out_pack − 1)·D + S <= R``;
the last output must stay below ``R``.  Hence the layout's constraint ``C·((out_pack − 1)·D + max(S, O + last
+ 2)) <= N`` — for a plain stride-1 tile (``O + last + 1 = S``) ``C·(out_pack·S + 1) <= N`` up to the slot
spacing: the density of Cheetah's ``out_pack·C_w·H_w·W_w <= N``.  With ``C = 2^k`` every output sits on the
``2^k`` lattice:
:func:`aiompc.protocols.linear.packed.packing_stride` is ``>= k`` and the packed reply gathers ``2^k`` output
ciphertexts per ciphertext with ``2^k − 1`` key switches, so a packed layer costs about one key switch per
*output ciphertext* — ``out_pack`` times fewer with several output channels per ciphertext, for ``out_pack``
times fewer input channels per ciphertext (more upload): the planner weighs the two.

The layout reuses :class:`~aiompc.protocols.linear.tiling.ConvTiling` for the geometry, the weight values and the
output assembly; only the exponents differ.
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
        if t.channels * self.lanes > t.n:
            raise ParameterError(
                f"interleaving {t.channels} channels of {t.tile_h}x{t.tile_w} tiles with {t.out_pack} output "
                f"channels per ciphertext needs C·((out_pack − 1)·D + max(S, O + last + 2)) = "
                f"{t.channels * self.lanes} <= N = {t.n}")

    @property
    def _spatial_offset(self) -> int:
        kh, kw = self.tiling.shape.kernel
        return (kh - 1) * self.tiling.pitch + (kw - 1)

    @property
    def _last(self) -> int:
        """Offset ``y·P + z`` of a tile's last output."""
        t = self.tiling
        sh, sw = t.shape.stride
        return (t.rows_per_tile - 1) * sh * t.pitch + (t.cols_per_tile - 1) * sw

    @property
    def slot(self) -> int:
        """``D = max(S, O + last + 1)``: lattice points between the output slots of a group (module docstring)."""
        return max(self.tiling.channel_size, self._spatial_offset + self._last + 1)

    @property
    def lanes(self) -> int:
        """Lattice points the layout needs, ``(out_pack − 1)·D + max(S, O + last + 2)``: ``C·lanes <= N``."""
        t = self.tiling
        return (t.out_pack - 1) * self.slot + max(t.channel_size, self._spatial_offset + self._last + 2)

    def input_polys(self, x: np.ndarray, l: int) -> np.ndarray:
        t = self.tiling
        cheetah = super().input_polys(x, l)  # (units, blocks, N): channel-major in the first C·S coefficients
        size = t.channel_size
        block = cheetah[..., : t.channels * size].reshape(self.units, self.inputs, t.channels, size)
        out = np.zeros_like(cheetah)
        out[..., : t.channels * size] = block.transpose(0, 1, 3, 2).reshape(self.units, self.inputs, -1)
        return out

    def weight_exponents(self) -> np.ndarray:
        """``C·(j·D + O + 1 − a·P − b) − c`` in the order ``(slot j, channel c, row a, col b)`` of the weight
        values."""
        t = self.tiling
        kh, kw = t.shape.kernel
        j = np.arange(t.out_pack)[:, None, None, None]
        c = np.arange(t.channels)[None, :, None, None]
        a = np.arange(kh)[None, None, :, None]
        b = np.arange(kw)[None, None, None, :]
        local = j * self.slot + self._spatial_offset + 1 - a * t.pitch - b
        return (t.channels * local - c).reshape(-1).astype(np.int64)

    def positions(self, unit: int, out: int) -> np.ndarray:
        t = self.tiling
        s = t.shape
        a, b = self._ab(unit)
        rs, cs = enc.conv_tile_slices(t, a, b)
        sh, sw = s.stride
        n_ch = min(t.out_pack, s.out_channels - out * t.out_pack)
        i = np.arange(rs.stop - rs.start) * sh * t.pitch
        k = np.arange(cs.stop - cs.start) * sw
        j = np.arange(n_ch) * self.slot
        local = j[:, None, None] + self._spatial_offset + 1 + i[None, :, None] + k[None, None, :]
        return (t.channels * local).reshape(-1).astype(np.int64)


def interleaved_tilings(shape: ConvShape, n: int, tiles: list[tuple[int, ...]], halvings: int = 3,
                        out_packs: int = 2) -> list[InterleavedConvLayout]:
    """Interleaved layouts at ring degree ``n`` for the spatial ``tiles`` ``(H_w, W_w)`` or ``(H_w, W_w,
    compact)``: with one output channel per ciphertext, the largest power-of-two channel count that fits each
    and all channels in one block when they fit (a denser upload, a coarser lattice when the count is not a
    power of two); with several, for that power of two and ``halvings`` halvings of it (at least 2 channels:
    fewer channels leave room for more output slots), the ``out_packs`` largest output-channel counts that fit
    (each group count once)."""
    out: list[InterleavedConvLayout] = []
    kh, kw = shape.kernel
    for tile in tiles:
        th, tw = tile[0], tile[1]
        compact = bool(tile[2]) if len(tile) > 2 else False
        try:
            base = ConvTiling(shape, 1 << 30, 1, th, tw, 1, compact)
        except ParameterError:
            continue
        probe = InterleavedConvLayout.__new__(InterleavedConvLayout)
        object.__setattr__(probe, "tiling", base)
        first, slot = probe.lanes, probe.slot  # lattice points of one output slot, spacing of the others
        most = n // first
        if most < 1:
            continue
        pow2 = 1 << (min(most, shape.in_channels).bit_length() - 1)
        choices = [(c, 1) for c in dict.fromkeys((pow2, shape.in_channels if shape.in_channels <= most else pow2))]
        c = pow2
        for _ in range(halvings + 1):
            if c < 2:
                break
            op_max = min(shape.out_channels, (n // c - first) // slot + 1)
            choices += [(c, op) for op in _largest_blocks(shape.out_channels, op_max, out_packs) if op > 1]
            c //= 2
        for c, op in dict.fromkeys(choices):
            try:
                out.append(InterleavedConvLayout(ConvTiling(shape, n, c, th, tw, op, compact)))
            except ParameterError:
                continue
    return out


def _largest_blocks(total: int, largest: int, count: int) -> list[int]:
    """The ``count`` largest block sizes ``<= largest`` with distinct block counts ``ceil(total / b)``, each the
    smallest block giving its count (as :func:`aiompc.protocols.linear.quantized.block_sizes`)."""
    out: list[int] = []
    b = min(largest, total)
    while b >= 1 and len(out) < count:
        blocks = -(-total // b)
        smallest = -(-total // blocks)
        out.append(smallest)
        b = smallest - 1
    return out
