"""Both sides of a direction driven in memory: the COT correlation across several extensions."""

import numpy as np
import pytest

from aiompc.crypto.ferret import FerretReceiver, FerretSchedule, FerretSender, toy_params
from aiompc.crypto.ferret.extension import PUBLISHED_SCHEDULE
from aiompc.crypto.ferret.params import BOOTSTRAP, MAIN
from aiompc.crypto.prg import PRG
from aiompc.errors import InputError, ParameterError, ProtocolError
from ferret_reference import random_blocks

ONE = np.uint64(1)
TOY = FerretSchedule(toy_params("toy-boot", t=16, k=256, log_bin=6), toy_params("toy-main", t=32, k=512, log_bin=7))


def initial_cots(nprng, m: int):
    delta = random_blocks(nprng, 1)[0] | np.array([1, 0], np.uint64)
    keys = random_blocks(nprng, m)
    keys[:, 0] &= ~ONE
    bits = nprng.integers(0, 2, size=m).astype(np.uint64)
    return delta, keys, keys ^ (bits[:, None] * delta)


def pair(nprng, schedule=TOY):
    delta, keys, macs = initial_cots(nprng, schedule.initial + 5)  # 5 extra: handed out after the first run
    return delta, FerretSender(schedule, delta, keys, PRG(nprng.bytes(32)), nonce_base=3), FerretReceiver(schedule, macs, nonce_base=3)


def run(sender: FerretSender, receiver: FerretReceiver, need: int):
    p = receiver.choose(need)
    msg = sender.respond(p)
    assert len(msg) == 16 + p.message_bytes
    got_s = sender.finish()
    got_r = receiver.absorb(p, msg)
    return p, got_s, got_r


def check_cots(delta: np.ndarray, keys: np.ndarray, macs: np.ndarray) -> np.ndarray:
    bits = FerretReceiver.choices(macs)
    assert np.array_equal(macs, keys ^ (bits[:, None].astype(np.uint64) * delta))
    assert not (keys[:, 0] & ONE).any()
    return bits


def test_extensions_in_a_row_keep_the_correlation_and_reuse_the_reserve(nprng) -> None:
    delta, s, r = pair(nprng)
    handed_s, handed_r, used = [], [], []
    # bootstrap first, then bootstrap while small, main once 2·672 have been handed out, main for a large request
    for need in (1, 1, 1, 1, 10_000):
        old_reserve_s, old_reserve_r = s.reserve.copy(), r.reserve.copy()
        p, ps, pr = run(s, r, need)
        used.append(p.name)
        assert [a.shape for a in ps] == [b.shape for b in pr]
        # the reserve consumed was the previous extension's, and the new one is fresh output
        assert s.reserve.shape[0] == r.reserve.shape[0] == TOY.reserve
        assert np.array_equal(ps[0][: old_reserve_s.shape[0] - p.reserved], old_reserve_s[p.reserved :])
        assert np.array_equal(pr[0][: old_reserve_r.shape[0] - p.reserved], old_reserve_r[p.reserved :])
        check_cots(delta, s.reserve, r.reserve)
        handed_s += ps
        handed_r += pr
        assert sum(a.shape[0] for a in ps) == old_reserve_s.shape[0] - p.reserved + p.n - TOY.reserve
    assert used == ["toy-boot", "toy-boot", "toy-boot", "toy-main", "toy-main"]
    keys, macs = np.concatenate(handed_s), np.concatenate(handed_r)
    bits = check_cots(delta, keys, macs)
    # fresh outputs: no repeated keys (a collision of random 127-bit values would be a bug)
    assert np.unique(keys, axis=0).shape[0] == keys.shape[0]
    # choice bits balanced (about 7,700 of them): |mean - 1/2| < 6 standard deviations (false alarm < 2e-9)
    assert abs(bits.mean() - 0.5) < 6 * 0.5 / np.sqrt(bits.size)


def test_mismatched_set_or_truncated_message_is_refused(nprng) -> None:
    _, s, r = pair(nprng)
    p = r.choose(1)
    msg = s.respond(p)
    with pytest.raises(ProtocolError):
        r.absorb(p, msg[:-1])
    with pytest.raises(ProtocolError):
        r.absorb(TOY.main, msg)
    with pytest.raises(ProtocolError):
        TOY.by_name("nonsense")
    assert TOY.by_name("toy-main") is TOY.main


def test_schedule_policy_and_validation() -> None:
    assert PUBLISHED_SCHEDULE.bootstrap is BOOTSTRAP and PUBLISHED_SCHEDULE.main is MAIN
    assert PUBLISHED_SCHEDULE.reserve == MAIN.reserved and PUBLISHED_SCHEDULE.initial == BOOTSTRAP.reserved
    choose = PUBLISHED_SCHEDULE.choose
    assert choose(True, 10**9, 0) is BOOTSTRAP  # the first extension's reserve only fits the bootstrap set
    assert choose(False, BOOTSTRAP.gain, 2 * BOOTSTRAP.gain) is BOOTSTRAP  # small request, small past demand
    assert choose(False, BOOTSTRAP.gain + 1, 0) is MAIN  # a large request
    assert choose(False, 1, 2 * BOOTSTRAP.gain + 1) is MAIN  # sustained small requests
    assert choose(False, 1, 0, 2 * BOOTSTRAP.gain + 1) is MAIN  # the session announced a large demand
    assert choose(False, 1, 0, 2 * BOOTSTRAP.gain) is BOOTSTRAP  # ... a small one: rent
    assert choose(True, 1, 0, 10**9) is BOOTSTRAP  # the first extension still bootstraps
    with pytest.raises(ParameterError, match="fewer"):
        FerretSchedule(toy_params("a", t=4, k=64, log_bin=6), toy_params("b", t=64, k=4096, log_bin=8))


def test_bad_initial_material_is_refused(nprng) -> None:
    delta, keys, macs = initial_cots(nprng, TOY.initial)
    with pytest.raises(InputError, match="least significant bit 0"):
        FerretSender(TOY, delta, keys | np.array([1, 0], np.uint64), PRG())
    with pytest.raises(InputError, match="least significant bit 1"):
        FerretSender(TOY, delta ^ np.array([1, 0], np.uint64), keys, PRG())
    with pytest.raises(InputError, match="needs"):
        FerretReceiver(TOY, macs[:-1])
    s = FerretSender(TOY, delta, keys, PRG())
    with pytest.raises(InputError):
        s.finish()
