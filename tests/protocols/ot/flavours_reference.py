"""The numpy 1-out-of-N masking that the compiled kernels replaced (test reference only)."""

from __future__ import annotations

import numpy as np

from aiompc.protocols.ot.engine import ReceiverCOTs, SenderCOTs
from aiompc.protocols.ot.pads import lane_dtype, pad_lanes, pads, pads_at, value_mask


def _drop_bit(x, t):  # type: ignore[no-untyped-def]
    return (x & ((1 << t) - 1)) | ((x >> (t + 1)) << t)


def one_of_n_mask_reference(cots: SenderCOTs, d: np.ndarray, msgs: np.ndarray, N: int, m: int, bits: int) -> np.ndarray:
    """Message ``x`` XOR lane ``drop_bit(x, t)`` of key ``K_t^{x_t}`` for every t, with numpy views."""
    n, width = msgs.shape
    per, full = width // N, 1 << m
    half = (full // 2) * per
    k0 = cots.q ^ (d.astype(np.uint64)[:, None] * cots.delta)
    k1 = k0 ^ cots.delta
    lanes = [pad_lanes(k, cots.tweaks, half, bits).reshape(n, m, half) for k in (k0, k1)]
    out = np.zeros((n, full * per), dtype=lane_dtype(bits))
    out[:, :width] = msgs
    for t in range(m):
        view = out.reshape(n, full >> (t + 1), 2, 1 << t, per)
        for b in (0, 1):
            view[:, :, b] ^= lanes[b][:, t].reshape(n, full >> (t + 1), 1 << t, per)
    return out[:, :width].astype(np.uint64) & value_mask(bits)


def one_of_n_unmask_reference(cots: ReceiverCOTs, c: np.ndarray, y: np.ndarray, m: int, bits: int) -> np.ndarray:
    """``y[i, c_i]`` XOR lane ``drop_bit(c_i, t)`` of the receiver's key ``t``, for every t."""
    n, N = y.shape[0], y.shape[1]
    per = int(np.prod(y.shape[2:], dtype=np.int64))
    first = _drop_bit(c[:, None], np.arange(m)[None, :]) * per
    keys = pads_at(cots.t, cots.tweaks, first.reshape(-1), per, bits).reshape(n, m, per)
    out = y.reshape(n, N, per)[np.arange(n), c].astype(np.uint64) ^ np.bitwise_xor.reduce(keys, axis=1)
    return (out & value_mask(bits)).reshape((n,) + y.shape[2:])


def widths_mask_reference(cots: SenderCOTs, d: np.ndarray, corr: np.ndarray, widths: tuple[int, ...]):  # type: ignore[no-untyped-def]
    """The numpy code the compiled correlated-OT-widths sender replaced: ``(x (n, m), y (m, n))``."""
    n, m = corr.shape
    masks = np.array([(1 << w) - 1 if w < 64 else (1 << 64) - 1 for w in widths], dtype=np.uint64)
    k0 = cots.q ^ (d.astype(np.uint64)[:, None] * cots.delta)
    k1 = k0 ^ cots.delta
    x = pads(k0, cots.tweaks, 1, max(widths)).reshape(n, m) & masks
    y = (pads(k1, cots.tweaks, 1, max(widths)).reshape(n, m) - x - corr) & masks
    return x, np.ascontiguousarray(y.T)


def widths_unmask_reference(cots: ReceiverCOTs, c: np.ndarray, y: np.ndarray, widths: tuple[int, ...]) -> np.ndarray:
    """The receiver's numpy code: ``(pad(t) − c·y) & masks``, ``y`` ``(m, n)``."""
    n, m = c.shape
    masks = np.array([(1 << w) - 1 if w < 64 else (1 << 64) - 1 for w in widths], dtype=np.uint64)
    pad = pads(cots.t, cots.tweaks, 1, max(widths)).reshape(n, m) & masks
    return (pad - c.astype(np.uint64) * y.T) & masks
