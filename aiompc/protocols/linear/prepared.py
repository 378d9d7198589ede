"""The server's weights of one linear layer, ready for multiply-accumulate — whole or streamed.

The engine multiplies each input chunk ``k0..k1`` of the client's ciphertexts by the NTT-form weight
plaintexts ``w[:, k0:k1]`` (:func:`aiompc.protocols.linear.engine.absorb_chunk`).  Holding every weight plaintext
of a layer at once costs ``outputs × inputs × L × N × 4`` bytes (``uint32`` residues): for a ResNet-50 layer
under Cheetah's parameters (1×1, stride 2, 256×56×56 → 512: 512 × 256 ciphertexts, four primes, N = 4096)
that is 8.6 GB.  The weight *coefficients*, however, are sparse and public in position: a layout puts them at
``E`` known exponents (:meth:`~aiompc.protocols.linear.layouts.Layout.weight_exponents`), ``E`` often far below
``N``.  So :class:`PreparedWeights` always keeps the compact coefficients ``(outputs, inputs, E)`` and

* transforms them all at once when the NTT form fits ``max_bytes`` (the common case: computed once,
  then every unit and sample reuses it), or
* transforms only the block ``[:, k0:k1]`` that a chunk needs, when it is asked for, in blocks of output
  rows of at most :data:`BLOCK_MAX_BYTES` (the NTTs are then redone for every spatial unit and sample,
  which for the layers concerned — wide channels, small images — means few units).

The public noise inputs (largest centered coefficient ``norm``, most non-zeros per polynomial ``count``)
are computed from all the coefficients up front, so a streamed block carries the same bound as the
whole.  Nothing here depends on the client's data; everything is the server's own.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from aiompc.crypto.he import HEParams, PlainNTT
from aiompc.errors import InputError
from aiompc.protocols.linear.plan import LinearPlan
from aiompc.protocols.linear.plaintexts import centered, weight_plaintexts
from aiompc.protocols.linear.weight_cache import weight_digest

__all__ = ["PreparedWeights", "prepare_weights", "prepared_nbytes", "distinct_exponents", "weight_key", "WHOLE_MAX_BYTES", "BLOCK_MAX_BYTES"]

WHOLE_MAX_BYTES = 1 << 29
"""Above this size (of the NTT form of all of a layer's weight plaintexts) weights are streamed per chunk: a layer
prepared per inference holds at most this much at once (what bounds a ResNet-50 server's peak memory, beside
the model's pinned plaintexts)."""
BLOCK_MAX_BYTES = 1 << 25
"""A streamed chunk is transformed in blocks of output rows of at most this size (NTT form), all threads together
(the transform's temporaries are a few times this)."""
_ITEM = 4  # bytes per residue of the NTT form (uint32: PlainNTT)


@dataclass(frozen=True)
class PreparedWeights:
    """A layer's weight plaintexts: compact coefficients plus, if it fits, their whole NTT form.

    ``values``: ``(outputs, inputs, E)`` integers mod ``t`` at the public exponents ``exps``;
    ``nonzero``: ``(outputs, inputs)``, False where a block is structurally zero (groups);
    ``norm`` / ``count``: the noise estimator's inputs over all blocks; ``whole``: every block in NTT
    form, or ``None`` when blocks are transformed on demand (:meth:`block`).
    """

    params: HEParams
    values: np.ndarray
    exps: np.ndarray
    nonzero: np.ndarray
    norm: int
    count: int
    whole: PlainNTT | None

    @property
    def streamed(self) -> bool:
        return self.whole is None

    @property
    def nbytes(self) -> int:
        """Bytes held (what a :class:`~aiompc.protocols.linear.weight_cache.WeightCache` charges for the entry)."""
        held = self.values.nbytes + self.nonzero.nbytes + self.exps.nbytes
        return held + (self.whole.data.nbytes if self.whole is not None else 0)

    def row_blocks(self, k0: int, k1: int, lo: int = 0, hi: int | None = None, *, parts: int = 1) -> list[tuple[int, int]]:
        """Output-row ranges ``(j0, j1)`` covering rows ``lo .. hi`` (all by default) in which to take the chunk
        of inputs ``k0..k1``: the whole range at once when the weights are whole, else blocks whose NTT form
        stays within ``BLOCK_MAX_BYTES / parts`` (a chunk of a very wide layer, e.g. 2048 outputs × 8 inputs,
        would otherwise be transformed whole; ``parts`` threads each transform one block at a time, so the
        bound holds for all of them together)."""
        outputs = self.nonzero.shape[0]
        hi = outputs if hi is None else hi
        if not 0 <= lo <= hi <= outputs or parts < 1:
            raise InputError(f"rows {lo}..{hi} of {outputs} (parts {parts}) are not a range of the layer")
        if self.whole is not None:
            return [(lo, hi)] if hi > lo else []
        per_row = max(1, k1 - k0) * len(self.params.primes) * self.params.n * _ITEM
        rows = max(1, BLOCK_MAX_BYTES // parts // per_row)
        return [(j0, min(j0 + rows, hi)) for j0 in range(lo, hi, rows)]

    def block(self, k0: int, k1: int, j0: int = 0, j1: int | None = None) -> tuple[PlainNTT, np.ndarray]:
        """NTT plaintexts ``w[j0:j1, k0:k1]`` (batch shape ``(j1 - j0, k1 - k0)``, all rows by default) and
        their ``nonzero`` mask; transformed now if the weights are streamed (structurally zero blocks stay
        zero, untransformed)."""
        rows = slice(j0, j1)
        mask = self.nonzero[rows, k0:k1]
        if self.whole is not None:
            data = self.whole.data[rows, k0:k1]
        else:
            data = weight_plaintexts(self.params, self.values[rows, k0:k1], self.exps, mask).data
        return PlainNTT(self.params, data, self.norm, self.count), mask


def _centered_stats(params: HEParams, values: np.ndarray, nonzero: np.ndarray) -> tuple[int, int]:
    """``(max |centered coefficient|, max non-zeros in one polynomial)`` over the non-structural blocks."""
    v = values[nonzero] if not np.all(nonzero) else values.reshape(-1, values.shape[-1])
    if v.size == 0:
        return 0, 0
    c = centered(params, v)
    return int(np.abs(c).max()), int(np.count_nonzero(c, axis=-1).max())


def weight_key(plan: LinearPlan, weight: np.ndarray) -> tuple[object, ...]:
    """The :class:`~aiompc.protocols.linear.weight_cache.WeightCache` key of ``weight`` prepared under ``plan``:
    what the prepared plaintexts depend on (the weight bytes, the layout, the HE parameters, the weight bound)."""
    return (weight_digest(np.asarray(weight)), plan.layout, plan.he, plan.weight_bits)


def prepared_nbytes(plan: LinearPlan, *, max_bytes: int | None = None) -> int:
    """An upper bound of :attr:`PreparedWeights.nbytes` of a layer under ``plan`` (its NTT form if that fits
    ``max_bytes``, else its compact coefficients), from the public layout alone: lets a caller with a memory
    budget skip a layer without transforming it."""
    lay, params = plan.layout, plan.he
    blocks = lay.outputs * lay.inputs
    compact = blocks * (np.asarray(lay.weight_exponents()).size * 8 + 1) + np.asarray(lay.weight_exponents()).size * 8
    whole = blocks * len(params.primes) * params.n * _ITEM
    return compact + (whole if whole <= (WHOLE_MAX_BYTES if max_bytes is None else max_bytes) else 0)


def distinct_exponents(values: np.ndarray, exps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(values[..., keep], exps[keep])`` with every exponent once: the *last* value of a repeated exponent,
    as the layout's dense polynomial holds it (:func:`~aiompc.protocols.linear.encoding.scatter_coefficients`
    writes later taps over earlier ones).

    A compact tile narrower than the kernel (e.g. ``W = 1``, 3×3 kernel, padding 1: row pitch 2 < 3) maps the
    taps that read the unstored right padding onto the exponents of the next row's left-padding taps; both
    only ever meet zeros or non-output coefficients, so either value gives the same outputs.  Kept twice they
    cost work (values, scatter, the matrix path's columns) and the matrix path would *add* the two values,
    a plaintext the noise bound (computed from single values) does not describe."""
    exps = np.asarray(exps, dtype=np.int64).reshape(-1)
    if exps.size == np.unique(exps).size:
        return values, exps
    _, last_in_reversed = np.unique(exps[::-1], return_index=True)
    keep = np.sort(exps.size - 1 - last_in_reversed)
    return np.ascontiguousarray(values[..., keep]), exps[keep]


def prepare_weights(plan: LinearPlan, weight: np.ndarray, *, max_bytes: int | None = None) -> PreparedWeights:
    """Server: the layout's weight plaintexts under ``plan`` (whole if their NTT form fits ``max_bytes``,
    default :data:`WHOLE_MAX_BYTES` read at call time, else streamed per chunk; see the module docstring).

    Raises :class:`InputError` if a weight exceeds the plan's public bound ``2^(weight_bits - 1)``.
    """
    params = plan.he
    values, nonzero = plan.layout.weight_values(weight, plan.l)
    values, exps = distinct_exponents(values, plan.layout.weight_exponents())
    norm, count = _centered_stats(params, values, nonzero)
    bound = 1 << (plan.weight_bits - 1)
    if norm > bound:
        raise InputError(
            f"a weight has magnitude {norm} > 2^{plan.weight_bits - 1}, the public bound of the plan: "
            f"pass a larger weight_bits (both parties must agree on it)"
        )
    whole_bytes = nonzero.size * len(params.primes) * params.n * _ITEM
    whole = None
    if whole_bytes <= (WHOLE_MAX_BYTES if max_bytes is None else max_bytes):
        w = weight_plaintexts(params, values, exps, nonzero)
        whole = PlainNTT(params, w.data, norm, count)
    return PreparedWeights(params, values, exps, nonzero, norm, count, whole)
