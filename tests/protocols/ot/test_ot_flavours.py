from typing import Any, Awaitable, Callable

import numpy as np
import pytest

from aiompc import run_local
from aiompc.crypto.prg import PRG
from aiompc.errors import InputError, ProtocolError
from aiompc.party import Party, Role
from aiompc.protocols.ot import bit_triples, chosen_ot, correlated_ot, one_of_n_ot, random_ot
from aiompc.protocols.ot import flavours
from aiompc.protocols.ot.engine import ReceiverCOTs, SenderCOTs
from aiompc.protocols.ot.engines import get_engine
from aiompc.protocols.ot.iknp import KAPPA, IKNPReceiver, IKNPSender
from aiompc.protocols.ot.pads import pads_at

SIZES = [1, 127, 128, 129]
ROLES: list[Role] = ["server", "client"]


async def as_roles(
    sender: Role, send_fn: Callable[[Party], Awaitable[Any]], recv_fn: Callable[[Party], Awaitable[Any]]
) -> tuple[Any, Any]:
    """Run ``send_fn`` on the party that is ``sender`` and ``recv_fn`` on the other; (sender's, receiver's) results."""
    if sender == "server":
        return await run_local(send_fn, recv_fn)
    r, s = await run_local(recv_fn, send_fn)
    return s, r


def vals(rng: np.random.Generator, bits: int, shape: tuple[int, ...]) -> np.ndarray:
    return rng.integers(0, 2**bits, shape, dtype=np.uint64) if bits < 64 else rng.integers(0, 2**64 - 1, shape, dtype=np.uint64, endpoint=True)


CASES = [(n, bits, k) for n in SIZES for bits, k in [(1, None), (13, None), (64, None), (5, 3), (64, 2)]]


@pytest.mark.parametrize("sender", ROLES)
async def test_chosen_ot(sender: Role, nprng: np.random.Generator) -> None:
    data = []
    for n, bits, k in CASES:
        shape = (n,) if k is None else (n, k)
        data.append((vals(nprng, bits, shape), vals(nprng, bits, shape), nprng.integers(0, 2, n).astype(np.uint8)))

    async def send(p: Party) -> list[Any]:
        return [await chosen_ot(p, f"ot{i}", sender=sender, bits=b, messages=(m0, m1)) for i, ((_, b, _), (m0, m1, _)) in enumerate(zip(CASES, data))]

    async def recv(p: Party) -> list[Any]:
        return [await chosen_ot(p, f"ot{i}", sender=sender, bits=b, choices=c) for i, ((_, b, _), (_, _, c)) in enumerate(zip(CASES, data))]

    s_out, r_out = await as_roles(sender, send, recv)
    assert all(x is None for x in s_out)
    for (m0, m1, c), got in zip(data, r_out):
        want = np.where((c == 1).reshape((-1,) + (1,) * (m0.ndim - 1)), m1, m0)
        assert got.dtype == np.uint64 and got.shape == m0.shape
        np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("sender", ROLES)
async def test_correlated_ot(sender: Role, nprng: np.random.Generator) -> None:
    data = []
    for n, bits, k in CASES:
        shape = (n,) if k is None else (n, k)
        data.append((vals(nprng, bits, shape), nprng.integers(0, 2, n).astype(np.uint8)))

    async def send(p: Party) -> list[Any]:
        return [await correlated_ot(p, f"c{i}", sender=sender, bits=b, correlation=d) for i, ((_, b, _), (d, _)) in enumerate(zip(CASES, data))]

    async def recv(p: Party) -> list[Any]:
        return [await correlated_ot(p, f"c{i}", sender=sender, bits=b, choices=c) for i, ((_, b, _), (_, c)) in enumerate(zip(CASES, data))]

    s_out, r_out = await as_roles(sender, send, recv)
    for (n, bits, k), (d, c), x, y in zip(CASES, data, s_out, r_out):
        mask = np.uint64((1 << bits) - 1)
        cc = c.astype(np.uint64).reshape((-1,) + (1,) * (d.ndim - 1))
        assert x.shape == y.shape == d.shape and x.dtype == y.dtype == np.uint64
        np.testing.assert_array_equal(y, (x + cc * d) & mask)
        assert bits < 64 or n < 100 or len(np.unique(x)) == x.size  # x looks uniform, not constant


