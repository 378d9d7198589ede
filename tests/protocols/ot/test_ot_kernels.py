"""The compiled derandomisation kernels (aiompc.kernels.ot) against numpy references: COT keys, the
1-out-of-N masking of the sender and the unmasking of the receiver (the numpy code they replaced), on
random and edge inputs (all-zero and all-one blocks, N not a power of two, every lane width)."""

from __future__ import annotations

import numpy as np
import pytest

from aiompc.kernels.ot import cot_keys, cot_keys_paired, feed_forward, one_of_n_offsets, tweak_blocks
from aiompc.protocols.ot.engine import ReceiverCOTs, SenderCOTs
from aiompc.protocols.ot import flavours
from aiompc.protocols.ot.flavours import _one_of_n_mask, _one_of_n_unmask, _widths_mask, _widths_unmask
from flavours_reference import (
    one_of_n_mask_reference,
    one_of_n_unmask_reference,
    widths_mask_reference,
    widths_unmask_reference,
)

ONES = np.iinfo(np.uint64).max


def _blocks(rng: np.random.Generator, n: int, kind: str = "random") -> np.ndarray:
    if kind == "zeros":
        return np.zeros((n, 2), np.uint64)
    if kind == "ones":
        return np.full((n, 2), ONES, np.uint64)
    return rng.integers(0, ONES, (n, 2), dtype=np.uint64, endpoint=True)


@pytest.mark.parametrize("kind", ["random", "zeros", "ones"])
def test_cot_keys_tweaks_and_feed_forward_match_numpy(kind: str) -> None:
    rng = np.random.default_rng(3)
    n, nb = 37, 3
    q, delta = _blocks(rng, n, kind), _blocks(rng, 1, kind)[0]
    d = rng.integers(0, 2, n).astype(np.uint8)
    keys = np.empty((2 * n, 2), np.uint64)
    cot_keys(q, d, delta, keys)
    k0 = q ^ (d.astype(np.uint64)[:, None] * delta)
    assert np.array_equal(keys[:n], k0) and np.array_equal(keys[n:], k0 ^ delta)
    paired = np.empty((2 * n, 2), np.uint64)
    cot_keys_paired(q, d, delta, paired)
    assert np.array_equal(paired[0::2], k0) and np.array_equal(paired[1::2], k0 ^ delta)
    index = rng.integers(0, ONES, n, dtype=np.uint64, endpoint=True)
    first = np.where(np.arange(n) % 2, np.uint64(ONES - 1), rng.integers(0, 9, n).astype(np.uint64))  # wraps too
    tw = np.empty((n * nb, 2), np.uint64)
    tweak_blocks(q, index, first, nb, tw)
    want = np.empty((n, nb, 2), np.uint64)
    want[:, :, 0] = (q[:, 0] ^ index)[:, None]
    with np.errstate(over="ignore"):
        want[:, :, 1] = q[:, 1][:, None] ^ (first[:, None] + np.arange(nb, dtype=np.uint64)[None, :])
    assert np.array_equal(tw.reshape(n, nb, 2), want)
    y = _blocks(rng, n * nb)
    expect = (y.reshape(n, nb, 2) ^ q[:, None, :]).reshape(-1, 2)
    feed_forward(y, q, nb)
    assert np.array_equal(y, expect)


@pytest.mark.parametrize("N,per,bits", [(2, 1, 1), (16, 1, 2), (3, 2, 8), (5, 1, 16), (16, 3, 37), (256, 1, 1),
                                         (7, 2, 64), (200, 1, 37), (256, 1, 64), (129, 2, 16)])
