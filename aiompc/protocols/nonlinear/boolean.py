"""Boolean-share building blocks: AND from bit triples, B2A, multiplexer, cross products of held bits.

Conventions used throughout :mod:`aiompc.protocols.nonlinear`:

* A *Boolean share* of a bit ``b`` is a pair of ``uint8`` 0/1 arrays with ``b = b_S ^ b_C``.
* An *arithmetic share* of ``v`` mod ``2^l`` is a pair of ``uint64`` arrays with
  ``v = v_S + v_C mod 2^l`` (:mod:`aiompc.ring`).
* Every function here is called by both parties with the same ``label`` and returns the caller's share.

Costs are stated per element in bits on the wire, counting the online derandomisation messages of the
OT flavours (:mod:`aiompc.protocols.ot`): a correlated OT with an ``l``-bit correlation costs ``1 + l`` bits
online (choice bit up, correction down) on top of one random COT taken from the OT engine (offline).
"""

from __future__ import annotations

import asyncio

import numpy as np

from aiompc.errors import InputError
from aiompc.party import Party, Role
from aiompc.ring import check_width, mask
from aiompc.wire import Packed, expect
from aiompc.protocols.ot import bit_triples, correlated_ot

__all__ = [
    "TriplePool",
    "fetch_triples",
    "and_",
    "b2a",
    "mux",
    "cross_and",
    "cross_or",
    "as_bits",
]


def as_bits(x: np.ndarray, name: str = "bits") -> np.ndarray:
    """``x`` as a ``uint8`` array of 0/1 values, or :class:`InputError`."""
    a = np.asarray(x)
    if a.dtype.kind not in "biu":
        raise InputError(f"{name} must be an integer or bool array of 0/1 values, got dtype {a.dtype}")
    a = a.astype(np.uint8, copy=False)
    if a.size and int(a.max()) > 1:
        raise InputError(f"{name} must hold 0/1 values (Boolean shares)")
    return a


