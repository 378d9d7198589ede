"""DReLU and ReLU on arithmetic shares mod ``2^l``.

``x = x_S + x_C mod 2^l`` read as a signed (two's-complement) value.  Its MSB is
``msb(x_S) ^ msb(x_C) ^ carry``, where ``carry`` is the carry out of the low ``l−1`` bits:
``carry = [low(x_S) + low(x_C) >= 2^(l−1)] = [2^(l−1) − 1 − low(x_S) < low(x_C)]``, one millionaire on
``l−1`` bits with the server as OT sender.  ``DReLU(x) = [x >= 0] = 1 ^ msb(x)``; ``ReLU(x) = DReLU(x)·x``
by a multiplexer.

These are the fixed-point Cheetah baseline's comparisons and keep Cheetah's own digit size ``m = 4``
(:data:`~aiompc.protocols.nonlinear.millionaire.DEFAULT_DIGIT_BITS`) unless told otherwise, so that the
comparison with Cheetah stays faithful; the quantized mode's requantization picks ``m`` per comparison
width from a cost model (:func:`~aiompc.protocols.nonlinear.millionaire.choose_digit_bits`).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from aiompc.errors import InputError
from aiompc.party import Party
from aiompc.ring import check_width, mask
from aiompc.protocols.nonlinear.boolean import mux
from aiompc.protocols.nonlinear.millionaire import DEFAULT_DIGIT_BITS, CompareTask, compare_batch

__all__ = ["drelu", "drelu_shifted", "relu", "msb_bits"]


def msb_bits(x: np.ndarray, l: int) -> np.ndarray:
    """Bit ``l−1`` of each ring element, as ``uint8``."""
    return ((np.asarray(x, dtype=np.uint64) >> np.uint64(l - 1)) & np.uint64(1)).astype(np.uint8)


async def drelu_shifted(
    party: Party,
    label: str,
    x: np.ndarray,
    *,
    l: int,
    offsets: Sequence[int],
    digit_bits: int = DEFAULT_DIGIT_BITS,
) -> np.ndarray:
    """XOR shares of ``DReLU(x − t) = [x − t >= 0]`` (signed, mod ``2^l``) for each public offset ``t``.

    Input: shares of ``x`` mod ``2^l``, any shape; output ``uint8`` shape ``(len(offsets), *x.shape)``.
    ``x − t`` is taken mod ``2^l``: the caller makes sure it does not overflow.  All offsets share one
    millionaire batch in which the client's operand (and so every OT choice) is the same: the leaf
    messages just carry ``2·len(offsets)`` bits instead of 2.

    Cost: one ``(l−1)``-bit millionaire with fanout ``k = len(offsets)`` — leaves
    ``Σ (w_j + k·2^w_j·(1|2))`` bits, ``k·(2(q−1) − ceil(log2 q))`` ANDs, ``q = ceil((l−1)/m)``.
    """
    l = check_width(l)
    xs = np.asarray(x, dtype=np.uint64) & mask(l)
    shape = xs.shape
    flat = xs.reshape(-1)
    k = len(offsets)
    if k == 0:
        raise InputError("drelu_shifted needs at least one offset")
    if party.is_server:
        shifted = (flat[None, :] - np.asarray([int(t) % (1 << l) for t in offsets], dtype=np.uint64)[:, None]) & mask(l)
    else:
        shifted = flat
    low_mask = np.uint64((1 << (l - 1)) - 1)
    if party.is_server:
        operand = low_mask - (shifted & low_mask)  # 2^(l-1) - 1 - low(x_S)
    else:
        operand = shifted & low_mask
    ((carry, _),) = await compare_batch(
        party, label, [CompareTask(l - 1, fanout=k)], [operand], sender="server", digit_bits=digit_bits
    )
    out = msb_bits(shifted, l) ^ carry  # (k, n) on the server, broadcast (n,) on the client
    if party.is_server:
        out ^= np.uint8(1)
    return out.reshape((k, *shape))


async def drelu(
    party: Party, label: str, x: np.ndarray, *, l: int, digit_bits: int = DEFAULT_DIGIT_BITS
) -> np.ndarray:
    """XOR shares (``uint8``, shape of ``x``) of ``DReLU(x) = [x >= 0]`` for ``x`` signed mod ``2^l``.

    Cost: one millionaire on ``l−1`` bits (server sends the tables).  E.g. ``l = 37``: 9 digits,
    308 bits of leaves and 12 ANDs = 356 bits online, 60 random COTs; ``l = 8``: 39 bits of leaves
    + 1 AND = 43 bits, 9 COTs.  Rounds: 2 (leaf OTs) + ``ceil(log2 q)``.
    """
    return (await drelu_shifted(party, label, x, l=l, offsets=(0,), digit_bits=digit_bits))[0]


async def relu(
    party: Party, label: str, x: np.ndarray, *, l: int, digit_bits: int = DEFAULT_DIGIT_BITS
) -> np.ndarray:
    """Shares mod ``2^l`` of ``ReLU(x) = max(x, 0)`` for ``x`` signed mod ``2^l`` (any shape).

    DReLU, then a multiplexer.  Cost: millionaire on ``l−1`` bits + ``2(l+1)`` bits for the
    multiplexer's two COTs (``l = 37``: 356 + 76 = 432 bits, 62 COTs; ``l = 8``: 43 + 18 = 61 bits,
    11 COTs); rounds: the millionaire's plus one COT round trip (5 for ``l = 8``, 8 for ``l = 37``).
    """
    l = check_width(l)
    xs = np.asarray(x, dtype=np.uint64) & mask(l)
    d = await drelu(party, f"{label}/drelu", xs, l=l, digit_bits=digit_bits)
    return await mux(party, f"{label}/mux", d, xs, l=l)
