"""Max-pool and argmax on shares mod ``2^l``: trees of pairwise maxima.

``max(a, b) = b + DReLU(a − b)·(a − b)``: one DReLU (an ``(l−1)``-bit millionaire) and one multiplexer
per pair.  ``a − b`` is computed in the ring, so the inputs must lie in a range narrower than
``2^(l−1)`` (e.g. signed values in ``[−2^(l−2), 2^(l−2))``, or unsigned ones below ``2^(l−1)``, which
covers every post-ReLU activation); all pairs of a tree level share one millionaire batch and one
multiplexer call, so a reduction over ``m`` values takes ``ceil(log2 m)`` levels.

**Narrow ring** (``value_range=(lo, hi)``, public bounds of the inputs, e.g. 4-bit activations shared in
a 16-bit ring): the server subtracts ``lo`` and both parties reduce their shares mod ``2^w``,
``w = bitlen(hi − lo) + 1`` (local: reduction is a ring homomorphism, and every difference of two values
fits ``w`` signed bits); the tree runs on ``w`` bits — ``(w−1)``-bit millionaires and ``w``-bit
multiplexers instead of ``l``-bit ones — and the max-pool's result, known to lie in ``[0, 2^(w−1))``,
is extended back to ``l`` bits with one COT (known MSB: ``1 + l − w`` bits per output).  The argmax needs
no extension (its output is the index).  ``digit_bits=None`` picks the millionaire's digit size per
width (:func:`~aiompc.protocols.nonlinear.millionaire.choose_digit_bits`); the default stays Cheetah's
``m = 4`` (the fixed-point baseline's max-pool).
"""

from __future__ import annotations

import asyncio

import numpy as np

from aiompc.errors import InputError, ProtocolError
from aiompc.party import Party, Role
from aiompc.ring import check_width, mask
from aiompc.wire import Packed
from aiompc.protocols.nonlinear.boolean import mux
from aiompc.protocols.nonlinear.extension import extend
from aiompc.protocols.nonlinear.millionaire import DEFAULT_DIGIT_BITS, CompareTask, choose_digit_bits
from aiompc.protocols.nonlinear.relu import drelu

__all__ = ["max_reduce", "maxpool2d", "argmax", "pool_windows", "narrow_width"]


def narrow_width(l: int, value_range: tuple[int, int] | None) -> int:
    """The ring a max over values in ``value_range`` needs: ``bitlen(hi − lo) + 1`` (at least 2), at most ``l``."""
    if value_range is None:
        return l
    lo, hi = int(value_range[0]), int(value_range[1])
    if lo > hi:
        raise InputError(f"value_range {value_range} is empty")
    return min(l, max(2, (hi - lo).bit_length() + 1))


def _to_narrow(party: Party, x: np.ndarray, lo: int, w: int) -> np.ndarray:
    """Shares mod ``2^w`` of ``x − lo`` (the server subtracts ``lo``)."""
    off = np.uint64(lo % (1 << 64)) if party.is_server else np.uint64(0)
    return (np.asarray(x, dtype=np.uint64) - off) & mask(w)


def _digits(party: Party, digit_bits: int | None, w: int) -> int:
    return digit_bits if digit_bits is not None else choose_digit_bits(party, [CompareTask(max(w - 1, 0))])


