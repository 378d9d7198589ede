"""Products of shares mod ``2^l``: ``x·y`` (both shared), ``x·w`` (``w`` the server's own) and ``x²``, exactly.

With ``x = x_S + x_C`` and ``y = y_S + y_C`` mod ``2^l``, ``x·y = x_S·y_S + x_C·y_C + x_S·y_C + x_C·y_S``: the
first two terms are local, each *cross term* ``v·z`` (``v`` held by the *chooser*, ``z`` by the other party, the
*sender*) is Gilboa's product by correlated OT: for every bit ``v_i`` of ``v`` one COT with the chooser's choice
``v_i`` and the sender's correlation ``z·2^i``; since ``2^i·z`` mod ``2^l`` depends only on ``z mod 2^(l−i)``, COT
``i`` carries ``l − i`` bits (:func:`~aiompc.protocols.ot.correlated_ot_widths`, all bits of all elements in one
round trip).  The sender keeps ``−Σ 2^i·t_i``, the chooser ``Σ 2^i·(t_i + v_i·z)``.

**Narrow operands.**  When a public width says ``x`` is a signed ``m``-bit value with ``L = m + 1 < l``, the chooser
needs only ``L`` bits (SIRNN-style: the product of an ``m``-bit value lives in the wide ring without widening its
shares).  ``u = x + 2^(m−1) ∈ [0, 2^m)`` (the server adds the bias); the shares of ``u`` reduced mod ``2^L`` are
``u'_S, u'_C`` and, because the top bit of ``u`` in ``L`` bits is known to be 0, the integer
``u = u'_S + u'_C − 2^L·w`` with the wrap ``w = a ∨ b``, ``a = msb(u'_S)``, ``b = msb(u'_C)`` (no comparison).
Writing ``a ∨ b = a + b·(1 − a)``::

    u·y = u'_S·y_S − 2^L·a·y_S                       (server, local)
        + u'_C·y_C − 2^L·b·y_C                       (client, local)
        + u'_C·y_S − 2^L·b·(1 − a)·y_S               (client chooses its L bits of u'_C)
        + u'_S·y_C − 2^L·a·(1 − b)·y_C               (server chooses its L bits of u'_S)

and the wrap term folds into the COT of the top bit (``b = u'_C`` bit ``L − 1``): its correlation becomes
``2^(L−1)·y_S·(2a − 1)`` instead of ``2^(L−1)·y_S``; then ``x·y = u·y − 2^(m−1)·y`` (local).  ``L`` COTs per
cross term instead of ``l``.  Of two narrow operands the narrower one is decomposed.  A value outside its stated
width gives a wrong product (not an error: the width is public metadata that the caller vouches for).  An
unsigned ``b``-bit value is a signed ``(b + 1)``-bit one: pass ``x_bits = b + 1``.

**Cost** (online bits per product, both directions; the channel measured 304.5 / 648.8 / 1481.1 for plain multiply at
l = 16 / 24 / 37 with 8192 elements, checked against these formulas in ``tests/protocols/nonlinear/test_multiply.py``;
COTs from the engine are offline, under a bit each for silent OT; plus a few dozen bytes of framing per call):

============================  ==============================================  ==========================
function                      bits per element                                 l = 16 / 24 / 37 (plain)
============================  ==============================================  ==========================
multiply (plain)              ``2·(l + l(l+1)/2) = l² + 3l``                   304 / 648 / 1480
multiply (``x_bits = m``)     ``2·(L + L·l − L(L−1)/2)``, ``L = m + 1``       m = 8: 234 / 378 / 612
multiply_private (plain)      ``l + l(l+1)/2``                                 152 / 324 / 740
multiply_private (``w_bits``) ``wb + wb·l − wb(wb−1)/2`` (server's bits)       wb = 8: 108 / 172 / 276
square (plain)                ``(l−1) + (l−1)·l/2``                            135 / 299 / 702
square (``x_bits = m``)       ``L + L·(l−1) − L(L−1)/2 + (l − L)``             m = 8: 115 / 195 / 325
============================  ==============================================  ==========================

:func:`multiply_bits`, :func:`multiply_private_bits` and :func:`square_bits` return these figures for cost models.
Each function is one round trip (both directions' COTs run concurrently).  Inputs are ``uint64`` shares below
``2^l``; outputs are this party's shares mod ``2^l`` (fresh: every output share carries OT pads never used before).
"""

from __future__ import annotations

import asyncio
from typing import Any

