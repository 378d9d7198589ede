"""Multi-point correlated OT over ``t`` bins: one GGM-tree single-point COT per bin (pure math, no I/O).

Correlation convention (the whole Ferret engine): the sender holds a global ``Δ`` whose least
significant bit is 1 and keys ``K`` with least significant bit 0; the receiver holds
``M = K ⊕ b·Δ``, so its choice bit ``b`` is the least significant bit of ``M`` (the LSB trick of the
reference implementation: GF(2)-linear maps then carry the bits along with the blocks for free).

Protocol for bins of ``2**h`` (semi-honest), consuming ``t·h`` reserved COTs ``(K_j; b_j, M_j)``, the
``j = i·h + (l - 1)``-th one for tree ``i``, level ``l``:

1. sender: random roots; expands every tree (:func:`~aiompc.crypto.ferret.ggm.expand`) with leaf LSBs
   cleared, giving ``v`` and the level sums ``S[l, side, i]``; sends for every tree and level the two pads
   ``S[l, 0, i] ⊕ H(K_j, τ_j)`` and ``S[l, 1, i] ⊕ H(K_j ⊕ Δ, τ_j)`` (``H`` the TCCR hash of
   :mod:`aiompc.crypto.hashing`, ``τ_j`` a tweak unique in the session, see :func:`tweaks`), and per tree the correction ``c_i = Δ ⊕ XOR(tree i's leaves)``.
2. receiver: its random choice bit ``b_j`` selects the off-path side: ``α_l = 1 - b_j``, so the punctured
   leaf ``α_i`` is uniform in its bin and needs no message from the receiver.  It unmasks
   ``S[l, b_j, i] = pad_{b_j} ⊕ H(M_j, τ_j)``, rebuilds all leaves but ``α_i``
   (:func:`~aiompc.crypto.ferret.ggm.expand_punctured`) and sets ``w[α_i] = c_i ⊕ XOR(its other leaves)
   = v[α_i] ⊕ Δ``.

Result: ``w = v ⊕ e·Δ`` with ``e`` the regular noise vector (one 1 per bin, at ``i·2**h + α_i``), and the
LSB convention holds for ``v`` (0) and ``w`` (``e``).  Message: ``16·t·(2h + 1)`` bytes, sender to
receiver, one flow.  Cost: ``2·2**h`` AES blocks per tree on each side plus ``4·t·h`` for the hashes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from aiompc.crypto.ferret.blocks import lsb
from aiompc.crypto.ferret.ggm import expand, expand_punctured
from aiompc.crypto.hashing import tccr
from aiompc.errors import InputError, ProtocolError

__all__ = ["MpcotMessage", "mpcot_send", "mpcot_receive", "tweaks", "punctured_positions", "TWEAK_DOMAIN"]


@dataclass(frozen=True)
class MpcotMessage:
    """What the sender sends: ``pads`` ``(t, h, 2, 2)`` and ``corrections`` ``(t, 2)``, uint64 blocks."""

    pads: np.ndarray
    corrections: np.ndarray

    def to_array(self) -> np.ndarray:
        """One ``(t·(2h + 1), 2)`` uint64 array for the wire: the pads, then the corrections."""
        t = self.corrections.shape[0]
        return np.concatenate([self.pads.reshape(-1, 2), self.corrections]).reshape(t * (2 * self.pads.shape[1] + 1), 2)

    @classmethod
    def from_array(cls, data: np.ndarray, t: int, h: int) -> "MpcotMessage":
        """Parse :meth:`to_array` output; :class:`ProtocolError` if the shape is wrong."""
        data = np.asarray(data)
        if data.dtype != np.uint64 or data.shape != (t * (2 * h + 1), 2):
            raise ProtocolError(
                f"malformed single-point COT message: expected ({t * (2 * h + 1)}, 2) uint64, got {data.dtype} {data.shape}"
            )
        return cls(data[: 2 * t * h].reshape(t, h, 2, 2), data[2 * t * h :])


TWEAK_DOMAIN = 0xFE77 << 48
"""High bits of the second tweak word of every hash inside the engine.  The flavours hash handed-out COTs
with tweaks ``(pool index, block counter)`` whose second word is small, so the two domains never meet."""


def tweaks(count: int, nonce: int) -> np.ndarray:
    """TCCR tweaks ``(j, TWEAK_DOMAIN | nonce)`` for ``j < count``.

    ``nonce`` (< 2^48) must never repeat within a session: the engine uses one per extension and direction.
    """
    if not 0 <= nonce < 1 << 48:
        raise InputError(f"tweak nonce must be in [0, 2^48), got {nonce}")
    tw = np.empty((count, 2), np.uint64)
    tw[:, 0] = np.arange(count, dtype=np.uint64)
    tw[:, 1] = np.uint64(TWEAK_DOMAIN | nonce)
    return tw


def _check(blocks: np.ndarray, rows: int, what: str) -> None:
    if blocks.shape != (rows, 2) or blocks.dtype != np.uint64:
        raise InputError(f"{what} must be a ({rows}, 2) uint64 block array, got {blocks.dtype} {blocks.shape}")


def mpcot_send(
    delta: np.ndarray,
    roots: np.ndarray,
    keys: np.ndarray,
    log_bin: int,
    nonce: int,
    *,
    out: np.ndarray | None = None,
    parts: int = 1,
) -> tuple[np.ndarray, MpcotMessage]:
    """Sender's side of ``t`` single-point COTs.

    Args:
        delta: ``(2,)`` uint64, the global ``Δ`` (LSB 1).
        roots: ``(t, 2)`` fresh secret GGM roots.
        keys: ``(t·h, 2)`` reserved COT keys ``K_j`` (LSB 0).
        log_bin: ``h``.
        nonce: per-extension tweak component (never reused in a session).
        out: optional ``(t·2**h, 2)`` buffer for ``v``.
        parts: threads the tree expansion is split over (:func:`~aiompc.crypto.ferret.ggm.expand`).

    Returns:
        ``(v, message)``: ``v`` the ``(t·2**h, 2)`` sender output (LSB 0) and the message to send.
    """
    t = roots.shape[0]
    _check(roots, t, "GGM roots")
    _check(keys, t * log_bin, "reserved keys")
    if delta.shape != (2,) or not int(delta[0]) & 1:
        raise InputError("Δ must be a (2,) uint64 block with least significant bit 1")
    trees = expand(roots, log_bin, out=out, clear_lsb=True, parts=parts)
    tw = tweaks(t * log_bin, nonce)
    h0 = tccr(keys, tw)
    h1 = tccr(keys ^ delta, tw)
    sums = trees.level_sums.transpose(2, 0, 1, 3)  # (t, h, side, 2)
    pads = np.empty((t, log_bin, 2, 2), np.uint64)
    np.bitwise_xor(sums[:, :, 0], h0.reshape(t, log_bin, 2), out=pads[:, :, 0])
    np.bitwise_xor(sums[:, :, 1], h1.reshape(t, log_bin, 2), out=pads[:, :, 1])
    corrections = trees.leaf_sums() ^ delta
    return trees.leaves, MpcotMessage(pads, corrections)


def punctured_positions(macs: np.ndarray, t: int, log_bin: int) -> np.ndarray:
    """The in-bin punctured index ``α_i`` defined by the receiver's reserved choice bits, ``(t,)`` int64.

    ``α_l = 1 - b_{i·h + l - 1}`` for level ``l = 1..h`` (level 1 is the most significant bit).
    """
    alpha_bits = (1 - lsb(macs).reshape(t, log_bin)).astype(np.int64)
    weights = np.left_shift(1, np.arange(log_bin - 1, -1, -1, dtype=np.int64))
    return alpha_bits @ weights


def mpcot_receive(
    macs: np.ndarray,
    message: MpcotMessage,
    log_bin: int,
    nonce: int,
    *,
    out: np.ndarray | None = None,
    parts: int = 1,
) -> tuple[np.ndarray, np.ndarray]:
    """Receiver's side of ``t`` single-point COTs.

    Args:
        macs: ``(t·h, 2)`` reserved COT MACs ``M_j = K_j ⊕ b_j·Δ`` (choice bit ``b_j`` = LSB).
        message: the sender's :class:`MpcotMessage`.
        log_bin, nonce, out, parts: as for :func:`mpcot_send`.

    Returns:
        ``(w, alpha)``: ``w`` the ``(t·2**h, 2)`` output with ``w = v ⊕ e·Δ`` and ``alpha`` the ``(t,)``
        in-bin noise positions (the noise is at ``i·2**h + alpha[i]``).
    """
    t = message.corrections.shape[0]
    _check(macs, t * log_bin, "reserved MACs")
    if message.pads.shape != (t, log_bin, 2, 2):
        raise ProtocolError(f"single-point COT pads have shape {message.pads.shape}, expected {(t, log_bin, 2, 2)}")
    choice = lsb(macs).reshape(t, log_bin).astype(np.intp)
    alpha = punctured_positions(macs, t, log_bin)
    hashed = tccr(macs, tweaks(t * log_bin, nonce)).reshape(t, log_bin, 2)
    tt, ll = np.meshgrid(np.arange(t), np.arange(log_bin), indexing="ij")
    chosen = message.pads[tt, ll, choice]  # (t, h, 2)
    received = (chosen ^ hashed).transpose(1, 0, 2)  # (h, t, 2)
    trees = expand_punctured(alpha, np.ascontiguousarray(received), log_bin, out=out, clear_lsb=True, parts=parts)
    w = trees.leaves
    positions = (np.arange(t, dtype=np.int64) << log_bin) + alpha
    w[positions] = message.corrections ^ trees.leaf_sums()
    return w, alpha