def pool_windows(x: np.ndarray, kernel: int | tuple[int, int], stride: int | tuple[int, int] | None, padding: int | tuple[int, int]) -> np.ndarray:
    """The ``k_h·k_w`` values of every pooling window: shape ``(..., C, H_out, W_out, k_h·k_w)`` (local).

    Padding replicates the edge (``mode="edge"``), which gives the max of the real elements of each
    window, i.e. the ``−inf`` padding of PyTorch/ONNX, as long as ``padding < kernel``.
    """
    kh, kw = (kernel, kernel) if isinstance(kernel, int) else kernel
    sh, sw = (kh, kw) if stride is None else ((stride, stride) if isinstance(stride, int) else stride)
    ph, pw = (padding, padding) if isinstance(padding, int) else padding
    if min(kh, kw, sh, sw) < 1 or min(ph, pw) < 0 or ph >= kh or pw >= kw:
        raise InputError(f"max-pool needs kernel, stride >= 1 and 0 <= padding < kernel; got k={kernel} s={stride} p={padding}")
    if x.ndim < 2:
        raise InputError(f"max-pool input needs shape (..., H, W); got {x.shape}")
    pad = [(0, 0)] * (x.ndim - 2) + [(ph, ph), (pw, pw)]
    xp = np.pad(x, pad, mode="edge") if (ph or pw) else x
    if xp.shape[-2] < kh or xp.shape[-1] < kw:
        raise InputError(f"max-pool window {kh}x{kw} larger than the padded input {xp.shape[-2:]}")
    win = np.lib.stride_tricks.sliding_window_view(xp, (kh, kw), axis=(-2, -1))[..., ::sh, ::sw, :, :]
    return win.reshape(*win.shape[:-2], kh * kw)


async def max_reduce(
    party: Party, label: str, x: np.ndarray, *, l: int, digit_bits: int = DEFAULT_DIGIT_BITS
) -> np.ndarray:
    """Shares mod ``2^l`` of the maximum over the last axis of ``x`` (signed, range narrower than ``2^(l−1)``).

    Cost for ``m`` values: ``m − 1`` DReLUs (``(l−1)``-bit millionaires) and multiplexers (``2(l+1)``
    bits each), in ``ceil(log2 m)`` levels of (millionaire, COT round trip).
    """
    l = check_width(l)
    v = np.asarray(x, dtype=np.uint64) & mask(l)
    if v.ndim < 1 or v.shape[-1] == 0:
        raise InputError("max_reduce needs a non-empty last axis")
    lead = v.shape[:-1]
    v = v.reshape(-1, v.shape[-1])
    level = 0
    while v.shape[1] > 1:
        p = v.shape[1] // 2
        a, b = v[:, 0 : 2 * p : 2], v[:, 1 : 2 * p : 2]
        d = (a - b) & mask(l)
        g = await drelu(party, f"{label}/l{level}/drelu", d, l=l, digit_bits=digit_bits)
        m = (b + await mux(party, f"{label}/l{level}/mux", g, d, l=l)) & mask(l)
        v = np.concatenate([m, v[:, 2 * p :]], axis=1)
        level += 1
    return v[:, 0].reshape(lead)


async def maxpool2d(
    party: Party,
    label: str,
    x: np.ndarray,
    *,
    l: int,
    kernel: int | tuple[int, int],
    stride: int | tuple[int, int] | None = None,
    padding: int | tuple[int, int] = 0,
    digit_bits: int | None = DEFAULT_DIGIT_BITS,
    value_range: tuple[int, int] | None = None,
) -> np.ndarray:
    """Shares mod ``2^l`` of the max-pool of ``x`` (shape ``(..., C, H, W)``; stride defaults to the kernel).

    Output shape ``(..., C, H_out, W_out)`` with ``H_out = (H + 2p − k)//s + 1``.  Padded positions
    never win (``−inf`` padding).  Input range as in :func:`max_reduce`; with ``value_range`` (public
    bounds of every input) the tree runs on the narrow ring of the module docstring.
    Cost per output: ``k² − 1`` comparisons + multiplexers, ``ceil(log2 k²)`` levels (2 for 2×2, 4 for 3×3),
    on ``l`` bits or on ``w`` bits plus one COT of ``l − w`` bits.
    """
    l = check_width(l)
    windows = pool_windows(np.asarray(x, dtype=np.uint64), kernel, stride, padding)
    w = narrow_width(l, value_range)
    if w >= l or value_range is None:
        return await max_reduce(party, label, windows, l=l, digit_bits=_digits(party, digit_bits, l))
    lo = int(value_range[0])
    m = await max_reduce(party, label, _to_narrow(party, windows, lo, w), l=w, digit_bits=_digits(party, digit_bits, w))
    y = await extend(party, f"{label}/ext", m, l=w, l_out=l, signed=False, msb_known_zero=True)
    return (y + (np.uint64(lo % (1 << 64)) if party.is_server else np.uint64(0))) & mask(l)