import numpy as np

from aiompc.errors import InputError, ProtocolError
from aiompc.party import Party, Role
from aiompc.protocols.ot import correlated_ot_widths
from aiompc.ring import check_width, mask

__all__ = ["multiply", "multiply_private", "square", "cross_product", "product_bits", "multiply_bits",
           "multiply_private_bits", "square_bits"]


# --------------------------------------------------------------------------- checks and public plans


def _shares(x: Any, l: int, name: str) -> np.ndarray:
    """``x`` as ``uint64`` shares below ``2^l`` (InputError otherwise)."""
    a = np.asarray(x)
    if a.dtype.kind != "u":
        raise InputError(f"{name}: shares must be an unsigned integer array (uint64 mod 2^l), got dtype {a.dtype}")
    a = a.astype(np.uint64, copy=False)
    if a.size and l < 64 and int(a.max()) >> l:
        raise InputError(f"{name}: a share is >= 2^{l}; reduce the shares mod 2^{l} first")
    return a


def _width(bits: int | None, name: str) -> int | None:
    if bits is None:
        return None
    if not isinstance(bits, (int, np.integer)) or not 1 <= bits <= 64:
        raise InputError(f"{name} must be None or an integer in 1..64, got {bits!r}")
    return int(bits)


def _chooser_bits(l: int, x_bits: int | None) -> int:
    """Bits the chooser decomposes: ``l`` (plain) or ``x_bits + 1`` when that is fewer."""
    return l if x_bits is None or x_bits + 1 >= l else x_bits + 1


def product_bits(l: int, chooser_bits: int) -> int:
    """Online bits of one cross term: ``L`` choice bits up, ``Σ_{i<L} (l − i)`` correlation bits down."""
    L = chooser_bits
    return L + L * l - L * (L - 1) // 2


def multiply_bits(l: int, *, x_bits: int | None = None, y_bits: int | None = None) -> int:
    """Online bits per element of :func:`multiply` with these public widths (for cost models; framing extra)."""
    return 2 * product_bits(l, min(_chooser_bits(l, x_bits), _chooser_bits(l, y_bits)))


def multiply_private_bits(l: int, *, x_bits: int | None = None, w_bits: int | None = None) -> int:
    """Online bits per element of :func:`multiply_private` with these public widths."""
    L = _chooser_bits(l, x_bits)
    return product_bits(l, w_bits if w_bits is not None and w_bits < L else L)


def square_bits(l: int, *, x_bits: int | None = None) -> int:
    """Online bits per element of :func:`square` with this public width."""
    L = _chooser_bits(l, x_bits)
    if L == l:
        return product_bits(l - 1, l - 1) if l > 1 else 0
    return product_bits(l - 1, L) + (l - L if l - L - 1 > 0 else 0)


def _bits_of(v: np.ndarray, L: int) -> np.ndarray:
    """``(n, L)`` ``uint8``: bit ``i`` of each value."""
    return ((v[:, None] >> np.arange(L, dtype=np.uint64)[None, :]) & np.uint64(1)).astype(np.uint8)


# --------------------------------------------------------------------------- one cross term


async def cross_product(
    party: Party,
    label: str,
    *,
    chooser: Role,
    l: int,
    L: int,
    value: np.ndarray | None = None,
    correlation: np.ndarray | None = None,
) -> np.ndarray:
    """Shares mod ``2^l`` of ``Σ_{i<L} v_i·2^i·z_i`` — Gilboa's cross term.

    The chooser passes ``value`` ``(n,)`` ``uint64`` (its bits ``v_i``, ``i < L <= l``, are the OT choices); the
    other party passes ``correlation`` ``(n, L)`` ``uint64`` (column ``i`` is ``z_i``, only its value mod
    ``2^(l−i)`` matters).  Plain product ``v·z``: ``z_i = z`` for every ``i``.  Cost: ``n·L`` COTs, the chooser
    sends ``n·L`` bits, the sender ``n·Σ_{i<L}(l − i)`` bits; one round trip.
    """
    widths = tuple(l - i for i in range(L))
    sender: Role = "client" if chooser == "server" else "server"
    if party.role == chooser:
        assert value is not None
        got = await correlated_ot_widths(party, label, sender=sender, widths=widths, choices=_bits_of(value, L))
        if got.shape != (value.shape[0], L):
            raise ProtocolError(f"multiply {label!r}: the OT returned shape {got.shape}")
        sign = np.uint64(1)
    else:
        assert correlation is not None
        wmask = np.array([(1 << w) - 1 for w in widths], dtype=np.uint64)
        got = await correlated_ot_widths(
            party, label, sender=sender, widths=widths, correlation=correlation & wmask[None, :]
        )
        sign = np.uint64((1 << 64) - 1)  # −1 mod 2^64
    weights = np.uint64(1) << np.arange(L, dtype=np.uint64)
    return ((got * weights[None, :]).sum(axis=1, dtype=np.uint64) * sign) & mask(l)


