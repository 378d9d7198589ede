"""Layer shapes and their tilings for coefficient-encoded HE linear layers (pure, no I/O).

A *shape* states what the layer computes; a *tiling* states how it is cut into ring elements of
degree ``N``.  Both are frozen dataclasses with every derived count as a property, so a planner (Cheetah's
closed-form rule here; a cost-driven search in the quantized mode) only has to choose a handful of integers,
and the encoders in :mod:`aiompc.protocols.linear.encoding` and the protocols take the tiling as given.

Convolutions (``ConvShape`` / ``ConvTiling``)
    After zero padding, the input ``C x Hp x Wp`` is cut into spatial tiles of ``tile_h x tile_w`` pixels that
    overlap so that every (strided) output is computed by exactly one tile, and into channel blocks of
    ``channels`` input channels.  One input ciphertext holds one (spatial tile, channel block); one output
    ciphertext holds ``out_pack`` output channels of one spatial tile, summed over all channel blocks.
    Cheetah uses ``out_pack = 1``; ``out_pack > 1`` places several output channels in disjoint coefficient
    ranges (needs ``(out_pack - 1) * channels * tile_h * tile_w + span <= N``, :attr:`ConvTiling.span`), which
    trades upload for download.

Matrix products (``MatmulShape`` / ``MatmulTiling``)
    ``Y = X . W^T`` with ``X`` of shape ``batch x in_features`` (the client's side, encrypted) and ``W`` of
    shape ``out_features x in_features`` (the server's weights).  Blocks ``d0 x d1`` of ``X`` and ``d1 x d2``
    of ``W^T`` with ``d0 * d1 * d2 <= N``; ``d0 = 1`` is Cheetah's matrix-vector encoding.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property

from aiompc.crypto.he import CHEETAH_RING_DEGREE
from aiompc.errors import InputError, ParameterError

__all__ = [
    "ConvShape",
    "ConvTiling",
    "MatmulShape",
    "MatmulTiling",
    "cheetah_conv_tiling",
    "cheetah_matmul_tiling",
    "matmul_tilings_by_count",
    "block_sizes",
    "pair",
    "quad",
]


def block_sizes(total: int, largest: int) -> list[int]:
    """The smallest block size for each distinct block count ``ceil(total / b)``, ``1 <= b <= largest``,
    in decreasing order of size (increasing block count)."""
    largest = min(largest, total)
    if largest < 1:
        return []
    out: list[int] = []
    count = -(-total // largest)
    while count <= total:
        b = -(-total // count)
        if not out or b != out[-1]:
            out.append(b)
        # next count whose minimal block is smaller than b
        count = max(count + 1, -(-total // (b - 1)) if b > 1 else total + 1)
    return out


def pair(v: int | tuple[int, int], name: str) -> tuple[int, int]:
    """``v`` or ``(v, v)`` as a pair of non-negative ints."""
    t = (v, v) if isinstance(v, int) else tuple(v)
    if len(t) != 2 or not all(isinstance(a, int) and a >= 0 for a in t):
        raise InputError(f"{name} must be a non-negative int or a pair of them, got {v!r}")
    return (int(t[0]), int(t[1]))


def quad(v: int | tuple[int, ...], name: str = "padding") -> tuple[int, int, int, int]:
    """Padding as ``(top, bottom, left, right)`` from an int, ``(ph, pw)`` or four ints."""
    if isinstance(v, int):
        t: tuple[int, ...] = (v, v, v, v)
    else:
        t = tuple(v)
        if len(t) == 2:
            t = (t[0], t[0], t[1], t[1])
    if len(t) != 4 or not all(isinstance(a, int) and a >= 0 for a in t):
        raise InputError(f"{name} must be an int, (ph, pw) or (top, bottom, left, right), got {v!r}")
    return (int(t[0]), int(t[1]), int(t[2]), int(t[3]))


# --------------------------------------------------------------------------- convolution


@dataclass(frozen=True)
class ConvShape:
    """A 2-D convolution (cross-correlation, as in PyTorch/ONNX) on one ``C x H x W`` image.

    ``kernel``, ``stride`` are ``(rows, cols)``; ``padding`` is ``(top, bottom, left, right)`` zeros;
    ``groups`` splits input and output channels into that many independent groups (``groups == C`` with
    one output channel per group is depthwise).  The weight has shape ``(M, C // groups, kh, kw)``.
    """

    in_channels: int
    height: int
    width: int
    out_channels: int
    kernel: tuple[int, int]
    stride: tuple[int, int] = (1, 1)
    padding: tuple[int, int, int, int] = (0, 0, 0, 0)
    groups: int = 1

    def __post_init__(self) -> None:
        for name in ("in_channels", "height", "width", "out_channels", "groups"):
            v = getattr(self, name)
            if not isinstance(v, int) or v < 1:
                raise InputError(f"conv {name} must be a positive int, got {v!r}")
        kh, kw = self.kernel
        sh, sw = self.stride
        if kh < 1 or kw < 1 or sh < 1 or sw < 1:
            raise InputError(f"conv kernel and stride must be positive, got kernel={self.kernel}, stride={self.stride}")
        if self.in_channels % self.groups or self.out_channels % self.groups:
            raise InputError(
                f"groups={self.groups} must divide in_channels={self.in_channels} and out_channels={self.out_channels}"
            )
        if self.padded_height < kh or self.padded_width < kw:
            raise InputError(
                f"kernel {self.kernel} larger than the padded input {self.padded_height}x{self.padded_width}"
            )

    @classmethod
    def make(
        cls,
        in_channels: int,
        height: int,
        width: int,
        out_channels: int,
        kernel: int | tuple[int, int],
        *,
        stride: int | tuple[int, int] = 1,
        padding: int | tuple[int, ...] = 0,
        groups: int = 1,
    ) -> "ConvShape":
        """Build from PyTorch-style arguments (ints or pairs)."""
        return cls(in_channels, height, width, out_channels, pair(kernel, "kernel"), pair(stride, "stride"),
                   quad(padding), groups)

    @cached_property
    def padded_height(self) -> int:
        return self.height + self.padding[0] + self.padding[1]

    @cached_property
    def padded_width(self) -> int:
        return self.width + self.padding[2] + self.padding[3]

    @cached_property
    def out_height(self) -> int:
        return (self.padded_height - self.kernel[0]) // self.stride[0] + 1

    @cached_property
    def out_width(self) -> int:
        return (self.padded_width - self.kernel[1]) // self.stride[1] + 1

    @property
    def in_shape(self) -> tuple[int, int, int]:
        return (self.in_channels, self.height, self.width)

    @property
    def out_shape(self) -> tuple[int, int, int]:
        return (self.out_channels, self.out_height, self.out_width)

    @property
    def weight_shape(self) -> tuple[int, int, int, int]:
        return (self.out_channels, self.in_channels // self.groups, *self.kernel)


def _tile_count(padded: int, kernel: int, stride: int, tile: int) -> tuple[int, int]:
    """``(outputs per tile, number of tiles)`` along one axis (strided outputs)."""
    per_tile = (tile - kernel) // stride + 1
    outputs = (padded - kernel) // stride + 1
    return per_tile, -(-outputs // per_tile)


@dataclass(frozen=True)
class ConvTiling:
    """How a :class:`ConvShape` is cut into degree-``N`` polynomials.

    ``channels`` (C_w) input channels of a ``tile_h x tile_w`` (H_w x W_w) padded spatial tile per input
    ciphertext; ``out_pack`` output channels per output ciphertext.  Spatial tile ``(a, b)`` starts at padded
    input row ``a * rows_per_tile * stride_h`` (likewise columns) and computes strided output rows
    ``[a * rows_per_tile, (a + 1) * rows_per_tile)``; consecutive tiles overlap by ``tile_h - rows_per_tile *
    stride_h`` input rows (``kh - 1`` at stride 1).

    ``compact`` stores a tile without the zero columns of the right padding when the tile spans the padded
    width (and without the zero rows of the bottom padding when it spans the padded height): a read past the
    end of a stored row lands on the next row's left padding (or the next channel's top padding, or beyond
    the tile, all zero), so the convolution is unchanged while each channel takes ``stored_h * pitch``
    coefficients instead of ``tile_h * tile_w`` — e.g. 25 instead of 36 for a 4x4 image with padding 1.
    Needs ``right <= left`` padding (and ``bottom <= top`` for the rows).
    """

    shape: ConvShape
    n: int
    channels: int
    tile_h: int
    tile_w: int
    out_pack: int = 1
    compact: bool = False

    def __post_init__(self) -> None:
        s = self.shape
        if self.n < 1 or self.n & (self.n - 1):
            raise ParameterError(f"ring degree must be a power of two, got {self.n}")
        if not 1 <= self.channels <= s.in_channels:
            raise ParameterError(f"channels per tile must be in 1..{s.in_channels}, got {self.channels}")
        if not 1 <= self.out_pack <= s.out_channels:
            raise ParameterError(f"out_pack must be in 1..{s.out_channels}, got {self.out_pack}")
        if self.tile_h < s.kernel[0] or self.tile_w < s.kernel[1]:
            raise ParameterError(f"tile {self.tile_h}x{self.tile_w} is smaller than the kernel {s.kernel}")
        if self.tile_h > s.padded_height or self.tile_w > s.padded_width:
            raise ParameterError(
                f"tile {self.tile_h}x{self.tile_w} exceeds the padded input {s.padded_height}x{s.padded_width}"
            )
        if self.compact:
            top, bottom, left, right = s.padding
            if self.tile_w != s.padded_width or right > left:
                raise ParameterError(
                    f"a compact tile must span the padded width {s.padded_width} (got {self.tile_w}) with right "
                    f"padding <= left padding (got {right} > {left})"
                )
        if (self.out_pack - 1) * self.tile_size + self.span > self.n:
            raise ParameterError(
                f"{self.out_pack} output channels of {self.tile_size} coefficients, the last one's outputs "
                f"reaching coefficient {self.span - 1} of its range, exceed N = {self.n}"
            )

    # -- per-ciphertext geometry
    @property
    def pitch(self) -> int:
        """Coefficients per stored row: ``W_w``, or ``W_w - right padding`` when compact."""
        return self.tile_w - (self.shape.padding[3] if self.compact else 0)

    @property
    def stored_h(self) -> int:
        """Rows stored per channel: ``H_w``, or ``H_w - bottom padding`` for a compact tile spanning the height."""
        _, bottom, _, _ = self.shape.padding
        top = self.shape.padding[0]
        if self.compact and self.tile_h == self.shape.padded_height and bottom <= top:
            return self.tile_h - bottom
        return self.tile_h

    @property
    def channel_size(self) -> int:
        """Coefficients per channel of a tile: ``stored_h * pitch`` (``H_w * W_w`` unless compact)."""
        return self.stored_h * self.pitch

    @property
    def tile_size(self) -> int:
        """Coefficients used by one input tile: C_w * H_w * W_w (fewer when compact)."""
        return self.channels * self.channel_size

    @property
    def offset(self) -> int:
        """Cheetah's O = (C_w - 1) H_w W_w + (kh - 1) W_w + (kw - 1): coefficient of output (0, 0)
        (with the stored channel size and row pitch when compact)."""
        kh, kw = self.shape.kernel
        return (self.channels - 1) * self.channel_size + (kh - 1) * self.pitch + (kw - 1)

    @property
    def span(self) -> int:
        """Coefficients an output channel's range needs: up to its last output, at ``offset + (rows − 1)·s_h·pitch
        + (cols − 1)·s_w``.  At most ``tile_size`` for a plain tile; a compact tile's last outputs reach
        ``bottom·pitch + right`` past it (harmlessly into the next output channel's range, whose first
        coefficients only ever receive the zero top-left padding, but not past ``N``)."""
        sh, sw = self.shape.stride
        last = self.offset + (self.rows_per_tile - 1) * sh * self.pitch + (self.cols_per_tile - 1) * sw
        return max(self.tile_size, last + 1)

    @property
    def rows_per_tile(self) -> int:
        return _tile_count(self.shape.padded_height, self.shape.kernel[0], self.shape.stride[0], self.tile_h)[0]

    @property
    def cols_per_tile(self) -> int:
        return _tile_count(self.shape.padded_width, self.shape.kernel[1], self.shape.stride[1], self.tile_w)[0]

    # -- counts
    @property
    def tiles_h(self) -> int:
        return _tile_count(self.shape.padded_height, self.shape.kernel[0], self.shape.stride[0], self.tile_h)[1]

    @property
    def tiles_w(self) -> int:
        return _tile_count(self.shape.padded_width, self.shape.kernel[1], self.shape.stride[1], self.tile_w)[1]

    @property
    def spatial_tiles(self) -> int:
        return self.tiles_h * self.tiles_w

    @property
    def channel_blocks(self) -> int:
        return -(-self.shape.in_channels // self.channels)

    @property
    def out_groups(self) -> int:
        """Output ciphertexts per spatial tile: ceil(M / out_pack)."""
        return -(-self.shape.out_channels // self.out_pack)

    @property
    def input_ciphertexts(self) -> int:
        return self.spatial_tiles * self.channel_blocks

    @property
    def output_ciphertexts(self) -> int:
        return self.spatial_tiles * self.out_groups

    def describe(self) -> str:
        compact = f" compact {self.stored_h}x{self.pitch}" if self.compact else ""
        return (f"C_w={self.channels} H_w={self.tile_h} W_w={self.tile_w}{compact} out_pack={self.out_pack} N={self.n}: "
                f"{self.input_ciphertexts} in / {self.output_ciphertexts} out ciphertexts")


def cheetah_conv_tiling(shape: ConvShape, n: int = CHEETAH_RING_DEGREE) -> ConvTiling:
    """Cheetah's closed-form tile rule on the padded input (REFERENCE.md).

    If ``Hp * Wp <= N``: the whole image, ``C_w = min(C, N // (Hp Wp), N // (kh kw))``; else one channel and
    ``H_w = min(floor(sqrt(N Hp / Wp)), Hp)``, ``W_w = min(N // H_w, Wp)``.  One output channel per output
    ciphertext.
    """
    hp, wp = shape.padded_height, shape.padded_width
    kh, kw = shape.kernel
    if hp * wp <= n:
        cw = min(shape.in_channels, n // (hp * wp), n // (kh * kw))
        return ConvTiling(shape, n, max(cw, 1), hp, wp)
    th = min(math.isqrt(n * hp // wp), hp)
    tw = min(n // th, wp)
    if th < kh or tw < kw:
        raise ParameterError(
            f"Cheetah's tile rule gives a {th}x{tw} tile, smaller than the {kh}x{kw} kernel, for a "
            f"{hp}x{wp} input at N={n}; use a larger N"
        )
    return ConvTiling(shape, n, 1, th, tw)


# --------------------------------------------------------------------------- matrix products


@dataclass(frozen=True)
class MatmulShape:
    """``Y = X . W^T``: ``X`` is ``batch x in_features``, ``W`` is ``out_features x in_features``."""

    batch: int
    in_features: int
    out_features: int

    def __post_init__(self) -> None:
        for name in ("batch", "in_features", "out_features"):
            v = getattr(self, name)
            if not isinstance(v, int) or v < 1:
                raise InputError(f"matmul {name} must be a positive int, got {v!r}")


@dataclass(frozen=True)
class MatmulTiling:
    """Blocks ``d0 x d1`` of X and ``d1 x d2`` of W^T with ``d0 * d1 * d2 <= N``.

    One input ciphertext per ``(row block, inner block)``; one output ciphertext per ``(row block, column
    block)``, summed over inner blocks.
    """

    shape: MatmulShape
    n: int
    d0: int
    d1: int
    d2: int

    def __post_init__(self) -> None:
        s = self.shape
        if self.n < 1 or self.n & (self.n - 1):
            raise ParameterError(f"ring degree must be a power of two, got {self.n}")
        if not (1 <= self.d0 <= s.batch and 1 <= self.d1 <= s.in_features and 1 <= self.d2 <= s.out_features):
            raise ParameterError(f"blocks ({self.d0}, {self.d1}, {self.d2}) must be positive and within the shape {s}")
        if self.d0 * self.d1 * self.d2 > self.n:
            raise ParameterError(f"d0 * d1 * d2 = {self.d0 * self.d1 * self.d2} exceeds N = {self.n}")

    @property
    def row_blocks(self) -> int:
        return -(-self.shape.batch // self.d0)

    @property
    def inner_blocks(self) -> int:
        return -(-self.shape.in_features // self.d1)

    @property
    def col_blocks(self) -> int:
        return -(-self.shape.out_features // self.d2)

    @property
    def input_ciphertexts(self) -> int:
        return self.row_blocks * self.inner_blocks

    @property
    def output_ciphertexts(self) -> int:
        return self.row_blocks * self.col_blocks

    def describe(self) -> str:
        return (f"d0={self.d0} d1={self.d1} d2={self.d2} N={self.n}: "
                f"{self.input_ciphertexts} in / {self.output_ciphertexts} out ciphertexts")


def _cheetah_key(n_in: int, n_out: int, d0: int, d1: int, d2: int) -> tuple[int, int, int, int, int]:
    """Cheetah's order of blockings: fewest input + output ciphertexts, then fewest input ciphertexts, then smaller
    blocks (then fewer rows, then fewer inner features per block)."""
    return (n_in + n_out, n_in, d0 * d1 * d2, d0, d1)


def cheetah_matmul_tiling(shape: MatmulShape, n: int = CHEETAH_RING_DEGREE) -> MatmulTiling:
    """Blocks minimising input + output ciphertexts (ties: fewer input ciphertexts, then smaller blocks).

    Exhaustive over ``d0`` and ``d1`` with the largest admissible ``d2 = min(out, N // (d0 d1))``; the
    search is O(batch * in_features) integer work, done once per layer.
    """
    best: tuple[tuple[int, int, int, int, int], MatmulTiling] | None = None
    for d0 in range(1, min(shape.batch, n) + 1):
        rows = -(-shape.batch // d0)
        for d1 in range(1, min(shape.in_features, n // d0) + 1):
            d2 = min(shape.out_features, n // (d0 * d1))
            n_in = rows * -(-shape.in_features // d1)
            n_out = rows * -(-shape.out_features // d2)
            key = _cheetah_key(n_in, n_out, d0, d1, d2)
            if best is None or key < best[0]:
                best = (key, MatmulTiling(shape, n, d0, d1, d2))
    assert best is not None
    return best[1]


def matmul_tilings_by_count(shape: MatmulShape, n: int = CHEETAH_RING_DEGREE) -> list[MatmulTiling]:
    """Every distinct matrix-product blocking at ring degree ``n`` (each count of row, inner and column blocks once,
    with the smallest blocks giving it: :func:`block_sizes`), in the order of Cheetah's key — fewest input plus
    output ciphertexts, then fewest input ciphertexts, then smaller blocks.  The fallback of
    :class:`~aiompc.protocols.linear.plan.CheetahPlanner` when :func:`cheetah_matmul_tiling` cannot be flooded:
    the first of these that decrypts.  About ``2·sqrt`` of each dimension per axis (BERT-base's ``128 x 768 ->
    3072``: 27,000 blockings, sorted in well under a second)."""
    out = []
    for d0 in block_sizes(shape.batch, n):
        for d1 in block_sizes(shape.in_features, n // d0):
            for d2 in block_sizes(shape.out_features, n // (d0 * d1)):
                out.append(MatmulTiling(shape, n, d0, d1, d2))
    return sorted(out, key=lambda t: _cheetah_key(t.input_ciphertexts, t.output_ciphertexts, t.d0, t.d1, t.d2))
