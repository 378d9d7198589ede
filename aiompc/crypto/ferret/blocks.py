"""128-bit blocks as numpy arrays, and fixed-key AES over many blocks at once.

A *block* is 16 bytes held as two little-endian ``uint64`` words ``(lo, hi)``; an array of ``n``
blocks has shape ``(n, 2)`` and dtype ``uint64`` (C-contiguous unless stated).  The block's least
significant bit is bit 0 of ``lo``: Ferret keeps the receiver's choice bit there (see
:mod:`aiompc.crypto.ferret.spcot`).

:class:`FixedKeyAES` runs AES-128-ECB from ``cryptography`` (AES-NI in OpenSSL) over such arrays in
cache-sized chunks written into preallocated buffers: fresh multi-megabyte buffers cost page faults
that are slower than the AES itself on this kind of machine.
"""

from __future__ import annotations

import hashlib

import numpy as np
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from aiompc.errors import InputError
from aiompc.kernels.blocks import xor_blocks_into

__all__ = ["BLOCK_BYTES", "FixedKeyAES", "lsb", "public_key", "V16"]

BLOCK_BYTES = 16
V16 = np.dtype("V16")
"""Opaque 16-byte items: the dtype used to gather whole blocks with ``np.take``."""

_CHUNK_BLOCKS = 1 << 14  # 256 KiB per AES call: stays in L2, far from the page-fault regime


def public_key(label: str) -> bytes:
    """A nothing-up-my-sleeve 16-byte AES key: ``SHA-256("aiompc/ferret/" + label)[:16]``."""
    return hashlib.sha256(b"aiompc/ferret/" + label.encode()).digest()[:16]


def lsb(blocks: np.ndarray) -> np.ndarray:
    """The least significant bit of every block, as ``uint8`` 0/1, shape ``(n,)``."""
    return blocks[:, 0].astype(np.uint8) & np.uint8(1)  # truncation keeps bit 0: one pass over the words


class FixedKeyAES:
    """AES-128 with one fixed (public) key, applied block-wise to ``(n, 2)`` uint64 arrays.

    Not thread-safe (it keeps one scratch buffer); give each thread its own instance.
    """

    __slots__ = ("_enc", "_scratch")

    def __init__(self, key: bytes) -> None:
        if len(key) != 16:
            raise InputError("FixedKeyAES takes a 16-byte key")
        self._enc = Cipher(algorithms.AES(key), modes.ECB()).encryptor()
        self._scratch = np.empty(0, dtype=np.uint8)

    def _buffer(self, nbytes: int) -> np.ndarray:
        if self._scratch.size < nbytes + BLOCK_BYTES:
            self._scratch = np.empty(nbytes + BLOCK_BYTES, dtype=np.uint8)
        return self._scratch

    def encrypt(self, x: np.ndarray) -> np.ndarray:
        """``AES_key(x)`` for every block of ``x`` (shape ``(n, 2)``), as a new array."""
        out = np.empty_like(x)
        self.xor_encrypt_into(x, out, feed_forward=False)
        return out

    def encrypt_into(self, x: np.ndarray, out: np.ndarray) -> None:
        """``out[:n] = AES_key(x)`` for the ``n`` blocks of ``x``, straight into ``out`` (no scratch copy).

        ``x``: contiguous ``(n, 2)`` uint64; ``out``: a C-contiguous ``(>= n + 1, 2)`` uint64 array (OpenSSL's
        ``update_into`` wants one spare block of room); rows from ``n`` on are left unspecified.  Cost: ``n``
        AES blocks in one ECB call.
        """
        n = x.shape[0]
        if out.shape[0] < n + 1 or not out.flags.c_contiguous:
            raise InputError("encrypt_into needs a C-contiguous output with one spare block")
        src = np.ascontiguousarray(x).reshape(-1).view(np.uint8)
        self._enc.update_into(src, out.reshape(-1).view(np.uint8)[: src.size + BLOCK_BYTES])

    def xor_encrypt_into(self, x: np.ndarray, out: np.ndarray, *, feed_forward: bool = True) -> None:
        """``out = AES_key(x) ⊕ x`` (Davies–Meyer style; ``AES_key(x)`` if not ``feed_forward``).

        ``x`` is a contiguous ``(n, 2)`` uint64 array; ``out`` any writable ``(n, 2)`` uint64 view (it
        may be strided, e.g. every other child of a tree level) but must not overlap ``x``.
        Cost: ``n`` AES blocks and one pass of XOR, in chunks of 2^14 blocks.
        """
        src = np.ascontiguousarray(x).reshape(-1).view(np.uint8)
        step = _CHUNK_BLOCKS * BLOCK_BYTES
        buf = self._buffer(min(src.size, step))
        for start in range(0, src.size, step):
            stop = min(start + step, src.size)
            nb = stop - start
            self._enc.update_into(src[start:stop], buf)
            enc = buf[:nb].view(np.uint64).reshape(-1, 2)
            b0, b1 = start // BLOCK_BYTES, stop // BLOCK_BYTES
            if feed_forward:
                xor_blocks_into(enc, x[b0:b1], out[b0:b1])  # out may be strided: a compiled row loop
            else:
                out[b0:b1] = enc