def _narrow_split(v: np.ndarray, is_server: bool, m: int, L: int) -> tuple[np.ndarray, np.ndarray]:
    """This party's ``u' = (v + [server]·2^(m−1)) mod 2^L`` and its top bit (module docstring)."""
    u = (v + np.uint64(1 << (m - 1))) if is_server else v
    u = u & np.uint64((1 << L) - 1)
    return u, u >> np.uint64(L - 1)


def _columns(z: np.ndarray, L: int, top: np.ndarray | None = None) -> np.ndarray:
    """Correlations ``(n, L)``: ``z`` in every column, the last one replaced by ``top`` if given."""
    cols = np.repeat(z[:, None], L, axis=1)
    if top is not None:
        cols[:, L - 1] = top
    return cols


def _signed_factor(bit: np.ndarray, z: np.ndarray) -> np.ndarray:
    """``(2·bit − 1)·z`` mod ``2^64``: ``z`` if the bit is set, else ``−z``."""
    return np.where(bit == 1, z, np.uint64(0) - z)


# --------------------------------------------------------------------------- multiply


async def multiply(
    party: Party,
    label: str,
    x: np.ndarray,
    y: np.ndarray,
    *,
    l: int,
    x_bits: int | None = None,
    y_bits: int | None = None,
) -> np.ndarray:
    """Shares mod ``2^l`` of ``x·y`` (elementwise, numpy broadcasting), ``x`` and ``y`` shared mod ``2^l``.

    ``x_bits`` / ``y_bits``: optional public widths (the operand is a signed value of that many bits); when
    ``width + 1 < l`` the narrower operand's shares are decomposed in ``width + 1`` bits instead of ``l``
    (module docstring).  Both parties pass the same ``l``, widths and shapes.  Output shape: the broadcast
    shape.  Cost: two cross terms, ``2·product_bits(l, L)`` bits per element, one round trip.
    Raises :class:`~aiompc.errors.InputError` for bad widths, shares or shapes.
    """
    l = check_width(l)
    xb, yb = _width(x_bits, "x_bits"), _width(y_bits, "y_bits")
    xs, ys = _shares(x, l, "multiply x"), _shares(y, l, "multiply y")
    try:
        shape = np.broadcast_shapes(xs.shape, ys.shape)
    except ValueError:
        raise InputError(f"multiply: shapes {xs.shape} and {ys.shape} do not broadcast") from None
    if _chooser_bits(l, yb) < _chooser_bits(l, xb):  # decompose the narrower operand
        xs, ys, xb = ys, xs, yb
    L = _chooser_bits(l, xb)
    n = int(np.prod(shape, dtype=np.int64))
    if n == 0:
        return np.zeros(shape, dtype=np.uint64)
    xv = np.broadcast_to(xs, shape).reshape(-1)
    yv = np.ascontiguousarray(np.broadcast_to(ys, shape)).reshape(-1)
    server = party.is_server
    me: Role = party.role
    peer: Role = party.peer_role
    if L == l:  # plain Gilboa
        u, local, top = xv, xv * yv, None
    else:
        assert xb is not None
        u, msb = _narrow_split(xv, server, xb, L)
        # u'·y − 2^L·msb·y (own terms), the wrap's cross term rides on the peer's top-bit COT
        local = u * yv - (msb * yv << np.uint64(L))
        top = _signed_factor(msb, yv)
    as_chooser = cross_product(party, f"{label}/{me[0]}", chooser=me, l=l, L=L, value=u)
    as_sender = cross_product(party, f"{label}/{peer[0]}", chooser=peer, l=l, L=L, correlation=_columns(yv, L, top))
    a, b = await asyncio.gather(as_chooser, as_sender)
    out = local + a + b
    if L < l:
        assert xb is not None
        out = out - (yv << np.uint64(xb - 1))  # x·y = u·y − 2^(m−1)·y
    return (out & mask(l)).reshape(shape)


# --------------------------------------------------------------------------- multiply_private


