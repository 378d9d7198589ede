"""Cost model of one HE linear layer: the exact bytes on the wire, and a rough compute model.

Bytes are not estimated but *counted*: the model walks the same message structure as
:mod:`aiompc.protocols.linear.engine` (per unit, uploads in chunks of ``plan.chunk`` ciphertexts; results in runs
of output polynomials with equal output coefficients, at most ``plan.chunk`` each) and prices every message
with the HE core's serialized sizes (:func:`~aiompc.crypto.he.seeded_size`,
:func:`~aiompc.crypto.he.result_size`) plus the channel frame (``u16`` label length + the label) and the
transport's framing overhead.  So the model equals the channel statistics of a run byte for byte, which
``tests/protocols/linear/test_quantized_model.py`` checks on several layers.  The once-per-session public
key (``"he-keys/<fingerprint>"``) is priced separately (:func:`key_bytes`), as are the Galois keys of output
packing (``"he-galois/<fingerprint>"``, :func:`galois_key_bytes`); a packed call returns one result message
per packed group of a unit (:func:`packed_shapes`).

Per direction, for ``U`` units of ``K`` inputs and ``G`` outputs, ``N`` coefficients, ``log2 q`` bits and the
output plan's ``bits0``/``bits1``::

    upload   ≈ U·K·N·⌈log2 q⌉/8                  + per message: 21 + 33 + 4 bytes of HE header, the frame
    download ≈ U·G·N·bits1/8 + (outputs)·bits0/8  + per message: 29 bytes of HE header, the frame

Compute (CPU seconds; used to rank plans — bytes against compute — and never reported as measured): per
ciphertext costs proportional to ``N·L`` (``L`` RNS primes) with constants measured on the 2-core
development machine with ``benchmarks/linear_costs.py`` (:data:`COMPUTE`); weight preparation is included
once (the one-inference view: it is cached across samples, :mod:`aiompc.protocols.linear.weight_cache`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

import numpy as np

from aiompc.crypto.he import HEParams, OutputPlan, result_size, seeded_size
from aiompc.protocols.linear.layouts import ConvLayout, Layout, MatmulLayout

if TYPE_CHECKING:
    from aiompc.protocols.linear.plan import LinearPlan

__all__ = [
    "LayerCost", "COMPUTE", "output_counts", "wire_cost", "compute_seconds", "plan_cost", "key_bytes", "frame_bytes",
    "galois_key_bytes", "packed_shapes", "packing_switches",
]

Overhead = Callable[[int, str], int]

#: CPU seconds per ciphertext and ``N·L`` (``L`` RNS primes) of each step; key switching per ``N·L²``; decryption
#: per ``N``.  Measured with ``benchmarks/linear_costs.py`` on the 2-core development machine with the compiled
#: kernels (N = 4096 and 8192, three primes; rounded, the machine shared with other jobs).  ``refresh`` and
#: ``keyswitch`` re-measured 2026-12-05 after output packing's compiled passes, side by side with the previous
#: code (71 → 26 and 32 → 15 at N = 4096, load 8.6), and ``finalize`` with them (59–61 on both codes, against
#: the 90 of the earlier calibration: packing replaces finalizing, so the two must be on the same footing).
COMPUTE = {
    "encrypt": 55e-9,  # client, per input ciphertext
    "absorb": 55e-9,  # server: parse, expand the seed, add its share, to NTT form
    "mac": 1.0e-9,  # server: one (output, input) product-accumulate
    "finalize": 60e-9,  # server: re-randomise, flood, switch, drop, serialize
    "refresh": 26e-9,  # server, output packing: re-randomise one result before packing (b·u, a·u + e1)
    "keyswitch": 15e-9,  # server, output packing: one automorphism + key switch, per N·L² (L + L² NTTs)
    "decrypt": 47e-9,  # client, per output ciphertext and N
    "prepare": 6.5e-9,  # server, weight plaintexts to NTT form, per (output, input) pair (once per session)
}


@dataclass(frozen=True)
class LayerCost:
    """Bytes (client → server ``upload``, server → client ``download``, frames included), messages, and
    modelled compute seconds of one layer call."""

    upload: int
    download: int
    messages_up: int
    messages_down: int
    server_seconds: float
    client_seconds: float
    setup: int = 0
    """One-time bytes this call needs before it can run (the Galois keys of output packing; not in ``total``)."""
    packing_seconds: float = 0.0
    """Modelled server seconds that output packing adds to this call (part of ``server_seconds``)."""

    @property
    def total(self) -> int:
        return self.upload + self.download

    def seconds(self, bandwidth: float | None = None, rtt: float = 0.0) -> float:
        """Modelled wall time: compute of both parties plus, with ``bandwidth`` (bytes/s), the transfer time
        and one round trip (pessimistic: no overlap of compute and transfer)."""
        wire = 0.0 if bandwidth is None else self.total / bandwidth + rtt
        return wire + self.server_seconds + self.client_seconds


def frame_bytes(label: str, payload: int, overhead: Overhead | None = None, direction: str = "send") -> int:
    """Bytes the channel records for one message: ``u16`` label length, label, payload, transport framing."""
    frame = 2 + len(label.encode()) + payload
    return frame + (overhead(frame, direction) if overhead is not None else 0)


def key_bytes(params: HEParams, overhead: Overhead | None = None) -> int:
    """The once-per-session public key message for ``params``' key set (label ``he-keys/<key fingerprint>``:
    one per ``(N, primes, σ)``, whatever ``t``)."""
    return frame_bytes(f"he-keys/{params.key_fingerprint.hex()}", seeded_size(params, 1), overhead)


def output_counts(layout: Layout, unit: int) -> np.ndarray:
    """Output coefficients of each output polynomial of ``unit`` (closed form for the built-in layouts)."""
    if isinstance(layout, ConvLayout):
        t = layout.tiling
        s = t.shape
        a, b = divmod(unit, t.tiles_w)
        rows = min(t.rows_per_tile, s.out_height - a * t.rows_per_tile)
        cols = min(t.cols_per_tile, s.out_width - b * t.cols_per_tile)
        ch = np.full(t.out_groups, t.out_pack, dtype=np.int64)
        ch[-1] = s.out_channels - (t.out_groups - 1) * t.out_pack
        return ch * rows * cols
    if isinstance(layout, MatmulLayout):
        t = layout.tiling
        s = t.shape
        nr = min(t.d0, s.batch - unit * t.d0)
        nc = np.full(t.col_blocks, t.d2, dtype=np.int64)
        nc[-1] = s.out_features - (t.col_blocks - 1) * t.d2
        return nr * nc
    return np.array([layout.positions(unit, j).size for j in range(layout.outputs)], dtype=np.int64)


def _runs(counts: np.ndarray, chunk: int) -> list[tuple[int, int]]:
    """``(ciphertexts, coefficients each)`` of the result messages: runs of equal counts, ``<= chunk`` long.

    For the built-in layouts, outputs of one unit with equal counts have equal positions, so these are
    exactly :func:`aiompc.protocols.linear.engine.output_batches`.
    """
    out: list[tuple[int, int]] = []
    j = 0
    while j < counts.size:
        k = j + 1
        while k < counts.size and k - j < chunk and counts[k] == counts[j]:
            k += 1
        out.append((k - j, int(counts[j])))
        j = k
    return out


def unit_kinds(layout: Layout) -> list[tuple[int, int]]:
    """``(representative unit, number of units)`` of the distinct unit geometries (interior / edge tiles)."""
    if isinstance(layout, ConvLayout):
        t = layout.tiling
        s = t.shape
        kinds: dict[tuple[int, int], list[int]] = {}
        for a in {0, t.tiles_h - 1}:
            for b in {0, t.tiles_w - 1}:
                rows = min(t.rows_per_tile, s.out_height - a * t.rows_per_tile)
                cols = min(t.cols_per_tile, s.out_width - b * t.cols_per_tile)
                n_a = 1 if a == t.tiles_h - 1 else t.tiles_h - 1
                n_b = 1 if b == t.tiles_w - 1 else t.tiles_w - 1
                kinds.setdefault((rows, cols), [a * t.tiles_w + b, 0])[1] += n_a * n_b
        return [(u, c) for u, c in kinds.values()]
    if isinstance(layout, MatmulLayout):
        last = layout.units - 1
        return [(0, last), (last, 1)] if last else [(0, 1)]
    return [(u, 1) for u in range(layout.units)]


def _label_bytes(label: str, units: int) -> int:
    """``sum over u < units of len(f"{label}/tile{u}")`` in closed form."""
    base = len(f"{label}/tile".encode()) * units
    digits, lo = 1, 0
    while lo < units:
        hi = min(units, 10**digits)
        base += digits * (hi - lo)
        lo, digits = hi, digits + 1
    return base


def packed_shapes(layout: Layout, unit: int) -> list[tuple[int, int]]:
    """``(values, leaves)`` of each result message of ``unit`` under output packing
    (:mod:`aiompc.protocols.linear.packed`)."""
    from aiompc.protocols.linear.packed import group_shapes, packing_stride

    return group_shapes(layout, unit, packing_stride(layout), output_counts(layout, unit))


def _packed_download(layout: Layout, params: HEParams, output: OutputPlan, label: str,
                     overhead: Overhead | None) -> tuple[int, int]:
    """``(download bytes, messages)`` of a call with output packing: one result of one ciphertext per group."""
    down = msgs = 0
    for u in range(layout.units):
        lab = f"{label}/tile{u}"
        for count, _ in packed_shapes(layout, u):
            down += frame_bytes(lab, result_size(params, 1, count, output.bits0, output.bits1), overhead, "recv")
            msgs += 1
    return down, msgs


def galois_key_bytes(params: HEParams, elements: tuple[int, ...], overhead: Overhead | None = None) -> int:
    """The once-per-session Galois keys of output packing for ``elements`` of ``params`` (one message per
    element, label ``he-galois/<key fingerprint>/<g>``, one per key set ``(N, primes, σ)``): ``L`` seeded
    polynomials of ``N·⌈log2 q⌉`` bits each."""
    fp = params.key_fingerprint.hex()
    return sum(frame_bytes(f"he-galois/{fp}/{g}", seeded_size(params, params.levels), overhead) for g in elements)


def wire_cost(layout: Layout, params: HEParams, output: OutputPlan, chunk: int, label: str = "layer",
              overhead: Overhead | None = None, packing: bool = False) -> tuple[int, int, int, int]:
    """``(upload, download, messages up, messages down)`` bytes of one call under ``label`` (exact).

    Units of equal geometry send equal messages, so each kind of unit is priced once; the frame's label
    (``f"{label}/tile{u}"``) is summed in closed form.  With a transport ``overhead`` every message is
    priced individually.  ``packing``: the results are packed (:func:`packed_shapes` per unit).
    """
    k = layout.inputs
    sizes = [min(chunk, k - k0) for k0 in range(0, k, chunk)]
    up_payload = sum(seeded_size(params, b) for b in sizes)
    if packing:
        down, m_down = _packed_download(layout, params, output, label, overhead)
        up, _, m_up, _ = wire_cost(layout, params, output, chunk, label, overhead)
        return up, down, m_up, m_down
    down_payload = 0
    runs_per_unit = 0
    for u, count in unit_kinds(layout):
        runs = _runs(output_counts(layout, u), chunk)
        runs_per_unit = len(runs)  # the same for every unit (runs split where the channel count changes)
        down_payload += count * sum(result_size(params, c, w, output.bits0, output.bits1) for c, w in runs)
    units = layout.units
    m_up, m_down = units * len(sizes), units * runs_per_unit
    if overhead is None:
        labels = 2 * units + _label_bytes(label, units)
        up = units * up_payload + len(sizes) * labels
        down = down_payload + runs_per_unit * labels
        return up, down, m_up, m_down
    up = down = 0
    for u in range(units):
        lab = f"{label}/tile{u}"
        up += sum(frame_bytes(lab, seeded_size(params, b), overhead, "send") for b in sizes)
        for c, w in _runs(output_counts(layout, u), chunk):
            down += frame_bytes(lab, result_size(params, c, w, output.bits0, output.bits1), overhead, "recv")
    return up, down, m_up, m_down


def packing_switches(layout: Layout) -> tuple[int, int]:
    """``(key switches, packed ciphertexts)`` of one call with output packing (``2^ℓ − 1`` per group)."""
    switches = groups = 0
    for u, count in unit_kinds(layout):
        shapes = packed_shapes(layout, u)
        switches += count * sum((1 << (leaves - 1).bit_length()) - 1 for _, leaves in shapes)
        groups += count * len(shapes)
    return switches, groups


def compute_seconds(layout: Layout, params: HEParams, macs: int | None = None,
                    packing: bool = False) -> tuple[float, float]:
    """Modelled ``(server, client)`` seconds (see :data:`COMPUTE`); ``macs`` defaults to all products.
    With ``packing`` every output ciphertext is re-randomised (``refresh``, instead of finished), then each
    packed group costs its key switches (``N·L²`` each) and one finishing, and the client decrypts one
    ciphertext per group."""
    n, levels = params.n, params.levels
    cts_in = layout.units * layout.inputs
    cts_out = layout.units * layout.outputs
    products = cts_out * layout.inputs if macs is None else macs
    nl = n * levels
    server = nl * (cts_in * COMPUTE["absorb"] + products * (COMPUTE["mac"] + COMPUTE["prepare"])
                   + cts_out * COMPUTE["finalize"])
    decrypted = cts_out
    if packing:
        switches, groups = packing_switches(layout)
        server += nl * (cts_out * (COMPUTE["refresh"] - COMPUTE["finalize"]) + groups * COMPUTE["finalize"]
                        + switches * levels * COMPUTE["keyswitch"])
        decrypted = groups
    client = cts_in * nl * COMPUTE["encrypt"] + decrypted * n * COMPUTE["decrypt"]
    return server, client


def plan_cost(plan: "LinearPlan", label: str = "layer", overhead: Overhead | None = None) -> LayerCost:
    """The :class:`LayerCost` of a :class:`~aiompc.protocols.linear.plan.LinearPlan` called under ``label``."""
    up, down, m_up, m_down = wire_cost(plan.layout, plan.he, plan.output, plan.chunk, label, overhead,
                                       plan.output_packing)
    server, client = compute_seconds(plan.layout, plan.he, packing=plan.output_packing)
    return LayerCost(up, down, m_up, m_down, server, client)