@pytest.mark.parametrize("sender", ROLES)
async def test_one_of_n_ot(sender: Role, nprng: np.random.Generator) -> None:
    cases = [(n, N, bits, k) for n in SIZES for N, bits, k in [(2, 1, None), (3, 7, None), (16, 2, None), (16, 64, 2), (256, 4, None), (5, 9, 3)]]
    data = []
    for n, N, bits, k in cases:
        shape = (n, N) if k is None else (n, N, k)
        data.append((vals(nprng, bits, shape), nprng.integers(0, N, n)))

    async def send(p: Party) -> list[Any]:
        return [await one_of_n_ot(p, f"n{i}", sender=sender, bits=b, n_choices=N, messages=m) for i, ((_, N, b, _), (m, _)) in enumerate(zip(cases, data))]

    async def recv(p: Party) -> list[Any]:
        return [await one_of_n_ot(p, f"n{i}", sender=sender, bits=b, n_choices=N, choices=c) for i, ((_, N, b, _), (_, c)) in enumerate(zip(cases, data))]

    s_out, r_out = await as_roles(sender, send, recv)
    assert all(x is None for x in s_out)
    for (m, c), got in zip(data, r_out):
        np.testing.assert_array_equal(got, m[np.arange(len(c)), c])


@pytest.mark.parametrize("sender", ROLES)
async def test_random_ot(sender: Role) -> None:
    cases = [(n, bits) for n in SIZES + [5000] for bits in (1, 8, 37, 64)]

    async def run(p: Party) -> list[Any]:
        return [await random_ot(p, f"r{i}", sender=sender, n=n, bits=b) for i, (n, b) in enumerate(cases)]

    s_out, r_out = await as_roles(sender, run, run)
    for (n, bits), (m0, m1), (c, mc) in zip(cases, s_out, r_out):
        assert m0.shape == m1.shape == c.shape == mc.shape == (n,) and c.dtype == np.uint8
        np.testing.assert_array_equal(mc, np.where(c == 1, m1, m0))
        if bits < 64:
            assert int(max(m0.max(), m1.max())) < 1 << bits
        if n == 5000:
            assert 0.45 < c.mean() < 0.55
            assert (m0 != m1).mean() > 0.45  # 1-bit messages differ half the time, wider ones always
            assert 0.45 < (m0 & np.uint64(1)).mean() < 0.55


async def test_bit_triples() -> None:
    async def run(p: Party) -> list[Any]:
        return [await bit_triples(p, f"t{n}", n) for n in SIZES + [10_000]]

    s_out, c_out = await run_local(run, run)
    for (a1, b1, c1), (a2, b2, c2) in zip(s_out, c_out):
        for v in (a1, b1, c1, a2, b2, c2):
            assert v.dtype == np.uint8 and v.max(initial=0) <= 1
        np.testing.assert_array_equal((a1 ^ a2) & (b1 ^ b2), c1 ^ c2)
    a1, b1, c1 = s_out[-1]
    a2, b2, _ = c_out[-1]
    for v in (a1, b1, a2, b2, a1 ^ a2, (a1 ^ a2) & (b1 ^ b2) ^ c1):
        assert 0.2 < v.mean() < 0.8


