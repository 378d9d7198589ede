"""Plain-Python references for the Ferret math (slow, obviously correct, small sizes only)."""

from __future__ import annotations

import struct

import numpy as np
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from aiompc.crypto.ferret.blocks import public_key


def aes_block(key: bytes, block: bytes) -> bytes:
    enc = Cipher(algorithms.AES(key), modes.ECB()).encryptor()
    return enc.update(block) + enc.finalize()


def to_bytes(block: np.ndarray) -> bytes:
    return np.asarray(block, dtype="<u8").tobytes()


def from_bytes(data: bytes) -> np.ndarray:
    return np.frombuffer(data, dtype="<u8").astype(np.uint64)


def xor_bytes(a: bytes, b: bytes) -> bytes:
    return bytes(x ^ y for x, y in zip(a, b))


def ref_prg(seed: bytes) -> tuple[bytes, bytes]:
    """G(s) = (AES_k0(s) ⊕ s, AES_k1(s) ⊕ s)."""
    left = xor_bytes(aes_block(public_key("ggm/left"), seed), seed)
    right = xor_bytes(aes_block(public_key("ggm/right"), seed), seed)
    return left, right


def ref_tree(root: bytes, depth: int) -> list[list[bytes]]:
    """All levels of one GGM tree, level 0 = [root]."""
    levels = [[root]]
    for _ in range(depth):
        nxt: list[bytes] = []
        for node in levels[-1]:
            nxt.extend(ref_prg(node))
        levels.append(nxt)
    return levels


def ref_lpn_indices(seed: bytes, k: int, d: int, rows: int) -> list[list[int]]:
    """Row i, column j: floor(w * k / 2^32) for the (i*d+j)-th little-endian u32 of AES-CTR(seed, 0)."""
    enc = Cipher(algorithms.AES(seed), modes.CTR(bytes(16))).encryptor()
    stream = enc.update(bytes(4 * d * rows))
    words = struct.unpack(f"<{d * rows}I", stream)
    return [[(words[i * d + j] * k) >> 32 for j in range(d)] for i in range(rows)]


def random_blocks(rng: np.random.Generator, n: int) -> np.ndarray:
    return rng.integers(0, 2**64, size=(n, 2), dtype=np.uint64)
