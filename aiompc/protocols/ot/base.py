"""Base OTs: the "simplest OT" of Chou and Orlandi (LATINCRYPT 2015), batched, semi-honest.

Group: the prime-order subgroup of edwards25519 (:mod:`aiompc.crypto.group`, libsodium).  For ``k``
OTs of random 16-byte keys:

1. sender: ``a ← Z_ℓ``, sends ``A = a·G`` (32 bytes);
2. receiver, for each ``i`` with choice ``c_i``: ``b_i ← Z_ℓ``, sends ``B_i = b_i·G + c_i·A``
   (32 bytes each), and keeps ``k_i = KDF(A, B_i, i, b_i·A)``;
3. sender: ``k_i^0 = KDF(A, B_i, i, a·B_i)``, ``k_i^1 = KDF(A, B_i, i, a·B_i − a·A)``.

Since ``a·B_i − c_i·a·A = b_i·a·G``, the receiver's key equals ``k_i^{c_i}``; the other key hides behind
the CDH problem.  Every received point is validated (canonical, in the prime-order subgroup).  Cost:
``32·(k + 1)`` bytes, one round trip; sender ``k + 1`` scalar multiplications, receiver ``2k`` (plus
``k`` additions).  The pure functions below hold the math; :func:`send` / :func:`receive` move the messages.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from aiompc.channel import SubChannel
from aiompc.crypto import group
from aiompc.crypto.hashing import derive_key
from aiompc.crypto.prg import PRG
from aiompc.errors import InputError, ProtocolError
from aiompc.party import Party

__all__ = ["sender_start", "receiver_choose", "sender_keys", "receiver_keys", "send", "receive", "KEY_BYTES"]

KEY_BYTES = 16
_DOMAIN = b"aiompc/ot/base/chou-orlandi"


def _kdf(A: bytes, B: bytes, i: int, shared: bytes) -> bytes:
    return derive_key(_DOMAIN, A, B, i.to_bytes(4, "little"), shared, size=KEY_BYTES)


def sender_start(rng: PRG) -> tuple[bytes, bytes]:
    """The sender's secret scalar ``a`` and its first message ``A = a·G``."""
    a = group.random_scalar(rng)
    return a, group.base_mul(a)


def receiver_choose(rng: PRG, A: bytes, choices: Sequence[int]) -> tuple[list[bytes], list[bytes]]:
    """The receiver's secret scalars ``b_i`` and its message ``B_i = b_i·G + c_i·A`` (``A`` validated)."""
    group.check_point(A, "the base-OT sender's point A")
    scalars, points = [], []
    for c in choices:
        if c not in (0, 1):
            raise InputError(f"base-OT choices must be bits, got {c!r}")
        b = group.random_scalar(rng)
        bg = group.base_mul(b)
        both = (bg, group.add(bg, A))  # computed either way; the choice only indexes
        scalars.append(b)
        points.append(both[c])
    return scalars, points


def sender_keys(a: bytes, A: bytes, points: Sequence[bytes]) -> list[tuple[bytes, bytes]]:
    """The sender's key pairs ``(k_i^0, k_i^1)`` from the receiver's points (each validated)."""
    aA = group.mul(a, A)
    keys = []
    for i, B in enumerate(points):
        group.check_point(B, f"base-OT receiver point {i}")
        aB = group.mul(a, B)
        keys.append((_kdf(A, B, i, aB), _kdf(A, B, i, group.sub(aB, aA))))
    return keys


def receiver_keys(scalars: Sequence[bytes], A: bytes, points: Sequence[bytes]) -> list[bytes]:
    """The receiver's keys ``k_i^{c_i} = KDF(A, B_i, i, b_i·A)``."""
    return [_kdf(A, B, i, group.mul(b, A)) for i, (b, B) in enumerate(zip(scalars, points))]


async def send(party: Party, sub: SubChannel, count: int) -> list[tuple[bytes, bytes]]:
    """Base-OT sender: ``count`` pairs of random 16-byte keys; the peer learns one key of each pair."""
    a, A = sender_start(party.rng)
    await sub.send(A)
    data = await sub.recv()
    if not isinstance(data, bytes) or len(data) != count * group.POINT_BYTES:
        raise ProtocolError(f"base OT: expected {count} receiver points of {group.POINT_BYTES} bytes")
    points = [data[i : i + group.POINT_BYTES] for i in range(0, len(data), group.POINT_BYTES)]
    return await party.compute(sender_keys, a, A, points)


async def receive(party: Party, sub: SubChannel, choices: np.ndarray | Sequence[int]) -> list[bytes]:
    """Base-OT receiver: the key ``k_i^{c_i}`` of each pair, for choice bits ``choices``."""
    bits = [int(c) for c in np.asarray(choices).reshape(-1)]
    A = await sub.recv()
    if not isinstance(A, bytes):
        raise ProtocolError("base OT: the sender's first message is not a point")
    rng = party.rng.fork()  # the executor thread gets its own stream
    scalars, points = await party.compute(receiver_choose, rng, A, bits)
    await sub.send(b"".join(points))
    return await party.compute(receiver_keys, scalars, A, points)
