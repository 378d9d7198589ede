"""The LPN step of Ferret: ``y = A·u ⊕ e`` with a public local linear code, streamed in chunks.

The code ``A`` is an ``n × k`` matrix over GF(2) with ``d`` (= 10) non-zeros per row.  Row ``i``'s
column indices are ``idx(i, j) = ⌊w_{i·d + j} · k / 2^32⌋`` for ``j < d``, where ``w_0, w_1, …`` are the
little-endian 32-bit words of the AES-128-CTR stream keyed by the code's 16-byte public ``seed`` (counter
starting at 0).  Multiply-shift maps a word into ``[0, k)`` with a relative bias below ``k / 2^32``
(< 2^-12 for the published sets), which is immaterial for a public random code.  Repeated indices in a
row are allowed (they cancel, exactly as in the reference implementation's modular reduction).

Applied to 128-bit blocks (correlated-OT keys and MACs): ``out[i] ^= XOR_j table[idx(i, j)]`` for every
row, in place.  Because the code is GF(2)-linear, the same call on the sender's keys and on the
receiver's MACs keeps the correlation ``MAC = key ⊕ bit·Δ``; with the choice bits kept in the blocks'
least significant bits (see :mod:`aiompc.crypto.ferret.spcot`) the receiver's bits come along for free.

Streaming: rows are processed in chunks (default 2^12 rows): per chunk one AES-CTR call generates the
index words (``d·4`` bytes per row; one CTR stream started at the first row's byte offset), then one compiled
pass (:func:`aiompc.kernels.lpn.lpn_encode_rows`, releasing the GIL) maps them to columns, gathers the
16-byte items and XORs them into the output.  Scratch memory is ``chunk·d·4`` bytes whatever ``n``.
Cost per output block: ``d`` random 16-byte reads from the ``16·k``-byte table and ``d`` XORs.
"""

from __future__ import annotations

import numpy as np
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from aiompc.crypto.ferret.blocks import BLOCK_BYTES
from aiompc.errors import InputError
from aiompc.kernels.lpn import PREFETCH_AHEAD, PREFETCH_MIN_TABLE_BYTES, lpn_encode_rows
from aiompc.kernels.threads import run_parts

__all__ = ["LocalLinearCode", "CHUNK_ROWS"]

CHUNK_ROWS = 1 << 12  # with d = 10: 160 KiB of index words and 64 KiB of output blocks per chunk, in L2


class LocalLinearCode:
    """The public ``n × k`` code with ``d`` pseudo-random non-zeros per row, given by a 16-byte seed."""

    __slots__ = ("seed", "k", "d")

    def __init__(self, seed: bytes, k: int, d: int) -> None:
        if len(seed) != 16:
            raise InputError(f"the LPN code seed must be 16 bytes, got {len(seed)}")
        if not 1 <= k < 2**31 or not 1 <= d <= 64:
            raise InputError(f"LPN code needs 1 <= k < 2^31 and 1 <= d <= 64, got k={k}, d={d}")
        self.seed = bytes(seed)
        self.k = k
        self.d = d

    def __repr__(self) -> str:
        return f"LocalLinearCode(k={self.k}, d={self.d}, seed={self.seed.hex()})"

    def _stream(self, start_row: int, rows: int, raw: np.ndarray, zeros: bytes) -> np.ndarray:
        """The ``rows·d`` index words of rows ``start_row..``, as a ``(rows, d)`` uint32 view of ``raw``."""
        offset = start_row * self.d * 4
        skip = offset % BLOCK_BYTES
        counter = (offset // BLOCK_BYTES).to_bytes(BLOCK_BYTES, "big")
        enc = Cipher(algorithms.AES(self.seed), modes.CTR(counter)).encryptor()
        nbytes = skip + rows * self.d * 4
        enc.update_into(zeros[:nbytes], raw)
        return raw[skip : skip + rows * self.d * 4].view("<u4").reshape(rows, self.d)

    def indices(self, start_row: int, rows: int) -> np.ndarray:
        """Column indices of rows ``start_row .. start_row + rows - 1``, shape ``(rows, d)``, int64."""
        if start_row < 0 or rows < 0:
            raise InputError("row range must be non-negative")
        nbytes = 2 * BLOCK_BYTES + rows * self.d * 4
        raw = np.empty(nbytes, np.uint8)
        words = self._stream(start_row, rows, raw, bytes(nbytes))
        return (words.astype(np.int64) * self.k) >> 32

    def encode_into(
        self, table: np.ndarray, out: np.ndarray, *, start_row: int = 0, chunk_rows: int = CHUNK_ROWS, parts: int = 1
    ) -> None:
        """In place, for every row ``i`` of ``out``: ``out[i] ^= XOR_{j<d} table[idx(start_row + i, j)]``.

        Args:
            table: ``(k, 2)`` uint64 blocks (the reserved keys or MACs ``u``), C-contiguous.
            out: ``(rows, 2)`` uint64 blocks, C-contiguous, holding ``e`` (the single-point COT
                outputs) on entry and ``A·u ⊕ e`` on return.
            start_row: the code row of ``out[0]`` (to process a long output in independent pieces).
            chunk_rows: rows per chunk (memory ~ ``chunk_rows·(12·d + 16)`` bytes of scratch).
            parts: cut the rows into this many ranges encoded in parallel threads (same result; each
                range runs its own CTR stream from its first row's offset).
        """
        if table.shape != (self.k, 2) or table.dtype != np.uint64 or not table.flags.c_contiguous:
            raise InputError(f"LPN table must be a C-contiguous ({self.k}, 2) uint64 array, got {table.dtype} {table.shape}")
        if out.ndim != 2 or out.shape[1] != 2 or out.dtype != np.uint64 or not out.flags.c_contiguous:
            raise InputError(f"LPN output must be a C-contiguous (n, 2) uint64 array, got {out.dtype} {out.shape}")
        if start_row < 0 or chunk_rows < 1 or parts < 1:
            raise InputError("start_row must be >= 0, chunk_rows >= 1 and parts >= 1")

        def part(lo: int, hi: int) -> None:
            self._encode_range(table, out[lo:hi], start_row + lo, chunk_rows)

        run_parts(part, out.shape[0], parts, align=chunk_rows)

    def _encode_range(self, table: np.ndarray, out: np.ndarray, start_row: int, chunk_rows: int) -> None:
        """:meth:`encode_into` of one range of rows in this thread."""
        rows_total = out.shape[0]
        d = self.d
        chunk = min(chunk_rows, max(rows_total, 1))
        raw = np.empty(2 * BLOCK_BYTES + chunk * d * 4, np.uint8)
        zeros = memoryview(bytes(chunk * d * 4))
        ahead = PREFETCH_AHEAD if table.nbytes >= PREFETCH_MIN_TABLE_BYTES else 0
        # one CTR stream for all chunks (they are consecutive), started at the first row's byte offset
        offset = start_row * d * 4
        counter = (offset // BLOCK_BYTES).to_bytes(BLOCK_BYTES, "big")
        enc = Cipher(algorithms.AES(self.seed), modes.CTR(counter)).encryptor()
        enc.update(bytes(offset % BLOCK_BYTES))
        for r0 in range(0, rows_total, chunk):
            m = min(chunk, rows_total - r0)
            nbytes = m * d * 4
            enc.update_into(zeros[:nbytes], raw)
            words = raw[:nbytes].view("<u4").reshape(m, d)
            lpn_encode_rows(words, self.k, table, out[r0 : r0 + m], ahead)
