"""Bit-exact wire formats for seeded ciphertexts, public keys and result ciphertexts.

A codec on arrays: it knows no ciphertext or key class (:class:`~.bfv.SeededCiphertext`,
:class:`~.keys.PublicKey` and :class:`~.result.ResultCiphertext` call it from ``to_bytes``/``from_bytes``),
so the dependency runs one way, from those modules to this one.

Every message is ``header ‖ payload ‖ crc32`` (little-endian):

=========  =====  ==========================================================================
field      bytes  meaning
=========  =====  ==========================================================================
magic      2      ``b"HE"``
version    1      1
kind       1      1 = seeded ciphertext, 2 = public key, 3 = result ciphertext
params     8      :attr:`HEParams.fingerprint` (N, primes, l, σ)
batch      4      number of ciphertexts ``B``
...               kind 1/2: level (1) and seed (32); kind 3: modulus code (1: 0 = ``2**k``,
                  1 = first prime), ``k`` (1), drop0 (1), drop1 (1), carried ``c0`` count ``n`` (4)
payload           kind 1/2: ``B·N`` integers ``c0 mod q_L`` in exactly ``⌈log2 q_L⌉`` bits each
                  (exact CRT value, not per-prime residues); kind 3: ``B·N`` values of ``c1`` in
                  ``bits1`` bits, then ``B·n`` values of ``c0`` in ``bits0`` bits
crc32      4      CRC-32 of everything before it
=========  =====  ==========================================================================

Values wider than 64 bits are packed as consecutive 64-bit-wide slices (all low slices, then the
next ...); with ``N`` a multiple of 8 each slice is a whole number of bytes, so the payload is exactly
``B·N·⌈log2 q⌉/8`` bytes.  Loading checks every length, the fingerprint, the CRC, the ranges
(``c0 < q_L``) and the padding, and raises :class:`~aiompc.errors.ProtocolError` on any mismatch.
The CRC catches corruption and splicing, not a deliberate forgery (the model is semi-honest).
"""

from __future__ import annotations

import struct
import zlib

import numpy as np

from aiompc.errors import ProtocolError
from aiompc.kernels.bitpack import pack_bits, packed_size, unpack_bits

from .params import HEParams
from .rns import RNSBasis, from_limbs, get_basis, limbs_less_than, to_limbs

__all__ = [
    "dump_seeded",
    "load_seeded",
    "dump_public_key",
    "load_public_key",
    "dump_result",
    "load_result",
    "seeded_size",
    "result_size",
    "kept_bits",
]

MAGIC = b"HE"
VERSION = 1
KIND_SEEDED, KIND_PUBKEY, KIND_RESULT = 1, 2, 3
_HEAD = struct.Struct("<2sBB8sI")
_SEEDED = struct.Struct("<B32s")
_RESULT = struct.Struct("<BBBBI")
_CRC = struct.Struct("<I")
_MASK32 = np.uint64(0xFFFFFFFF)


