import numpy as np
import pytest

from aiompc.crypto.ferret.spcot import TWEAK_DOMAIN, MpcotMessage, mpcot_receive, mpcot_send, punctured_positions, tweaks
from aiompc.crypto.prg import PRG
from aiompc.errors import InputError, ProtocolError
from ferret_reference import random_blocks

LSB = np.uint64(1)


def _reserved_cots(nprng, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Random COTs in the engine's convention: Δ odd, keys even, MACs = keys ⊕ b·Δ."""
    delta = random_blocks(nprng, 1)[0] | np.array([1, 0], np.uint64)
    keys = random_blocks(nprng, n)
    keys[:, 0] &= ~LSB
    bits = nprng.integers(0, 2, size=n).astype(np.uint8)
    macs = keys ^ (bits[:, None].astype(np.uint64) * delta)
    return delta, keys, bits, macs


@pytest.mark.parametrize("t,h", [(1, 1), (7, 3), (50, 6)])
def test_mpcot_gives_regular_noise_correlation(nprng, t: int, h: int) -> None:
    delta, keys, bits, macs = _reserved_cots(nprng, t * h)
    roots = PRG(nprng.bytes(32)).words((t, 2))
    v, msg = mpcot_send(delta, roots, keys, h, nonce=7)
    wire = msg.to_array()
    assert wire.shape == (t * (2 * h + 1), 2)
    w, alpha = mpcot_receive(macs, MpcotMessage.from_array(wire, t, h), h, nonce=7)
    e = np.zeros(t << h, np.uint64)
    e[(np.arange(t) << h) + alpha] = 1
    assert np.array_equal(w ^ v, e[:, None] * delta)
    assert not (v[:, 0] & LSB).any()
    assert np.array_equal(w[:, 0] & LSB, e)
    # α is the complement of the choice bits, most significant level first
    want = [int("".join(str(1 - b) for b in bits[i * h : (i + 1) * h]), 2) for i in range(t)]
    assert alpha.tolist() == want == punctured_positions(macs, t, h).tolist()


def test_mismatched_nonce_breaks_the_correlation(nprng) -> None:
    t, h = 8, 4
    delta, keys, _, macs = _reserved_cots(nprng, t * h)
    v, msg = mpcot_send(delta, random_blocks(nprng, t), keys, h, nonce=1)
    w, _ = mpcot_receive(macs, msg, h, nonce=2)
    assert (w ^ v).any(axis=1).sum() > t  # far more than the t noise positions differ


def test_bad_inputs_raise(nprng) -> None:
    delta, keys, _, macs = _reserved_cots(nprng, 12)
    with pytest.raises(InputError, match="least significant bit"):
        mpcot_send(delta & np.array([~LSB, ~np.uint64(0)]), random_blocks(nprng, 4), keys, 3, 0)
    with pytest.raises(InputError):
        mpcot_send(delta, random_blocks(nprng, 4), keys[:11], 3, 0)
    with pytest.raises(ProtocolError):
        MpcotMessage.from_array(np.zeros((27, 2), np.uint64), 4, 3)


def test_tweaks_are_unique_and_outside_the_flavours_domain() -> None:
    """The flavours hash handed-out COTs with a small second tweak word (a block counter); ours has high bits set."""
    a, b = tweaks(100, 0), tweaks(100, 1)
    both = np.concatenate([a, b])
    assert np.unique(both, axis=0).shape[0] == 200
    assert ((both[:, 1] >> np.uint64(48)) == np.uint64(TWEAK_DOMAIN >> 48)).all()
    with pytest.raises(InputError):
        tweaks(1, 1 << 48)