class TriplePool:
    """A batch of Boolean multiplication triples, consumed front to back by :func:`and_`.

    Holds this party's XOR shares ``(a, b, c)`` with ``(a_S ^ a_C) & (b_S ^ b_C) == c_S ^ c_C``.
    Both parties must take the same sizes in the same order.
    """

    def __init__(self, a: np.ndarray, b: np.ndarray, c: np.ndarray) -> None:
        self._a, self._b, self._c = (np.asarray(v, dtype=np.uint8).reshape(-1) for v in (a, b, c))
        self._pos = 0

    @property
    def remaining(self) -> int:
        return self._a.size - self._pos

    def take(self, shape: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The next ``prod(shape)`` triples, each component reshaped to ``shape``."""
        n = int(np.prod(shape, dtype=np.int64))
        if n > self.remaining:
            raise InputError(f"triple pool exhausted: {n} requested, {self.remaining} left")
        s = slice(self._pos, self._pos + n)
        self._pos += n
        return self._a[s].reshape(shape), self._b[s].reshape(shape), self._c[s].reshape(shape)


async def fetch_triples(party: Party, label: str, n: int) -> TriplePool:
    """``n`` bit triples from the OT layer (:func:`aiompc.protocols.ot.bit_triples`) as a :class:`TriplePool`."""
    if n == 0:
        empty = np.zeros(0, dtype=np.uint8)
        return TriplePool(empty, empty, empty)
    return TriplePool(*await bit_triples(party, label, n))


async def and_(
    party: Party, label: str, x: np.ndarray, y: np.ndarray, *, triples: TriplePool | None = None
) -> np.ndarray:
    """Boolean shares of ``x & y`` from Boolean shares of ``x`` and ``y`` (same shape).

    Beaver's protocol with a bit triple ``(a, b, c)``: both parties open ``d = x ^ a`` and ``e = y ^ b``
    and output ``c ^ (d & b) ^ (e & a)`` (the server also XORs ``d & e``).

    Cost per AND: 2 bits each way in one simultaneous exchange (one flight), plus one bit triple
    (offline, from the OT layer) unless ``triples`` is given.
    """
    x = as_bits(x, "x")
    y = as_bits(y, "y")
    if x.shape != y.shape:
        raise InputError(f"and_: operand shapes differ: {x.shape} vs {y.shape}")
    if x.size == 0:
        return np.zeros(x.shape, dtype=np.uint8)
    pool = triples if triples is not None else await fetch_triples(party, f"{label}/triples", x.size)
    a, b, c = pool.take(x.shape)
    d = x ^ a
    e = y ^ b
    sub = party.sub(label)
    await sub.send(Packed(np.concatenate([d.reshape(-1), e.reshape(-1)]), 1))
    peer = expect(await sub.recv(), (2 * x.size,), 1, f"and_ {label!r}: the peer's opened bits").astype(np.uint8)
    d ^= peer[: x.size].reshape(x.shape)
    e ^= peer[x.size :].reshape(x.shape)
    z = c ^ (d & b) ^ (e & a)
    if party.is_server:
        z ^= d & e
    return z


async def cross_and(
    party: Party, label: str, bit: np.ndarray, *, l: int, sender: Role = "server"
) -> np.ndarray:
    """Arithmetic shares mod ``2^l`` of ``bit_S · bit_C``, where each party holds its own bit *in the clear*.

    One correlated OT with an ``l``-bit correlation: the sender's correlation is its bit, the receiver's
    choice is its bit; the sender keeps ``-x``, the receiver ``x + bit_S·bit_C``.

    Cost: ``1 + l`` bits online, one random COT offline.
    """
    l = check_width(l)
    bit = as_bits(bit, "bit")
    flat = bit.reshape(-1)
    if party.role == sender:
        x = await correlated_ot(party, label, sender=sender, bits=l, correlation=flat.astype(np.uint64))
        out = (np.uint64(0) - x.astype(np.uint64)) & mask(l)
    else:
        out = await correlated_ot(party, label, sender=sender, bits=l, choices=flat)
    return np.asarray(out, dtype=np.uint64).reshape(bit.shape) & mask(l)


async def cross_or(
    party: Party, label: str, bit: np.ndarray, *, l: int, sender: Role = "server"
) -> np.ndarray:
    """Arithmetic shares mod ``2^l`` of ``bit_S ∨ bit_C`` (each party's bit held in the clear).

    ``a ∨ b = a + b − a·b``: one :func:`cross_and`, otherwise local.  Cost: ``1 + l`` bits online.
    """
    prod = await cross_and(party, label, bit, l=l, sender=sender)
    return (as_bits(bit, "bit").astype(np.uint64) - prod) & mask(l)


async def b2a(party: Party, label: str, x: np.ndarray, *, l: int, sender: Role = "server") -> np.ndarray:
    """Arithmetic shares mod ``2^l`` of the bit ``x = x_S ^ x_C`` (Boolean shares in, any shape).

    ``x_S ^ x_C = x_S + x_C − 2·x_S·x_C``.  The product only matters mod ``2^(l-1)`` (it is doubled),
    so it takes one correlated OT with an ``(l−1)``-bit correlation ``x_S`` and choice ``x_C``
    (sender ``t``, receiver ``t + x_S·x_C``): the sender outputs ``x_S + 2t``, the receiver
    ``x_C − 2(t + x_S·x_C)``.  For ``l = 1`` the XOR is already the sum mod 2 (local).

    Cost: ``l`` bits online (``1 + (l−1)``), one random COT offline, one round trip.
    """
    l = check_width(l)
    x = as_bits(x, "x")
    if l == 1 or x.size == 0:
        return x.astype(np.uint64) & mask(l)
    flat = x.reshape(-1)
    if party.role == sender:
        t = await correlated_ot(party, label, sender=sender, bits=l - 1, correlation=flat.astype(np.uint64))
        out = flat.astype(np.uint64) + (np.asarray(t, dtype=np.uint64) << np.uint64(1))
    else:
        t = await correlated_ot(party, label, sender=sender, bits=l - 1, choices=flat)
        out = flat.astype(np.uint64) - (np.asarray(t, dtype=np.uint64) << np.uint64(1))
    return (out & mask(l)).reshape(x.shape)


async def mux(party: Party, label: str, sel: np.ndarray, x: np.ndarray, *, l: int) -> np.ndarray:
    """Arithmetic shares mod ``2^l`` of ``sel · x`` (``sel`` Boolean-shared, ``x`` arithmetic-shared).

    ``sel`` has shape ``(n, ...)`` matching the leading dimensions of ``x``; ``x`` may carry extra
    trailing dimensions (several values selected by one bit, one OT each way per selector).

    With ``sel = s_S ^ s_C``: ``sel·x_S = s_S·x_S + s_C·(1 − 2s_S)·x_S`` is one correlated OT with the
    server as sender (correlation ``(1 − 2s_S)·x_S``, choice ``s_C``), and symmetrically for ``sel·x_C``
    with the client as sender.  Both run concurrently.

    Cost per selector: two COTs with ``k·l``-bit correlations (``k`` values per selector):
    ``2·(1 + k·l)`` bits online, 2 random COTs offline, one round trip.
    """
    l = check_width(l)
    sel = as_bits(sel, "sel")
    x = np.asarray(x, dtype=np.uint64)
    if x.shape[: sel.ndim] != sel.shape:
        raise InputError(f"mux: selector shape {sel.shape} is not a prefix of the value shape {x.shape}")
    if x.size == 0:
        return np.zeros(x.shape, dtype=np.uint64)
    n = sel.size
    s = sel.reshape(n)
    xv = (x & mask(l)).reshape(n, -1)
    s64 = s.astype(np.uint64)[:, None]
    own = xv * s64  # s_own · x_own
    # correlation (1 - 2 s_own) · x_own  =  x_own if s_own == 0 else -x_own
    corr = np.where(s64 == 1, (np.uint64(0) - xv), xv) & mask(l)
    width = xv.shape[1]
    corr_arg = corr[:, 0] if width == 1 else corr

    mine = "server" if party.is_server else "client"
    theirs = party.peer_role
    as_sender = correlated_ot(party, f"{label}/{mine}", sender=mine, bits=l, correlation=corr_arg)
    as_receiver = correlated_ot(party, f"{label}/{theirs}", sender=theirs, bits=l, choices=s)
    r, u = await asyncio.gather(as_sender, as_receiver)
    r = np.asarray(r, dtype=np.uint64).reshape(n, width)
    u = np.asarray(u, dtype=np.uint64).reshape(n, width)
    out = (own - r + u) & mask(l)
    return out.reshape(x.shape)
