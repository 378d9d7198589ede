"""Inputs for fuzzing what a peer controls: the wire decoder and the server's handshake checks.

Shared by the short hypothesis test (``tests/test_fuzz.py``, in CI) and the long run
(``benchmarks/fuzz_wire.py``).  :func:`mutants` turns valid encodings into near-valid ones (flipped bytes,
truncations, rewritten array headers with huge counts and odd bit widths), which reach far deeper into the
decoder than random bytes; :func:`check_decode` and :func:`check_hello` run one input and say whether the
outcome was allowed (a value, or an :class:`~aiompc.errors.AiompcError`).
"""

from __future__ import annotations

import random
import struct
from typing import Any, Iterator

import msgpack
import numpy as np

from aiompc import wire
from aiompc.errors import AiompcError, HandshakeError
from aiompc.party import Party
from aiompc import session

__all__ = ["seeds", "mutants", "check_decode", "check_hello", "DECODE_BUDGET"]

DECODE_BUDGET = 1 << 24
"""The decode budget the checks run under (what a server's channel would pass)."""


def seeds() -> list[bytes]:
    """Valid encodings of the message kinds the protocols send."""
    objs: list[Any] = [
        {"samples": 3},
        {"proto": "aiompc", "version": 1, "role": "client", "options": {"mode": "quantized", "exact": True}},
        wire.Packed(np.arange(100, dtype=np.uint64) % 16, 4),
        wire.Packed(np.ones(65, dtype=np.uint64), 1),
        [wire.Packed(np.arange(7, dtype=np.uint64), 37), wire.Packed(np.arange(7, dtype=np.uint64), 37)],
        np.arange(12, dtype=np.uint64).reshape(3, 4),
        np.zeros((2, 2), dtype=np.int8),
        {"a": [1, 2.5, None, True, "x", b"y"]},
    ]
    return [wire.encode(o) for o in objs]


def _ext(code: int, body: bytes) -> bytes:
    return msgpack.packb(msgpack.ExtType(code, body), use_bin_type=True)


def _forged_bits(rng: random.Random) -> bytes:
    """A bit-packed array header announcing a random (often huge) shape and width over a small payload."""
    bits = rng.choice([0, 1, 2, 3, 7, 8, 13, 37, 63, 64, 65, 255])
    ndim = rng.choice([0, 1, 2, 3, 9, 255])
    dims = [rng.choice([0, 1, 5, 64, 1 << 20, 1 << 31, (1 << 64) - 1]) for _ in range(min(ndim, 9))]
    head = struct.pack("<BB", bits, ndim) + b"".join(struct.pack("<Q", d) for d in dims)
    return _ext(2, head + bytes(rng.randrange(0, 300)))


def _forged_array(rng: random.Random) -> bytes:
    dt = rng.choice([b"<u8", b"|u1", b"<f8", b"O", b"<U4", b"V8", b"|b1", b""])
    dims = [rng.choice([0, 1, 3, 1 << 40, (1 << 64) - 1]) for _ in range(rng.randrange(0, 4))]
    head = bytes([len(dt)]) + dt + bytes([len(dims)]) + b"".join(struct.pack("<Q", d) for d in dims)
    return _ext(1, head + bytes(rng.randrange(0, 64)))


def mutants(rng: random.Random) -> Iterator[bytes]:
    """An endless stream of near-valid and forged messages."""
    base = seeds()
    while True:
        kind = rng.randrange(6)
        if kind == 0:
            yield _forged_bits(rng)
        elif kind == 1:
            yield _forged_array(rng)
        elif kind == 2:
            yield rng.randbytes(rng.randrange(0, 64))
        else:
            data = bytearray(rng.choice(base))
            for _ in range(rng.randrange(1, 4)):
                op = rng.randrange(3)
                if op == 0 and data:
                    data[rng.randrange(len(data))] = rng.randrange(256)
                elif op == 1 and data:
                    del data[rng.randrange(len(data)):]
                else:
                    data[rng.randrange(len(data) + 1):0] = rng.randbytes(rng.randrange(1, 9))
            yield bytes(data)


def check_decode(data: bytes) -> Any:
    """Decode ``data`` under :data:`DECODE_BUDGET`; returns the value or the typed error; raises anything else."""
    try:
        return wire.decode(data, max_decoded=DECODE_BUDGET)
    except AiompcError as exc:
        return exc


class _NoChannel:
    """Stands in for a channel: :func:`check_hello` never sends."""


def check_hello(hello: Any, token: str | None = None) -> Any:
    """Run the server's hello checks on ``hello``; the client's options or the :class:`HandshakeError`."""
    party = Party("server", _NoChannel(), options={"mode": "quantized", "exact": True, "output": "logits"})  # type: ignore[arg-type]
    try:
        return session.merge_options(party.options, session.check_hello(hello, party, token))
    except HandshakeError as exc:
        return exc