def local_cots(n: int, seed: int = 9) -> tuple[SenderCOTs, ReceiverCOTs]:
    """Random COTs made locally with the IKNP halves (for tests of the pure derandomisation steps)."""
    rng = PRG(seed.to_bytes(32, "little"))
    pairs = [(rng.random_bytes(16), rng.random_bytes(16)) for _ in range(KAPPA)]
    dbits = rng.bits(KAPPA)
    snd = IKNPSender(dbits, [p[b] for p, b in zip(pairs, dbits)])
    choices, t, u = IKNPReceiver(pairs, rng.fork()).extend(-(-n // 128) * 128)
    tweaks = np.arange(n, dtype=np.uint64)
    return SenderCOTs(snd.extend(u)[:n], snd.delta, tweaks), ReceiverCOTs(choices[:n], t[:n], tweaks)


def test_receiver_cannot_unmask_the_other_message(nprng: np.random.Generator) -> None:
    n, bits = 2000, 16
    s, r = local_cots(n)
    m0, m1 = vals(nprng, bits, (n, 1)), vals(nprng, bits, (n, 1))
    c = nprng.integers(0, 2, n).astype(np.uint8)
    d = c ^ r.choices
    y0, y1 = flavours._chosen_mask(s, d, m0, m1, bits)
    got = flavours._chosen_unmask(r, c, y0, y1, bits)
    np.testing.assert_array_equal(got, np.where(c[:, None] == 1, m1, m0))
    other = flavours._chosen_unmask(r, 1 - c, y0, y1, bits)  # the receiver's key on the other ciphertext
    assert (other == np.where(c[:, None] == 1, m0, m1)).mean() < 0.01


def test_one_of_n_receiver_learns_only_its_choice(nprng: np.random.Generator) -> None:
    n, N, m, bits = 500, 16, 4, 8
    s, r = local_cots(n * m)
    msgs = vals(nprng, bits, (n, N))
    c = nprng.integers(0, N, n)
    cbits = ((c[:, None] >> np.arange(m)) & 1).astype(np.uint8).reshape(-1)
    y = flavours._one_of_n_mask(s, cbits ^ r.choices, msgs, N, m, bits)
    t, tw = r.t.reshape(n, m, 2), r.tweaks.reshape(n, m)
    hits = np.zeros((n, N), dtype=bool)
    for x in range(N):  # unmask position x with the keys the receiver holds
        pad = np.zeros((n, 1), dtype=np.uint64)
        for j in range(m):
            lane = (x & ((1 << j) - 1)) | ((x >> (j + 1)) << j)  # x without bit j
            pad ^= pads_at(np.ascontiguousarray(t[:, j]), tw[:, j].copy(), np.full(n, lane), 1, bits)
        hits[:, x] = (y[:, x : x + 1] ^ pad)[:, 0] == msgs[:, x]
    assert hits[np.arange(n), c].all()
    hits[np.arange(n), c] = False
    assert hits.mean() < 0.01


async def test_online_bytes_match_the_flavour_cost() -> None:
    """Measured online bytes per label = the flavour's own messages (+ framing, allocation)."""
    n = 4096
    choices = np.zeros(n, dtype=np.uint8)

    async def send(p: Party) -> Any:
        z = np.zeros(n, dtype=np.uint64)
        await chosen_ot(p, "chosen", sender="server", bits=8, messages=(z, z))
        await correlated_ot(p, "corr", sender="server", bits=20, correlation=z)
        await one_of_n_ot(p, "onen", sender="server", bits=2, n_choices=16, messages=np.zeros((n, 16), np.uint64))
        await random_ot(p, "rand", sender="server", n=n, bits=8)
        return p.channel.stats()

    async def recv(p: Party) -> Any:
        await chosen_ot(p, "chosen", sender="server", bits=8, choices=choices)
        await correlated_ot(p, "corr", sender="server", bits=20, choices=choices)
        await one_of_n_ot(p, "onen", sender="server", bits=2, n_choices=16, choices=choices)
        await random_ot(p, "rand", sender="server", n=n, bits=8)

    stats, _ = await run_local(send, recv)
    expect = {  # (receiver -> sender, sender -> receiver) in bytes, from the cost table
        "chosen": (n // 8, 2 * n),
        "corr": (n // 8, n * 20 // 8),
        "onen": (4 * n // 8, 16 * 2 * n // 8),
        "rand": (0, 0),
    }
    for label, (up, down) in expect.items():
        st = stats.labels[label]
        assert st.phase == "online"
        assert up <= st.bytes_recv <= up + 120 and down <= st.bytes_sent <= down + 80, (label, st)


async def test_empty_and_invalid_calls() -> None:
    async def send(p: Party) -> None:
        z = np.zeros(0, dtype=np.uint64)
        assert await chosen_ot(p, "e", sender="server", bits=4, messages=(z, z)) is None
        with pytest.raises(InputError):
            await chosen_ot(p, "x", sender="server", bits=0, messages=(z, z))
        with pytest.raises(InputError):
            await chosen_ot(p, "x", sender="server", bits=4, messages=(np.array([16], np.uint64),) * 2)
        with pytest.raises(InputError):
            await chosen_ot(p, "x", sender="server", bits=4, messages=(np.zeros(2, np.uint64), np.zeros(3, np.uint64)))
        with pytest.raises(InputError):
            await correlated_ot(p, "x", sender="server", bits=4, correlation=np.array([-1]))
        with pytest.raises(InputError):
            await one_of_n_ot(p, "x", sender="server", bits=4, n_choices=1, messages=np.zeros((2, 1), np.uint64))
        with pytest.raises(InputError):
            await one_of_n_ot(p, "x", sender="server", bits=4, n_choices=4, messages=np.zeros((2, 3), np.uint64))
        with pytest.raises(InputError):
            await chosen_ot(p, "x", sender="server", bits=4)
        assert await one_of_n_ot(p, "e1", sender="server", bits=4, n_choices=4, messages=np.zeros((0, 4), np.uint64)) is None
        assert await one_of_n_ot(p, "e2", sender="server", bits=4, n_choices=4,
                                 messages=np.zeros((0, 4, 3), np.uint64)) is None

    async def recv(p: Party) -> None:
        out = await chosen_ot(p, "e", sender="server", bits=4, choices=np.zeros(0, np.uint8))
        assert out is not None and out.size == 0
        for label in ("e1", "e2"):  # no instances: nothing to choose, an empty result
            out = await one_of_n_ot(p, label, sender="server", bits=4, n_choices=4, choices=np.zeros(0, np.int64))
            assert out is not None and out.size == 0
        with pytest.raises(InputError):
            await chosen_ot(p, "x", sender="server", bits=4, choices=np.array([2]))
        with pytest.raises(InputError):
            await one_of_n_ot(p, "x", sender="server", bits=4, n_choices=4, choices=np.array([4]))
        with pytest.raises(InputError):
            await correlated_ot(p, "x", sender="server", bits=4)

    await run_local(send, recv)


@pytest.mark.slow
async def test_millions_of_ots_in_chunks(nprng: np.random.Generator) -> None:
    n = 2_500_000  # three allocation chunks of CHUNK_COTS = 2^20
    d = nprng.integers(0, 2**8, n, dtype=np.uint64)
    c = nprng.integers(0, 2, n).astype(np.uint8)

    async def send(p: Party) -> Any:
        x = await correlated_ot(p, "big", sender="client", bits=8, correlation=d)
        return x, p.channel.stats(), get_engine(p).kind

    async def recv(p: Party) -> Any:
        return await correlated_ot(p, "big", sender="client", bits=8, choices=c)

    (x, stats, kind), y = await as_roles("client", send, recv)
    np.testing.assert_array_equal(y, (x + c.astype(np.uint64) * d) & np.uint64(255))
    assert stats.labels["big"].msgs_recv == 6  # per chunk: allocation + corrections
    if kind == "iknp":
        assert 16 * n <= stats.labels["ot/iknp/client"].bytes_recv < 16 * (n + 2**14)


async def test_malformed_replies_raise_protocol_errors() -> None:
    async def bad_sender(p: Party) -> None:
        await get_engine(p).sender_cots("x", 8, sender="server")
        await p.sub("x").recv()
        await p.sub("x").send([np.zeros(7, np.uint64), np.zeros(7, np.uint64)])  # 7 rows for 8 OTs

    async def receiver(p: Party) -> Any:
        return await chosen_ot(p, "x", sender="server", bits=4, choices=np.zeros(8, np.uint8))

    with pytest.raises(ProtocolError, match="malformed chosen-OT reply"):
        await run_local(bad_sender, receiver)

    async def sender(p: Party) -> Any:
        return await correlated_ot(p, "y", sender="server", bits=4, correlation=np.zeros(8, np.uint64))

    async def bad_receiver(p: Party) -> None:
        await get_engine(p).receiver_cots("y", 8, sender="server")
        await p.sub("y").send(np.full(8, 2, np.uint8))  # not bits

    with pytest.raises(ProtocolError, match="choice corrections"):
        await run_local(sender, bad_receiver)
