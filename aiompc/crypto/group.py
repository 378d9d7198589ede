"""The prime-order group of the base OTs: the order-ℓ subgroup of edwards25519, from libsodium.

Every operation is a libsodium call through PyNaCl's bindings (no curve arithmetic here).  The
installed PyNaCl exposes no ristretto255 functions, so we use the main subgroup of edwards25519
directly: it has prime order ℓ = 2^252 + 27742317777372353535851937790883648493, its elements have
unique canonical 32-byte encodings, and :func:`is_valid` rejects anything else (non-canonical
encodings, points off the curve, points of small or mixed order).  Every point received from a peer
must go through :func:`check_point` before use.

Scalars are 32-byte little-endian integers already reduced mod ℓ; they are multiplied without
clamping, so ``mul(a, mul(b, P)) == mul(b, mul(a, P))`` holds exactly, as the Diffie–Hellman style base
OTs need.  Constant time is libsodium's business; nothing here branches on a secret.
"""

from __future__ import annotations

from nacl import bindings as _na
from nacl.exceptions import CryptoError

from aiompc.crypto.prg import PRG
from aiompc.errors import ProtocolError

__all__ = [
    "POINT_BYTES",
    "SCALAR_BYTES",
    "random_scalar",
    "base_mul",
    "mul",
    "add",
    "sub",
    "is_valid",
    "check_point",
]

POINT_BYTES: int = _na.crypto_core_ed25519_BYTES
SCALAR_BYTES: int = _na.crypto_core_ed25519_SCALARBYTES
_WIDE_SCALAR_BYTES: int = _na.crypto_core_ed25519_NONREDUCEDSCALARBYTES  # 64


def random_scalar(rng: PRG) -> bytes:
    """A uniform non-zero scalar mod ℓ (64 random bytes reduced mod ℓ: bias below 2^-250)."""
    while True:
        s = _na.crypto_core_ed25519_scalar_reduce(rng.random_bytes(_WIDE_SCALAR_BYTES))
        if any(s):
            return s


def base_mul(s: bytes) -> bytes:
    """``s·G`` for the standard generator G of the order-ℓ subgroup."""
    return _na.crypto_scalarmult_ed25519_base_noclamp(s)


def mul(s: bytes, p: bytes) -> bytes:
    """``s·P`` for a valid point P; :class:`ProtocolError` if P is invalid or the product is the identity."""
    try:
        return _na.crypto_scalarmult_ed25519_noclamp(s, p)
    except CryptoError:
        raise ProtocolError("scalar multiplication by an invalid or small-order point; the peer misbehaves") from None


def add(p: bytes, q: bytes) -> bytes:
    """``P + Q``."""
    return _na.crypto_core_ed25519_add(p, q)


def sub(p: bytes, q: bytes) -> bytes:
    """``P - Q``."""
    return _na.crypto_core_ed25519_sub(p, q)


def is_valid(p: bytes) -> bool:
    """True iff ``p`` is the canonical encoding of a point of the order-ℓ subgroup other than the identity."""
    return len(p) == POINT_BYTES and bool(_na.crypto_core_ed25519_is_valid_point(p))


def check_point(p: object, what: str) -> bytes:
    """Return ``p`` if it is a valid group element received from the peer, else raise :class:`ProtocolError`."""
    if not isinstance(p, (bytes, bytearray)) or not is_valid(bytes(p)):
        raise ProtocolError(f"{what} is not a valid point of the prime-order group; the peer misbehaves")
    return bytes(p)