@pytest.mark.parametrize("kind", ["random", "ones"])
@pytest.mark.parametrize("piece", [None, 1, 5, 300])  # hash blocks per piece: the default, one instance, a few
def test_one_of_n_mask_and_unmask_match_the_numpy_code(
    N: int, per: int, bits: int, kind: str, piece: int | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    if piece is not None:
        monkeypatch.setattr(flavours, "MASK_PIECE_BLOCKS", piece)
    rng = np.random.default_rng(N * 100 + per + bits)
    n, m = 29, (N - 1).bit_length()
    q, delta = _blocks(rng, n * m, kind), _blocks(rng, 1)[0] | np.array([1, 0], np.uint64)
    tweaks = np.arange(1000, 1000 + n * m, dtype=np.uint64)
    d = rng.integers(0, 2, n * m).astype(np.uint8)
    top = ONES if bits == 64 else (1 << bits) - 1
    msgs = rng.integers(0, top, (n, N * per), dtype=np.uint64, endpoint=True)
    msgs[0] = top  # edge values: all ones, zero
    msgs[1] = 0
    sender = SenderCOTs(q, delta, tweaks)
    got = _one_of_n_mask(sender, d, msgs, N, m, bits)
    assert np.array_equal(got, one_of_n_mask_reference(sender, d, msgs, N, m, bits))
    # the receiver: choice bits e (its COT bits) with t = q ⊕ e·Δ, corrections d = c ⊕ e
    c = rng.integers(0, N, n)
    c[:2] = [0, N - 1]
    cbits = ((c[:, None] >> np.arange(m)) & 1).astype(np.uint8).reshape(-1)
    e = cbits ^ d
    receiver = ReceiverCOTs(e, q ^ (e.astype(np.uint64)[:, None] * delta), tweaks)
    y = got.reshape(n, N, per) if per > 1 else got
    out = _one_of_n_unmask(receiver, c, y, m, bits)
    assert np.array_equal(out, one_of_n_unmask_reference(receiver, c, y, m, bits))
    assert np.array_equal(out.reshape(n, per), msgs.reshape(n, N, per)[np.arange(n), c])


@pytest.mark.parametrize("widths", [(1,), (37, 36, 35, 34), (64, 63, 1, 8), (16,) * 5, tuple(range(37, 0, -1))])
@pytest.mark.parametrize("kind", ["random", "ones", "zeros"])
@pytest.mark.parametrize("piece", [None, 1, 50])  # COTs per piece: the default, one instance, a few
def test_widths_mask_and_unmask_match_the_numpy_code(
    widths: tuple[int, ...], kind: str, piece: int | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    if piece is not None:
        monkeypatch.setattr(flavours, "WIDTHS_PIECE_COTS", piece)
    rng = np.random.default_rng(len(widths) * 7 + sum(widths))
    n, m = 29, len(widths)
    masks = np.array([(1 << w) - 1 if w < 64 else ONES for w in widths], dtype=np.uint64)
    q, delta = _blocks(rng, n * m, kind), _blocks(rng, 1)[0] | np.array([1, 0], np.uint64)
    tweaks = np.arange(77, 77 + n * m, dtype=np.uint64)
    d = rng.integers(0, 2, n * m).astype(np.uint8)
    corr = rng.integers(0, ONES, (n, m), dtype=np.uint64, endpoint=True) & masks
    corr[0], corr[1] = masks, 0  # edge correlations: all ones, zero
    sender = SenderCOTs(q, delta, tweaks)
    x, y = _widths_mask(sender, d, corr, masks)
    wx, wy = widths_mask_reference(sender, d, corr, widths)
    assert np.array_equal(x, wx) and np.array_equal(y, wy)
    # the receiver with COT bits e (t = q ⊕ e·Δ) and choices c = d ⊕ e gets x + c·Δ
    c = rng.integers(0, 2, (n, m)).astype(np.uint8)
    e = c.reshape(-1) ^ d
    receiver = ReceiverCOTs(e, q ^ (e.astype(np.uint64)[:, None] * delta), tweaks)
    got = _widths_unmask(receiver, c, y, masks)
    assert np.array_equal(got, widths_unmask_reference(receiver, c, y, widths))
    assert np.array_equal(got, (x + c.astype(np.uint64) * corr) & masks)


@pytest.mark.parametrize("N,per,row_lanes", [(2, 1, 16), (16, 1, 16), (5, 3, 32), (256, 1, 128)])
def test_one_of_n_offsets_by_definition(N: int, per: int, row_lanes: int) -> None:
    m = (N - 1).bit_length()
    off = one_of_n_offsets(N, m, per, row_lanes)
    for x in range(N):
        for t in range(m):
            dropped = (x & ((1 << t) - 1)) | ((x >> (t + 1)) << t)
            for p in range(per):
                assert off[t, x * per + p] == (2 * t + ((x >> t) & 1)) * row_lanes + dropped * per + p
