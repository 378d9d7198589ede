"""Intra-coefficient (Kronecker) packing of input channels for convolutions — approximate mode only.

With ``k`` slots of ``B`` bits (``t = 2^(kB)``), input channels ``k·c + i`` share one coefficient and the weights
are packed in reverse order::

    X_c = sum_i 2^(iB) x[k c + i]            W_{m,c} = sum_i 2^((k-1-i)B) w[m, k c + i]

so every coefficient of ``sum_c X_c * W_{m,c}`` is, mod ``2^(kB)``, ``L + 2^((k-1)B) y`` with ``y`` the
convolution (the diagonal terms ``x_i w_i`` meet in slot ``k - 1``) and ``L`` the cross terms of the lower
slots.  A layer of ``C`` channels is thus computed as a layer of ``ceil(C/k)`` channels: ``k`` times fewer
input coefficients, at the price of a larger plaintext modulus (``+ (k-1)B`` bits) and a weight plaintext
``2^((k-1)B)`` times larger (``+ (k-1)B`` bits of noise, hence of flooding).

**What is encrypted.**  The client encrypts its share of ``X``, which is uniform mod ``2^(kB)``, not small; only
the reconstruction ``X_S + X_C`` is packed.  For that, each party packs its own shares locally (a linear map)
and the result is a valid share of ``X`` mod ``2^(kB)`` as long as channel ``k c + i`` is shared in a ring of
at least ``(k - i)B`` bits: slot ``i``'s wrap ``2^(iB)·w·2^(ring)`` then vanishes mod ``2^(kB)``.  So the
producer of the input (a requantization, writing directly in any ring) must write the slot-``i`` channels in
``(k - i)B``-bit rings — slot ``k - 1`` needs only ``B``, the layer's usual ring; the others are wider, which
costs the requantization about ``4`` bits per extra ring bit and element (its two multiplexers).

**Unpacking.**  ``y`` is the slot ``k - 1`` of ``Z = L + 2^((k-1)B) y``: with ``B`` at least the signed width of
every slot sum (the accumulator width: the cross sums obey the same bound), ``L + 2^((k-1)B-1)`` lies in
``[0, 2^((k-1)B))`` and ``floor((Z + 2^((k-1)B-1)) / 2^((k-1)B)) = y`` exactly.  On shares this is a
truncation, which the protocol fuses into decryption (``out_shift >= (k-1)B``, see
:mod:`aiompc.protocols.linear.engine`): one unit of error, no extra message or round.  Exactly it would need a
``(k-1)B``-bit comparison per output — more bytes than the packing saves — so packing is offered in the
approximate mode only.

Costs (``aiompc.protocols.linear.costs``; ``benchmarks/quantized_layers.py``): on ResNet-18's w4a4 layers with 8 output
bits kept, ``k = 2`` saves about a fifth of the HE bytes over the best unpacked plan; net of the wider input
rings it pays on layers with small images (many HE bytes per input element) and not on 32x32 layers.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from aiompc.crypto.he import MAX_PLAIN_BITS
from aiompc.errors import InputError, ParameterError
from aiompc.ring import reduce
from aiompc.protocols.linear.layouts import ConvLayout, SourcedLayout
from aiompc.protocols.linear.tiling import ConvShape

__all__ = ["KroneckerConvLayout", "packed_shape", "packed_weight_bits", "unpack_offset", "slot_rings"]


def packed_shape(shape: ConvShape, pack: int) -> ConvShape:
    """The shape computed under HE: ``ceil(C / pack)`` packed channels, everything else unchanged."""
    if pack < 1:
        raise ParameterError(f"pack must be at least 1, got {pack}")
    if pack > 1 and shape.groups != 1:
        raise ParameterError("Kronecker packing of input channels needs groups = 1")
    return ConvShape(-(-shape.in_channels // pack), shape.height, shape.width, shape.out_channels, shape.kernel,
                     shape.stride, shape.padding, shape.groups)


def packed_weight_bits(weight_bits: int, pack: int, slot_bits: int) -> int:
    """Public bound (``2^(bits-1)``) on a packed weight: ``|sum_i 2^((k-1-i)B) w_i| < 2^((k-1)B + weight_bits)``."""
    return weight_bits if pack == 1 else (pack - 1) * slot_bits + weight_bits + 1


def unpack_offset(pack: int, slot_bits: int) -> int:
    """``2^((k-1)B - 1)``: added before the truncation so the cross terms ``L`` round away (``0`` if ``k = 1``)."""
    return 0 if pack == 1 else 1 << ((pack - 1) * slot_bits - 1)


def slot_rings(channels: int, pack: int, slot_bits: int) -> np.ndarray:
    """The ring each input channel must be shared in: ``(k - i)·B`` bits for channel ``k c + i``."""
    return (pack - np.arange(channels) % pack) * slot_bits


@dataclass(frozen=True)
class KroneckerConvLayout(SourcedLayout, ConvLayout):
    """A :class:`ConvLayout` of :func:`packed_shape` that packs ``pack`` input channels of ``slot_bits`` bits
    per coefficient (see the module docstring).  ``weight_bits`` bounds the raw weights (checked)."""

    source: ConvShape | None = None
    pack: int = 2
    slot_bits: int = 0
    weight_bits: int = 0

    def __post_init__(self) -> None:
        s = self.source
        if s is None or self.tiling.shape != packed_shape(s, self.pack):
            raise ParameterError("the tiling must be of packed_shape(source, pack)")
        if self.pack < 2 or self.slot_bits < 2 or self.weight_bits < 1:
            raise ParameterError(f"need pack >= 2, slot_bits >= 2, weight_bits >= 1 (got {self.pack}, "
                                 f"{self.slot_bits}, {self.weight_bits})")
        if self.pack * self.slot_bits > MAX_PLAIN_BITS:
            raise ParameterError(f"{self.pack} slots of {self.slot_bits} bits exceed the {MAX_PLAIN_BITS}-bit "
                                 "plaintext limit")

    def _slots(self, a: np.ndarray, shifts: np.ndarray, l: int) -> np.ndarray:
        """``sum_i a[:, k c + i] << shifts[i]`` along axis 1, mod ``2^l`` (``a``: ``(lead, C, ...)`` uint64)."""
        k, c = self.pack, a.shape[1]
        cp = -(-c // k)
        padded = np.zeros((a.shape[0], cp * k, *a.shape[2:]), dtype=np.uint64)
        padded[:, :c] = a
        grouped = padded.reshape(a.shape[0], cp, k, *a.shape[2:])
        out = np.zeros((a.shape[0], cp, *a.shape[2:]), dtype=np.uint64)
        for i in range(k):
            out += grouped[:, :, i] << np.uint64(int(shifts[i]))
        return reduce(out, l)

    def pack_input(self, x: np.ndarray, l: int) -> np.ndarray:
        """``C x H x W`` shares mod ``2^l`` -> ``ceil(C/k) x H x W`` shares of the packed input mod ``2^l``."""
        shifts = np.arange(self.pack) * self.slot_bits
        return self._slots(reduce(np.asarray(x), l)[None], shifts, l)[0]

    def pack_weight(self, weight: np.ndarray, l: int) -> np.ndarray:
        """``(M, C, kh, kw)`` signed weights -> ``(M, ceil(C/k), kh, kw)`` packed weights mod ``2^l``."""
        w = np.asarray(weight)
        bound = 1 << (self.weight_bits - 1)
        if w.size and int(np.abs(w.astype(np.int64)).max()) > bound:
            raise InputError(f"a weight exceeds the packing's public bound 2^{self.weight_bits - 1}")
        shifts = (self.pack - 1 - np.arange(self.pack)) * self.slot_bits
        return self._slots(reduce(w, 64), shifts, l)

    def input_polys(self, x: np.ndarray, l: int) -> np.ndarray:
        return super().input_polys(self.pack_input(x, l), l)

    def weight_values(self, weight: np.ndarray, l: int) -> tuple[np.ndarray, np.ndarray]:
        return super().weight_values(self.pack_weight(weight, l), l)
