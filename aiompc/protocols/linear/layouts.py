"""Layouts: the protocol's generic view of an encoded linear layer.

The two-party flow (:mod:`aiompc.protocols.linear.engine`) never looks at convolution or matrix geometry.  It sees
``units`` independent work units (spatial tiles, or row blocks of a batch); per unit ``inputs`` input
polynomials (channel / inner blocks) that the client encrypts, and ``outputs`` output polynomials, the
``j``-th being ``sum_k input_k * weight[j, k]`` (negacyclic products), of which only the coefficients at
``positions(u, j)`` are ever revealed.  The weight polynomials are the same for every unit.

A layout is pure (no I/O, no HE): it encodes shares and weights into ``uint64`` polynomial arrays mod
``2^l`` and places decoded values back into the layer's output array.  The quantized mode adds layouts (e.g.
intra-coefficient packing) behind the same interface.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np

from aiompc.ring import reduce
from aiompc.protocols.linear import encoding as enc
from aiompc.protocols.linear.tiling import ConvShape, ConvTiling, MatmulTiling

__all__ = ["Layout", "ConvLayout", "MatmulLayout", "SourcedLayout", "layout_for"]


@runtime_checkable
class Layout(Protocol):
    """What the engine needs from an encoded layer (see the module docstring)."""

    n: int
    units: int
    inputs: int
    outputs: int
    pack: int
    """Input channels per coefficient (1 unless intra-coefficient packing, :mod:`~.kronecker`)."""

    @property
    def tiling(self) -> ConvTiling | MatmulTiling: ...

    @property
    def in_shape(self) -> tuple[int, ...]: ...

    @property
    def out_shape(self) -> tuple[int, ...]: ...

    def input_polys(self, x: np.ndarray, l: int) -> np.ndarray:
        """``(units, inputs, N)`` polynomials of a share (or of the plain input), mod ``2^l``."""
        ...

    def weight_values(self, weight: np.ndarray, l: int) -> tuple[np.ndarray, np.ndarray]:
        """The weight polynomials without their structural zeros: ``(values (outputs, inputs, E) mod 2^l,
        nonzero (outputs, inputs) bool: block not structurally zero)``, ``values[j, k, e]`` the coefficient
        of ``X^weight_exponents()[e]`` in weight polynomial ``(j, k)`` (every other coefficient is zero)."""
        ...

    def weight_exponents(self) -> np.ndarray:
        """The ``E`` public exponents holding every non-zero weight coefficient (distinct, in ``[0, N)``)."""
        ...

    def positions(self, unit: int, out: int) -> np.ndarray:
        """Coefficients of output polynomial ``out`` of ``unit`` holding outputs (``int64``)."""
        ...

    def assemble(self, values: dict[tuple[int, int], np.ndarray]) -> np.ndarray:
        """The layer's output array from ``values[(unit, out)]`` read at :meth:`positions`."""
        ...


class SourcedLayout:
    """The shapes of a layout that computes the convolution ``source`` through a derived product (Kronecker-packed
    channels, input phases, im2col): the caller hands it ``source``'s input.  Mixed in before the base layout."""

    source: ConvShape | None

    @property
    def conv_shape(self) -> ConvShape:
        """The convolution this layout computes."""
        assert self.source is not None
        return self.source

    @property
    def in_shape(self) -> tuple[int, ...]:
        assert self.source is not None
        return self.source.in_shape


class _TiledLayout:
    """What :class:`ConvLayout` and :class:`MatmulLayout` share: ring degree ``n`` from the tiling, one channel per
    coefficient (:class:`~.kronecker.KroneckerConvLayout` packs several), and ``units``/``inputs``/``outputs``
    read from the tiling's counts, which each layout names in ``_counts``."""

    tiling: ConvTiling | MatmulTiling

    def _counts(self) -> tuple[int, int, int]:
        """``(units, inputs, outputs)`` of the tiling."""
        raise NotImplementedError

    @property
    def pack(self) -> int:
        return 1

    @property
    def n(self) -> int:
        return self.tiling.n

    @property
    def units(self) -> int:
        return self._counts()[0]

    @property
    def inputs(self) -> int:
        return self._counts()[1]

    @property
    def outputs(self) -> int:
        return self._counts()[2]