async def argmax(
    party: Party,
    label: str,
    x: np.ndarray,
    *,
    l: int,
    index_bits: int | None = None,
    reveal_to: Role | None = None,
    digit_bits: int | None = DEFAULT_DIGIT_BITS,
    value_range: tuple[int, int] | None = None,
) -> np.ndarray | None:
    """Index of the maximum over the last axis of ``x`` (first occurrence on ties, as ``numpy.argmax``).

    Input: shares mod ``2^l`` (signed, range narrower than ``2^(l−1)``), shape ``(..., m)``.  Output:
    with ``reveal_to=None``, shares mod ``2^index_bits`` (default ``max(1, ceil(log2 m))``) of the index,
    shape ``(...)``; with ``reveal_to="client"`` (or ``"server"``) that party gets the index in the clear
    as ``int64`` and the other ``None`` (one message of ``index_bits`` bits per element).

    The tree carries ``(max, index)`` pairs; the lower-index operand of each pair wins ties.
    Cost for ``m`` values: ``m − 1`` DReLUs plus multiplexers of ``l`` and ``index_bits`` bits,
    ``ceil(log2 m)`` levels; with ``value_range`` on the narrow ring of the module docstring (``w`` bits).
    """
    l = check_width(l)
    w = narrow_width(l, value_range)
    if value_range is not None and w < l:
        x, l = _to_narrow(party, np.asarray(x, dtype=np.uint64), int(value_range[0]), w), w
    digit_bits = _digits(party, digit_bits, l)
    v = np.asarray(x, dtype=np.uint64) & mask(l)
    if v.ndim < 1 or v.shape[-1] == 0:
        raise InputError("argmax needs a non-empty last axis")
    m = v.shape[-1]
    ib = check_width(index_bits if index_bits is not None else max(1, (m - 1).bit_length()))
    if (m - 1) >> ib:
        raise InputError(f"argmax: index_bits={ib} cannot hold indices up to {m - 1}")
    lead = v.shape[:-1]
    v = v.reshape(-1, m)
    idx = np.broadcast_to(np.arange(m, dtype=np.uint64) if party.is_server else np.zeros(m, np.uint64), v.shape).copy()
    level = 0
    while v.shape[1] > 1:
        p = v.shape[1] // 2
        a, b = v[:, 0 : 2 * p : 2], v[:, 1 : 2 * p : 2]
        ia, ib_ = idx[:, 0 : 2 * p : 2], idx[:, 1 : 2 * p : 2]
        d = (a - b) & mask(l)
        g = await drelu(party, f"{label}/l{level}/drelu", d, l=l, digit_bits=digit_bits)  # [a >= b]
        dv, di = await asyncio.gather(
            mux(party, f"{label}/l{level}/mux", g, d, l=l),
            mux(party, f"{label}/l{level}/muxi", g, (ia - ib_) & mask(ib), l=ib),
        )
        v = np.concatenate([(b + dv) & mask(l), v[:, 2 * p :]], axis=1)
        idx = np.concatenate([(ib_ + di) & mask(ib), idx[:, 2 * p :]], axis=1)
        level += 1
    out = idx[:, 0].reshape(lead)
    if reveal_to is None:
        return out
    if reveal_to not in ("server", "client"):
        raise InputError(f"reveal_to must be 'server', 'client' or None; got {reveal_to!r}")
    sub = party.sub(f"{label}/reveal")
    if party.role != reveal_to:
        await sub.send(Packed(out.reshape(-1), ib))
        return None
    peer = await sub.recv()
    if not isinstance(peer, np.ndarray) or peer.size != out.size:
        raise ProtocolError(f"argmax {label!r}: expected {out.size} index shares from the peer")
    return ((out + peer.reshape(out.shape).astype(np.uint64)) & mask(ib)).astype(np.int64)
