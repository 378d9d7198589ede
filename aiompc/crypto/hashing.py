"""Hashes of the OT layer: BLAKE2b key derivation, and a fixed-key-AES correlation-robust hash.

* :func:`derive_key` hashes group elements (and whatever else identifies a base OT) to a 16-byte key,
  with BLAKE2b from :mod:`hashlib` and length-prefixed inputs (no ambiguity between concatenations).
* :func:`tccr` / :func:`tccr_expand` are the tweakable circular-correlation-robust hash of Guo, Katz,
  Wang and Yu (IEEE S&P 2020, "Efficient and secure multiparty computation from fixed-key block
  ciphers", §7): ``H(x, w) = π(π(x) ⊕ w) ⊕ π(x)`` with ``π`` AES-128 under a fixed public key, ``x`` a
  128-bit block and ``w`` a 128-bit tweak.  It turns correlated-OT blocks ``q`` and ``q ⊕ Δ`` into
  independent-looking pads as long as every (tweak, block) pair is used once.  Blocks are ``(n, 2)``
  ``uint64`` arrays (word 0 = the low 64 bits, little-endian), and every AES call is one ECB pass
  over a whole buffer: ``n·(1 + nblocks)`` AES blocks for ``n`` inputs and ``nblocks`` output blocks each.
"""

from __future__ import annotations

import hashlib

import numpy as np
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from aiompc.errors import InputError
from aiompc.kernels.ot import feed_forward, tweak_blocks

__all__ = ["derive_key", "FIXED_KEY", "aes_fixed", "tccr", "tccr_expand", "HashScratch", "blocks_from_bytes", "blocks_to_bytes"]

FIXED_KEY: bytes = hashlib.sha256(b"aiompc: fixed public AES key of the correlation-robust hash").digest()[:16]
_CIPHER = Cipher(algorithms.AES(FIXED_KEY), modes.ECB())
_BLOCK_DT = np.dtype("<u8")


def derive_key(domain: bytes, *parts: bytes, size: int = 16) -> bytes:
    """BLAKE2b over ``domain`` and ``parts`` (each length-prefixed) truncated to ``size`` bytes."""
    h = hashlib.blake2b(digest_size=size, person=b"aiompc-kdf")
    for part in (domain, *parts):
        h.update(len(part).to_bytes(4, "little"))
        h.update(part)
    return h.digest()


def blocks_from_bytes(data: np.ndarray) -> np.ndarray:
    """View an ``(n, 16)`` ``uint8`` array as ``(n, 2)`` 128-bit blocks of ``uint64`` (copying if needed)."""
    data = np.ascontiguousarray(data, dtype=np.uint8)
    return data.view(_BLOCK_DT).reshape(data.shape[0], 2).astype(np.uint64, copy=False)


def blocks_to_bytes(blocks: np.ndarray) -> np.ndarray:
    """The little-endian ``(n, 16)`` ``uint8`` form of ``(n, 2)`` ``uint64`` blocks."""
    return np.ascontiguousarray(blocks, dtype=_BLOCK_DT).view(np.uint8).reshape(-1, 16)


def aes_fixed(blocks: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """π(x): AES-128 under :data:`FIXED_KEY` of each 128-bit block; any shape ``(..., 2)`` of ``uint64``.

    ``out``: optional ``uint8`` scratch of at least ``blocks.nbytes + 16`` bytes (OpenSSL wants one spare block)
    that the result is written to and viewed from, so a caller hashing many pieces reuses one buffer (a fresh
    large buffer costs its page faults every time).
    """
    src = np.ascontiguousarray(blocks, dtype=_BLOCK_DT)
    if out is None:
        out = np.empty(src.nbytes + 16, dtype=np.uint8)
    elif out.dtype != np.uint8 or out.ndim != 1 or out.size < src.nbytes + 16 or not out.flags.c_contiguous:
        raise InputError(f"aes_fixed: out must be a contiguous uint8 buffer of at least {src.nbytes + 16} bytes")
    enc = _CIPHER.encryptor()
    written = enc.update_into(memoryview(src.reshape(-1).view(np.uint8)), memoryview(out[: src.nbytes + 16]))
    enc.finalize()
    assert written == src.nbytes
    return out[: src.nbytes].view(_BLOCK_DT).reshape(src.shape).astype(np.uint64, copy=False)


def tccr(x: np.ndarray, tweak: np.ndarray) -> np.ndarray:
    """``H(x, w) = π(π(x) ⊕ w) ⊕ π(x)`` for ``(n, 2)`` blocks ``x`` and ``(n, 2)`` tweaks ``w``."""
    px = aes_fixed(x)
    out = aes_fixed(px ^ tweak)
    out ^= px
    return out


class HashScratch:
    """Reusable buffers of :func:`tccr_expand` (its AES input and output), grown on demand.

    One per thread of work (not shared between concurrent calls); the arrays :func:`tccr_expand` returns with
    it are views into these buffers, valid until its next call.
    """

    __slots__ = ("tweaks", "output")

    def __init__(self) -> None:
        self.tweaks = np.empty((0, 2), np.uint64)
        self.output = np.empty(0, np.uint8)

    def take(self, blocks: int) -> tuple[np.ndarray, np.ndarray]:
        """``((blocks, 2) uint64 AES input, uint8 output of blocks·16 + 16 bytes)``."""
        if self.tweaks.shape[0] < blocks:
            self.tweaks = np.empty((blocks, 2), np.uint64)
            self.output = np.empty(16 * blocks + 16, np.uint8)
        return self.tweaks[:blocks], self.output[: 16 * blocks + 16]


def tccr_expand(x: np.ndarray, index: np.ndarray, nblocks: int, first: np.ndarray | None = None,
                scratch: HashScratch | None = None) -> np.ndarray:
    """``nblocks`` hash blocks per input: ``out[i, j] = H(x[i], (index[i], first[i] + j))``, shape ``(n, nblocks, 2)``.

    ``x``: ``(n, 2)`` ``uint64`` blocks; ``index``: ``(n,)`` ``uint64`` (the low tweak word, unique per
    input within a session); the high tweak word counts blocks of the output stream of ``x``, from
    ``first[i]`` (default 0) so a receiver can compute just the blocks it needs.  ``scratch``: reuse its
    buffers (the result is then a view into them, see :class:`HashScratch`).  Cost:
    ``n·(1 + nblocks)`` AES blocks.
    """
    n = x.shape[0]
    px = aes_fixed(x)
    idx = np.ascontiguousarray(index, dtype=np.uint64).reshape(n)
    start = np.zeros(n, np.uint64) if first is None else np.ascontiguousarray(first, dtype=np.uint64).reshape(n)
    if scratch is None:
        tw, buf = np.empty((n * nblocks, 2), dtype=np.uint64), None
    else:
        tw, buf = scratch.take(n * nblocks)
    tweak_blocks(px, idx, start, nblocks, tw)  # π(x) ⊕ (index, first + j), compiled
    out = aes_fixed(tw, buf)
    feed_forward(out, px, nblocks)
    return out.reshape(n, nblocks, 2)