def _private_weights(w: Any, shape: tuple[int, ...], l: int, w_bits: int | None) -> np.ndarray:
    """The server's ``w`` broadcast to ``shape``, flattened, as ``int64`` (InputError if it does not fit)."""
    if w is None:
        raise InputError("multiply_private: the server passes w (an integer array)")
    a = np.asarray(w)
    if a.dtype.kind not in "iu" or (a.dtype.kind == "u" and a.size and int(a.max()) >> 63):
        raise InputError(f"multiply_private: w must be a signed integer array, got dtype {a.dtype}")
    a = a.astype(np.int64)
    try:
        ok = np.broadcast_shapes(a.shape, shape) == shape
    except ValueError:
        ok = False
    if not ok:
        raise InputError(f"multiply_private: w of shape {a.shape} does not broadcast to x's shape {shape}")
    if w_bits is not None and a.size and (int(a.min()) < -(1 << (w_bits - 1)) or int(a.max()) >= 1 << (w_bits - 1)):
        raise InputError(f"multiply_private: w does not fit its public width of {w_bits} signed bits")
    return np.broadcast_to(a, shape).reshape(-1)


async def multiply_private(
    party: Party,
    label: str,
    x: np.ndarray,
    w: np.ndarray | None,
    *,
    l: int,
    x_bits: int | None = None,
    w_bits: int | None = None,
) -> np.ndarray:
    """Shares mod ``2^l`` of ``x·w``: ``x`` shared mod ``2^l``, ``w`` the server's private integers (the client
    passes ``None``), broadcastable to ``x``'s shape (e.g. one weight per feature ``(H,)`` for ``x (..., H)``).

    One cross term ``x_C·w``.  Whose bits are decomposed follows the public widths: the client's ``L`` bits of
    ``x`` (``L = l``, or ``x_bits + 1``, module docstring; the server's correlation is ``w·2^i``) or, when
    ``w_bits`` (signed width of every weight, public) is smaller, the server's own ``w_bits`` bits of ``w`` in
    two's complement (the client's correlation ``x_C·2^i``, negated for the sign bit; no wrap, ``w`` is held in
    the clear).  Cost: ``product_bits(l, min(L, w_bits))`` bits per element, one round trip.
    Output: shape of ``x``.  Raises :class:`~aiompc.errors.InputError` for bad shares, widths or weights.
    """
    l = check_width(l)
    xb, wb = _width(x_bits, "x_bits"), _width(w_bits, "w_bits")
    xs = _shares(x, l, "multiply_private x")
    shape = xs.shape
    if party.is_server:
        wv = _private_weights(w, shape, l, wb)
    elif w is not None:
        raise InputError("multiply_private: only the server holds w; the client passes None")
    L = _chooser_bits(l, xb)
    server_chooses = wb is not None and wb < L
    n = xs.size
    if n == 0:
        return np.zeros(shape, dtype=np.uint64)
    xv = xs.reshape(-1)
    if server_chooses:
        assert wb is not None
        if party.is_server:
            wr = wv.view(np.uint64) & np.uint64((1 << wb) - 1)  # two's complement in wb bits
            got = await cross_product(party, label, chooser="server", l=l, L=wb, value=wr)
            out = xv * wv.view(np.uint64) + got
        else:  # w = Σ_{i<wb−1} w_i·2^i − w_{wb−1}·2^(wb−1)
            neg = np.uint64(0) - xv
            corr = _columns(xv, wb, neg)
            out = await cross_product(party, label, chooser="server", l=l, L=wb, correlation=corr)
        return (out & mask(l)).reshape(shape)
    if party.is_server:
        wu = wv.view(np.uint64)
        if L == l:
            local, top = xv * wu, None
        else:
            assert xb is not None
            u, msb = _narrow_split(xv, True, xb, L)
            local = u * wu - (msb * wu << np.uint64(L)) - (wu << np.uint64(xb - 1))
            top = _signed_factor(msb, wu)
        got = await cross_product(party, label, chooser="client", l=l, L=L, correlation=_columns(wu, L, top))
        out = local + got
    else:
        u = xv if L == l else _narrow_split(xv, False, xb or 1, L)[0]
        out = await cross_product(party, label, chooser="client", l=l, L=L, value=u)
    return (out & mask(l)).reshape(shape)


# --------------------------------------------------------------------------- square


