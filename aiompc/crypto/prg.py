"""The CSPRNG every party uses: AES-128-CTR keyed from ``os.urandom`` (or from a shared seed).

``PRG()`` draws a fresh 16-byte key from the operating system; ``PRG(seed)`` expands a 16- or 32-byte
seed deterministically, which is how two parties expand a seed they agreed on (for example the uniform
polynomial ``a`` of a symmetric RLWE ciphertext).  AES comes from the ``cryptography`` package.
``numpy.random`` is never used for anything secret.
"""

from __future__ import annotations

import hashlib
import os

import numpy as np
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from aiompc.errors import InputError

from aiompc.kernels.sampling import gaussian_from_words, take_below

__all__ = ["PRG", "SEED_BYTES"]

SEED_BYTES = 32


class PRG:
    """A stream of pseudo-random bytes from AES-128-CTR, with numpy-shaped draws.

    Not thread-safe: one instance per party (or per task); use :meth:`fork` to give a worker its own.
    """

    __slots__ = ("_enc",)

    def __init__(self, seed: bytes | None = None) -> None:
        if seed is None:
            seed = os.urandom(SEED_BYTES)
        if len(seed) not in (16, 32):
            raise InputError("PRG seed must be 16 or 32 bytes")
        key = seed if len(seed) == 16 else hashlib.sha256(b"aiompc-prg" + seed).digest()[:16]
        self._enc = Cipher(algorithms.AES(key), modes.CTR(b"\x00" * 16)).encryptor()

    def __repr__(self) -> str:  # never show key material
        return "PRG(<secret>)"

    def random_bytes(self, n: int) -> bytes:
        """``n`` pseudo-random bytes."""
        return self._enc.update(bytes(n))

    def seed(self) -> bytes:
        """A fresh 32-byte seed drawn from this stream (for a derived PRG or to send to a peer)."""
        return self.random_bytes(SEED_BYTES)

    def fork(self) -> "PRG":
        """An independent PRG keyed from this one's stream."""
        return PRG(self.seed())

    def words(self, shape: int | tuple[int, ...]) -> np.ndarray:
        """Uniform ``uint64`` words of the given shape."""
        shape = (shape,) if isinstance(shape, (int, np.integer)) else tuple(shape)
        n = int(np.prod(shape, dtype=np.int64))
        return np.frombuffer(self.random_bytes(8 * n), dtype="<u8").astype(np.uint64).reshape(shape)

    def integers(self, bits: int, shape: int | tuple[int, ...]) -> np.ndarray:
        """Uniform values in ``[0, 2**bits)`` as ``uint64``, ``0 <= bits <= 64``."""
        if not 0 <= bits <= 64:
            raise InputError(f"bits must be in 0..64, got {bits}")
        w = self.words(shape)
        if bits == 64:
            return w
        return w & np.uint64((1 << bits) - 1)

    def bits(self, shape: int | tuple[int, ...]) -> np.ndarray:
        """Uniform bits as ``uint8`` 0/1 values."""
        shape = (shape,) if isinstance(shape, (int, np.integer)) else tuple(shape)
        n = int(np.prod(shape, dtype=np.int64))
        raw = np.frombuffer(self.random_bytes((n + 7) // 8), dtype=np.uint8)
        return np.unpackbits(raw, bitorder="little")[:n].reshape(shape)

    def uniform_mod(self, modulus: int, shape: int | tuple[int, ...]) -> np.ndarray:
        """Uniform values in ``[0, modulus)``, ``2 <= modulus <= 2**63``, by rejection sampling (no bias)."""
        if not 2 <= modulus <= 1 << 63:
            raise InputError("modulus must be in 2..2**63")
        shape = (shape,) if isinstance(shape, (int, np.integer)) else tuple(shape)
        n = int(np.prod(shape, dtype=np.int64))
        bits = (modulus - 1).bit_length()
        mask, bound = np.uint64((1 << bits) - 1), np.uint64(modulus)
        out = np.empty(n, dtype=np.uint64)
        filled = 0
        while filled < n:
            need = n - filled
            filled = take_below(self.words(need + need // 2 + 16), mask, bound, out, filled)  # compiled filter
        return out.reshape(shape)

    def ternary(self, shape: int | tuple[int, ...]) -> np.ndarray:
        """Uniform values in {-1, 0, 1} as ``int64``."""
        return self.uniform_mod(3, shape).astype(np.int64) - 1

    def centered_binomial(self, eta: int, shape: int | tuple[int, ...]) -> np.ndarray:
        """Centered binomial samples with parameter ``eta`` (variance eta/2) as ``int64``."""
        shape = (shape,) if isinstance(shape, (int, np.integer)) else tuple(shape)
        n = int(np.prod(shape, dtype=np.int64))
        b = self.bits((n, 2 * eta)).astype(np.int64)
        return (b[:, :eta].sum(axis=1) - b[:, eta:].sum(axis=1)).reshape(shape)

    def gaussian(self, sigma: float, shape: int | tuple[int, ...], tail: float = 6.0) -> np.ndarray:
        """Rounded Gaussian samples with standard deviation ``sigma``, cut at ``tail*sigma``, as ``int64``.

        Box–Muller on 53-bit uniforms from the AES stream (not ``numpy.random``).
        """
        shape = (shape,) if isinstance(shape, (int, np.integer)) else tuple(shape)
        n = int(np.prod(shape, dtype=np.int64))
        out = np.empty(n, dtype=np.int64)
        gaussian_from_words(self.words((2, n)), float(sigma), float(tail), out)  # compiled, one pass
        return out.reshape(shape)