@dataclass(frozen=True)
class ConvLayout(_TiledLayout):
    """A :class:`ConvTiling` seen as a layout: unit = spatial tile (row-major), input = channel block,
    output = output-channel group."""

    tiling: ConvTiling

    def _counts(self) -> tuple[int, int, int]:
        t = self.tiling
        return t.spatial_tiles, t.channel_blocks, t.out_groups

    @property
    def conv_shape(self) -> ConvShape:
        """The convolution this layout computes (the tiling's shape; a packing layout computes another)."""
        return self.tiling.shape

    @property
    def in_shape(self) -> tuple[int, ...]:
        return self.tiling.shape.in_shape

    @property
    def out_shape(self) -> tuple[int, ...]:
        return self.tiling.shape.out_shape

    def _ab(self, unit: int) -> tuple[int, int]:
        return divmod(unit, self.tiling.tiles_w)

    def input_polys(self, x: np.ndarray, l: int) -> np.ndarray:
        p = enc.conv_input_polys(reduce(x, l), self.tiling)
        return p.reshape(self.units, self.inputs, self.n)

    def weight_values(self, weight: np.ndarray, l: int) -> tuple[np.ndarray, np.ndarray]:
        values, nonzero = enc.conv_kernel_values(reduce(weight, l), self.tiling)
        return reduce(values, l), nonzero

    def weight_exponents(self) -> np.ndarray:
        return enc.conv_kernel_exponents(self.tiling)

    def positions(self, unit: int, out: int) -> np.ndarray:
        a, b = self._ab(unit)
        return enc.conv_output_positions(self.tiling, a, b, out)

    def assemble(self, values: dict[tuple[int, int], np.ndarray]) -> np.ndarray:
        return enc.conv_assemble(self.tiling, {(*self._ab(u), j): v for (u, j), v in values.items()})


@dataclass(frozen=True)
class MatmulLayout(_TiledLayout):
    """A :class:`MatmulTiling` seen as a layout: unit = row block, input = inner block, output = column block.

    With ``vector=True`` the layer takes and returns 1-D vectors (batch of one).
    """

    tiling: MatmulTiling
    vector: bool = False

    def _counts(self) -> tuple[int, int, int]:
        t = self.tiling
        return t.row_blocks, t.inner_blocks, t.col_blocks

    @property
    def in_shape(self) -> tuple[int, ...]:
        s = self.tiling.shape
        return (s.in_features,) if self.vector else (s.batch, s.in_features)

    @property
    def out_shape(self) -> tuple[int, ...]:
        s = self.tiling.shape
        return (s.out_features,) if self.vector else (s.batch, s.out_features)

    def input_polys(self, x: np.ndarray, l: int) -> np.ndarray:
        s = self.tiling.shape
        return enc.matmul_input_polys(reduce(x, l).reshape(s.batch, s.in_features), self.tiling, l)

    def weight_values(self, weight: np.ndarray, l: int) -> tuple[np.ndarray, np.ndarray]:
        values = reduce(enc.matmul_weight_values(reduce(weight, l), self.tiling), l)
        return values, np.ones(values.shape[:2], dtype=bool)

    def weight_exponents(self) -> np.ndarray:
        return enc.matmul_weight_exponents(self.tiling)

    def positions(self, unit: int, out: int) -> np.ndarray:
        return enc.matmul_output_positions(self.tiling, unit, out)

    def assemble(self, values: dict[tuple[int, int], np.ndarray]) -> np.ndarray:
        return enc.matmul_assemble(self.tiling, values).reshape(self.out_shape)


def layout_for(tiling: ConvTiling | MatmulTiling, *, vector: bool = False) -> Layout:
    """The layout of a Cheetah-style tiling."""
    if isinstance(tiling, ConvTiling):
        return ConvLayout(tiling)
    return MatmulLayout(tiling, vector)
