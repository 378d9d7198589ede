import pytest

from aiompc import run_local
from aiompc.crypto import group
from aiompc.crypto.prg import PRG
from aiompc.errors import ProtocolError
from aiompc.party import Party
from aiompc.protocols.ot import base


def test_pure_functions_give_the_chosen_key_and_hide_the_other() -> None:
    rng = PRG(bytes(32))
    choices = [0, 1] * 8
    a, A = base.sender_start(rng)
    scalars, points = base.receiver_choose(rng, A, choices)
    pairs = base.sender_keys(a, A, points)
    keys = base.receiver_keys(scalars, A, points)
    for c, (k0, k1), k in zip(choices, pairs, keys):
        assert len(k) == base.KEY_BYTES and k0 != k1
        assert k == (k1 if c else k0)
    assert len({k for pair in pairs for k in pair}) == 2 * len(choices)  # all keys distinct


async def test_128_base_ots_over_a_channel() -> None:
    choices = PRG(bytes(32)).bits(128)

    async def sender(p: Party) -> list[tuple[bytes, bytes]]:
        return await base.send(p, p.sub("base", phase="offline"), 128)

    async def receiver(p: Party) -> list[bytes]:
        return await base.receive(p, p.sub("base", phase="offline"), choices)

    pairs, keys = await run_local(sender, receiver)
    assert [k for k in keys] == [pair[c] for pair, c in zip(pairs, choices)]
    assert all(k != pair[1 - c] for pair, c, k in zip(pairs, choices, keys))


async def test_receiver_rejects_an_invalid_sender_point() -> None:
    async def bad_sender(p: Party) -> None:
        await p.sub("base").send((1).to_bytes(32, "little"))  # the identity
        await p.sub("base").recv()

    async def receiver(p: Party) -> list[bytes]:
        return await base.receive(p, p.sub("base"), [0, 1])

    with pytest.raises(ProtocolError):
        await run_local(bad_sender, receiver)


async def test_sender_rejects_invalid_receiver_points() -> None:
    async def sender(p: Party) -> list[tuple[bytes, bytes]]:
        return await base.send(p, p.sub("base"), 2)

    async def bad_receiver(p: Party) -> None:
        await p.sub("base").recv()
        await p.sub("base").send(group.base_mul((7).to_bytes(32, "little")) + bytes(32))

    with pytest.raises(ProtocolError):
        await run_local(sender, bad_receiver)

    async def short_receiver(p: Party) -> None:
        await p.sub("base").recv()
        await p.sub("base").send(bytes(40))

    with pytest.raises(ProtocolError):
        await run_local(sender, short_receiver)
