"""IKNP OT extension (Ishai, Kilian, Nissim, Petrank, CRYPTO 2003), semi-honest: random correlated OTs.

Roles are those of the *extended* OTs.  Setup: κ = 128 base OTs in the reverse direction; the
extension sender S picks Δ ∈ {0,1}^128 and, as base-OT receiver with choices Δ_j, learns ``k_j^{Δ_j}``;
the extension receiver R, as base-OT sender, knows both ``k_j^0, k_j^1``.  ``G_j^b`` is the AES-CTR
stream keyed by ``k_j^b`` (:class:`~aiompc.crypto.streams.StreamMatrix`), read batch after batch.

A batch of ``n`` random COTs (``n`` a multiple of 128):

* R draws random choice bits ``r ∈ {0,1}^n`` and sends the 128 × n bit matrix ``U`` with rows
  ``u_j = G_j^0 ⊕ G_j^1 ⊕ r`` (exactly 16 bytes per COT; no message from S at all);
* S computes rows ``q_j = G_j^{Δ_j} ⊕ Δ_j·u_j = t_j ⊕ Δ_j·r`` where ``t_j = G_j^0``;
* both transpose (:func:`~aiompc.crypto.bitmatrix.transpose`): row ``i`` of Q is ``q_i = t_i ⊕ r_i·Δ``.

Outputs: S gets ``q_i`` (message 0) and ``Δ`` (message 1 is ``q_i ⊕ Δ``); R gets ``r_i`` and
``t_i = q_i ⊕ r_i·Δ``.  128-bit blocks are ``(n, 2)`` ``uint64`` arrays, bit ``j`` of a block is bit
``j % 64`` of word ``j // 64``.  The classes below are the pure (sans-I/O) halves of one direction;
:mod:`aiompc.protocols.ot.engine` moves their messages.  Cost per COT: 16 bytes R→S, 32 bytes of AES-CTR
output at R and 16 at S, one 128-bit transpose row on each side.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from aiompc.crypto.bitmatrix import transpose
from aiompc.crypto.hashing import blocks_from_bytes
from aiompc.crypto.prg import PRG
from aiompc.crypto.streams import StreamMatrix
from aiompc.errors import InputError, ProtocolError

__all__ = ["KAPPA", "BATCH_UNIT", "IKNPReceiver", "IKNPSender", "delta_block"]

KAPPA = 128  # computational security parameter = number of base OTs = block width
BATCH_UNIT = 128  # batch sizes are multiples of this


def _check_batch(n: int) -> None:
    if n <= 0 or n % BATCH_UNIT:
        raise InputError(f"an IKNP batch must be a positive multiple of {BATCH_UNIT} COTs, got {n}")


def delta_block(bits: np.ndarray) -> np.ndarray:
    """The 128-bit block ``(2,)`` ``uint64`` whose bit ``j`` is ``bits[j]`` (``(128,)`` 0/1 array)."""
    packed = np.packbits(np.asarray(bits, dtype=np.uint8), bitorder="little")
    return blocks_from_bytes(packed.reshape(1, 16))[0].copy()


class IKNPReceiver:
    """Extension receiver of one direction: holds both base-OT keys ``(k_j^0, k_j^1)`` of every column."""

    def __init__(self, key_pairs: Sequence[tuple[bytes, bytes]], rng: PRG) -> None:
        if len(key_pairs) != KAPPA:
            raise InputError(f"IKNP needs {KAPPA} base-OT key pairs, got {len(key_pairs)}")
        self._g0 = StreamMatrix([k0 for k0, _ in key_pairs])
        self._g1 = StreamMatrix([k1 for _, k1 in key_pairs])
        self._rng = rng

    def extend(self, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """A batch of ``n`` COTs: ``(choices (n,) uint8, t (n, 2) uint64, U (128, n/8) uint8 to send)``."""
        _check_batch(n)
        r = np.frombuffer(self._rng.random_bytes(n // 8), dtype=np.uint8)
        t_rows = self._g0.next(n // 8)
        u = np.bitwise_xor(t_rows, self._g1.next(n // 8))
        u ^= r[None, :]
        t = blocks_from_bytes(transpose(t_rows))
        choices = np.unpackbits(r, bitorder="little")
        return choices, t, u


class IKNPSender:
    """Extension sender of one direction: holds Δ and the base-OT keys ``k_j^{Δ_j}``."""

    def __init__(self, delta_bits: np.ndarray, keys: Sequence[bytes]) -> None:
        bits = np.asarray(delta_bits, dtype=np.uint8).reshape(-1)
        if bits.size != KAPPA or len(keys) != KAPPA or bits.max(initial=0) > 1:
            raise InputError(f"IKNP needs {KAPPA} Δ bits and {KAPPA} base-OT keys")
        self.delta = delta_block(bits)
        self._row_mask = (bits * np.uint8(0xFF))[:, None]  # 0xFF where Δ_j = 1
        self._g = StreamMatrix(keys)

    def extend(self, u: np.ndarray) -> np.ndarray:
        """The ``(n, 2)`` ``uint64`` blocks ``q_i`` of a batch from the receiver's ``(128, n/8)`` matrix ``U``."""
        if u.dtype != np.uint8 or u.ndim != 2 or u.shape[0] != KAPPA:
            raise ProtocolError(f"IKNP batch matrix has shape {u.shape}, expected ({KAPPA}, n/8)")
        _check_batch(8 * u.shape[1])
        q_rows = self._g.next(u.shape[1])
        q_rows ^= u & self._row_mask
        return blocks_from_bytes(transpose(q_rows))