def _slices(bits: int) -> list[int]:
    """Widths of the 64-bit slices of a ``bits``-bit value."""
    return [min(64, bits - 64 * j) for j in range((bits + 63) // 64)]


def _pack_wide(limbs: np.ndarray, bits: int) -> bytes:
    """Pack values given as 32-bit limbs ``(n_limbs, count)`` into ``bits`` bits each, sliced by 64."""
    out = []
    for j, width in enumerate(_slices(bits)):
        lo = limbs[2 * j]
        hi = limbs[2 * j + 1] if 2 * j + 1 < limbs.shape[0] else np.zeros_like(lo)
        out.append(pack_bits(lo | (hi << np.uint64(32)), width))
    return b"".join(out)


def _unpack_wide(buf: memoryview, bits: int, count: int, n_limbs: int) -> np.ndarray:
    limbs = np.zeros((max(n_limbs, 2 * len(_slices(bits))), count), dtype=np.uint64)
    off = 0
    for j, width in enumerate(_slices(bits)):
        size = packed_size(count, width)
        v = unpack_bits(buf[off : off + size], width, count)
        limbs[2 * j] = v & _MASK32
        limbs[2 * j + 1] = v >> np.uint64(32)
        off += size
    if limbs[n_limbs:].any():
        raise ProtocolError("coefficient wider than the modulus")
    return limbs[:n_limbs]


def _wide_size(count: int, bits: int) -> int:
    return sum(packed_size(count, w) for w in _slices(bits))


def _finish(body: bytes) -> bytes:
    return body + _CRC.pack(zlib.crc32(body))


def _open(params: HEParams, data: bytes | memoryview, kind: int) -> tuple[memoryview, int, int]:
    """Check magic/version/kind/fingerprint/CRC; return (view without CRC, batch, offset after header)."""
    mv = memoryview(data).cast("B")
    if len(mv) < _HEAD.size + _CRC.size:
        raise ProtocolError(f"HE message of {len(mv)} bytes is shorter than its header")
    body, (crc,) = mv[: -_CRC.size], _CRC.unpack(mv[-_CRC.size :])
    if zlib.crc32(body) != crc:
        raise ProtocolError("HE message checksum mismatch (corrupted or truncated)")
    magic, version, got_kind, fp, batch = _HEAD.unpack_from(body)
    if magic != MAGIC or version != VERSION:
        raise ProtocolError(f"not an aiompc HE message (magic {magic!r}, version {version})")
    if got_kind != kind:
        raise ProtocolError(f"expected HE message kind {kind}, got {got_kind}")
    if fp != params.fingerprint:
        raise ProtocolError("HE message was made for different parameters (fingerprint mismatch)")
    if batch < 1:
        raise ProtocolError("HE message with an empty batch")
    return body, batch, _HEAD.size


# --------------------------------------------------------------------------- seeded ciphertexts / keys


def seeded_size(params: HEParams, batch: int, level: int | None = None) -> int:
    """Bytes of a seeded ciphertext batch on the wire."""
    level = params.levels if level is None else level
    bits = params.modulus(level).bit_length()
    return _HEAD.size + _SEEDED.size + _wide_size(batch * params.n, bits) + _CRC.size


def _dump_c0(params: HEParams, c0: np.ndarray, seed: bytes, kind: int) -> bytes:
    batch, level, n = c0.shape
    basis = get_basis(params.primes[:level])
    limbs = to_limbs(c0, basis).reshape(basis.limbs, batch * n)
    head = _HEAD.pack(MAGIC, VERSION, kind, params.fingerprint, batch) + _SEEDED.pack(level, seed)
    return _finish(head + _pack_wide(limbs, basis.q.bit_length()))


def _load_c0(params: HEParams, data: bytes | memoryview, kind: int) -> tuple[np.ndarray, bytes]:
    body, batch, off = _open(params, data, kind)
    if len(body) < off + _SEEDED.size:
        raise ProtocolError("truncated seeded-ciphertext header")
    level, seed = _SEEDED.unpack_from(body, off)
    off += _SEEDED.size
    if not 1 <= level <= params.levels:
        raise ProtocolError(f"ciphertext level {level} outside 1..{params.levels}")
    basis: RNSBasis = get_basis(params.primes[:level])
    bits, count = basis.q.bit_length(), batch * params.n
    if len(body) - off != _wide_size(count, bits):
        raise ProtocolError(f"seeded ciphertext payload is {len(body) - off} bytes, expected {_wide_size(count, bits)}")
    limbs = _unpack_wide(body[off:], bits, count, basis.limbs)
    if not limbs_less_than(limbs, basis.q_limbs).all():
        raise ProtocolError("ciphertext coefficient not below the modulus")
    c0 = from_limbs(limbs.reshape(basis.limbs, batch, params.n), basis)  # (B, L, N)
    return c0, bytes(seed)


def dump_seeded(params: HEParams, c0: np.ndarray, seed: bytes) -> bytes:
    """Wire form of a seeded ciphertext batch: ``c0`` ``(B, L, N)`` residues (coefficient form) and its seed."""
    return _dump_c0(params, c0, seed, KIND_SEEDED)


def load_seeded(params: HEParams, data: bytes | memoryview) -> tuple[np.ndarray, bytes]:
    """Inverse of :func:`dump_seeded`: ``(c0, seed)``; raises :class:`ProtocolError` on malformed input."""
    return _load_c0(params, data, KIND_SEEDED)


def dump_public_key(params: HEParams, b: np.ndarray, seed: bytes) -> bytes:
    """Wire form of a public key: ``b`` ``(L, N)`` residues and the seed of ``a``."""
    return _dump_c0(params, b[None], seed, KIND_PUBKEY)


def load_public_key(params: HEParams, data: bytes | memoryview) -> tuple[np.ndarray, bytes]:
    """Inverse of :func:`dump_public_key`: ``(b, seed)``, ``b`` read-only."""
    c0, seed = _load_c0(params, data, KIND_PUBKEY)
    if c0.shape[0] != 1:
        raise ProtocolError(f"a public key is one polynomial pair, got a batch of {c0.shape[0]}")
    b = c0[0]
    b.setflags(write=False)
    return b, seed


# --------------------------------------------------------------------------- results


def kept_bits(modulus: int, drop: int) -> int:
    """Wire bits of a value mod ``modulus`` with its ``drop`` low bits dropped."""
    return ((modulus - 1) >> drop).bit_length()


def result_size(params: HEParams, batch: int, n_coeffs: int, bits0: int, bits1: int) -> int:
    """Bytes of a result batch on the wire."""
    return (_HEAD.size + _RESULT.size + packed_size(batch * params.n, bits1)
            + packed_size(batch * n_coeffs, bits0) + _CRC.size)


def dump_result(params: HEParams, modulus: int, drop0: int, drop1: int, c0: np.ndarray, c1: np.ndarray) -> bytes:
    """Wire form of a result batch mod ``modulus`` (``2**k`` or the first prime): ``c0`` ``(B, n)`` carried values
    of ``⌊c0/2**drop0⌋`` and ``c1`` ``(B, N)`` of ``⌊c1/2**drop1⌋`` (their ``positions`` are implicit)."""
    pow2 = modulus & (modulus - 1) == 0
    code, k = (0, modulus.bit_length() - 1) if pow2 else (1, 0)
    head = _HEAD.pack(MAGIC, VERSION, KIND_RESULT, params.fingerprint, c1.shape[0])
    head += _RESULT.pack(code, k, drop0, drop1, c0.shape[1])
    bits0, bits1 = kept_bits(modulus, drop0), kept_bits(modulus, drop1)
    return _finish(head + pack_bits(c1, bits1) + pack_bits(c0, bits0))


def load_result(
    params: HEParams, data: bytes | memoryview, n_coeffs: int
) -> tuple[int, int, int, np.ndarray, np.ndarray]:
    """Inverse of :func:`dump_result` given the agreed number of carried ``c0`` coefficients:
    ``(modulus, drop0, drop1, c0, c1)``; raises :class:`ProtocolError`."""
    body, batch, off = _open(params, data, KIND_RESULT)
    if len(body) < off + _RESULT.size:
        raise ProtocolError("truncated result header")
    code, k, drop0, drop1, got_n = _RESULT.unpack_from(body, off)
    off += _RESULT.size
    if code == 0 and 1 <= k <= 62:
        modulus = 1 << k
    elif code == 1 and k == 0:
        modulus = params.primes[0]
    else:
        raise ProtocolError(f"bad result modulus code ({code}, {k})")
    if got_n != n_coeffs:
        raise ProtocolError(f"result carries {got_n} c0 coefficients, expected {n_coeffs}")
    width = modulus.bit_length() - (1 if code == 0 else 0)
    if not (drop0 < width and drop1 < width):
        raise ProtocolError(f"cannot drop ({drop0}, {drop1}) bits of a {width}-bit modulus")
    bits0, bits1 = kept_bits(modulus, drop0), kept_bits(modulus, drop1)
    size1, size0 = packed_size(batch * params.n, bits1), packed_size(batch * n_coeffs, bits0)
    if len(body) - off != size1 + size0:
        raise ProtocolError(f"result payload is {len(body) - off} bytes, expected {size1 + size0}")
    c1 = unpack_bits(body[off : off + size1], bits1, batch * params.n).reshape(batch, params.n)
    c0 = unpack_bits(body[off + size1 :], bits0, batch * n_coeffs).reshape(batch, n_coeffs)
    if code == 1 and (c0.max(initial=0) > (modulus - 1) >> drop0 or c1.max(initial=0) > (modulus - 1) >> drop1):
        raise ProtocolError("result coefficient not below the modulus")
    return modulus, drop0, drop1, c0, c1