async def square(party: Party, label: str, x: np.ndarray, *, l: int, x_bits: int | None = None) -> np.ndarray:
    """Shares mod ``2^l`` of ``x²``, ``x`` shared mod ``2^l``; shape of ``x``.

    Plain: ``x² = x_S² + x_C² + 2·x_S·x_C``; the cross term is needed mod ``2^(l−1)`` only: the client's ``l − 1``
    low bits choose, the server's correlation is ``x_S·2^i`` mod ``2^(l−1−i)``.  Narrow (``x_bits = m``,
    ``L = m + 1 < l``; ``u = x + 2^(m−1)``, ``u = U − 2^L·w``, ``U = u'_S + u'_C``, ``w = a ∨ b``)::

        u² = U² − 2^(L+1)·w·U + 2^(2L)·w
           = [u'_S² − 2^(L+1)·a·u'_S + 2^(2L)·a]_S + [u'_C² − 2^(L+1)·b·u'_C]_C
             + 2·(u'_C·u'_S − b·(1−a)·(2^L·u'_S − 2^(2L−1)))   (client's L bits choose; the b term on bit L−1)
             − 2^(L+1)·a·(1−b)·u'_C                            (one COT: the server's a chooses)

    and ``x² = u² − 2^m·u + 2^(2m−2)``.  Cost: ``product_bits(l − 1, L')`` (``L' = min(L, l − 1)``) plus, narrow,
    ``1 + (l − L − 1)`` bits per element; one round trip.
    """
    l = check_width(l)
    xb = _width(x_bits, "x_bits")
    xs = _shares(x, l, "square x")
    shape = xs.shape
    if xs.size == 0:
        return np.zeros(shape, dtype=np.uint64)
    xv = xs.reshape(-1)
    server = party.is_server
    L = _chooser_bits(l, xb)
    if L == l:  # plain: 2·x_C·x_S mod 2^l from the product mod 2^(l−1)
        own = xv * xv
        if l == 1:
            return (own & mask(1)).reshape(shape)
        if server:
            got = await cross_product(party, f"{label}/c", chooser="client", l=l - 1, L=l - 1,
                                      correlation=_columns(xv, l - 1))
        else:
            got = await cross_product(party, f"{label}/c", chooser="client", l=l - 1, L=l - 1, value=xv)
        return ((own + (got << np.uint64(1))) & mask(l)).reshape(shape)
    assert xb is not None
    u, msb = _narrow_split(xv, server, xb, L)
    Lc = min(L, l - 1)
    extra = l - L - 1  # width of the a·(1−b)·u'_C term (it carries 2^(L+1)); <= 0: vanishes mod 2^l
    one = np.uint64(1)
    if server:
        local = u * u - (msb * u << np.uint64(L + 1)) + (msb << np.uint64(2 * L) if 2 * L < 64 else np.uint64(0))
        not_a = one - msb
        # top-bit correlation: 2^(L−1)·u'_S − 2^L·(1−a)·u'_S + 2^(2L−1)·(1−a), divided by 2^(L−1)
        top = u - (not_a * u << one) + (not_a << np.uint64(L) if L < 64 else np.uint64(0))
        cross = cross_product(party, f"{label}/c", chooser="client", l=l - 1, L=Lc, correlation=_columns(u, Lc, top))
        wrap = cross_product(party, f"{label}/s", chooser="server", l=extra, L=1, value=msb) if extra > 0 else None
    else:
        local = u * u - (msb * u << np.uint64(L + 1))
        cross = cross_product(party, f"{label}/c", chooser="client", l=l - 1, L=Lc, value=u)
        # −(1−b)·u'_C, the server's a chooses; shifted by 2^(L+1) below
        corr = (np.uint64(0) - (one - msb) * u)[:, None]
        wrap = cross_product(party, f"{label}/s", chooser="server", l=extra, L=1, correlation=corr) if extra > 0 else None
    if wrap is None:
        got_c, got_w = await cross, np.uint64(0)
    else:
        got_c, got_w = await asyncio.gather(cross, wrap)
    usq = local + (got_c << one) + (got_w << np.uint64(L + 1) if extra > 0 else np.uint64(0))
    # x² = u² − 2^m·u + 2^(2m−2) and 2^m·u = 2^m·x + 2^(2m−1) (u the full value): x² = u² − 2^m·x − 2^(2m−2)
    out = usq - (xv << np.uint64(xb))
    if server:
        out = out - np.uint64((1 << (2 * xb - 2)) & ((1 << 64) - 1))
    return (out & mask(l)).reshape(shape)
