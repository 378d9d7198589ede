import numpy as np
import pytest

from aiompc.crypto.prg import PRG
from aiompc.errors import InputError, ProtocolError
from aiompc.protocols.ot.iknp import KAPPA, IKNPReceiver, IKNPSender, delta_block


def iknp_pair(seed: int = 0) -> tuple[IKNPReceiver, IKNPSender]:
    """Both halves with base-OT keys dealt directly (the base OTs are tested on their own)."""
    rng = PRG(seed.to_bytes(32, "little"))
    pairs = [(rng.random_bytes(16), rng.random_bytes(16)) for _ in range(KAPPA)]
    delta_bits = rng.bits(KAPPA)
    return IKNPReceiver(pairs, rng.fork()), IKNPSender(delta_bits, [p[b] for p, b in zip(pairs, delta_bits)])


def cot_relation_holds(choices: np.ndarray, t: np.ndarray, q: np.ndarray, delta: np.ndarray) -> bool:
    return bool(((t ^ q) == choices.astype(np.uint64)[:, None] * delta).all())


@pytest.mark.parametrize("batches", [[128], [128, 256, 1024], [4096]])
def test_extension_gives_correlated_ots(batches: list[int]) -> None:
    recv, send = iknp_pair()
    for n in batches:
        choices, t, u = recv.extend(n)
        assert u.shape == (KAPPA, n // 8) and u.nbytes == 16 * n
        q = send.extend(u)
        assert choices.shape == (n,) and t.shape == q.shape == (n, 2)
        assert cot_relation_holds(choices, t, q, send.delta)
        assert 0.3 < choices.mean() < 0.7 or n < 512
        assert len(np.unique(q, axis=0)) == n  # fresh blocks


def test_delta_block_bit_order() -> None:
    bits = np.zeros(KAPPA, dtype=np.uint8)
    bits[[0, 63, 64, 127]] = 1
    assert delta_block(bits).tolist() == [1 | (1 << 63), 1 | (1 << 63)]


def test_out_of_sync_streams_break_the_relation() -> None:
    recv, send = iknp_pair()
    recv.extend(128)  # the sender never sees this batch
    choices, t, u = recv.extend(128)
    assert not cot_relation_holds(choices, t, send.extend(u), send.delta)


def test_bad_batches_are_rejected() -> None:
    recv, send = iknp_pair()
    with pytest.raises(InputError):
        recv.extend(100)
    with pytest.raises(ProtocolError):
        send.extend(np.zeros((64, 16), dtype=np.uint8))
    with pytest.raises(InputError):
        IKNPReceiver([(bytes(16), bytes(16))], PRG())
