"""Short fuzz runs (CI): the wire decoder and the server's handshake checks raise nothing but
``aiompc.errors`` types, and a decode allocates at most a bounded multiple of its input (under the channel's
decode budget).  ``benchmarks/fuzz_wire.py`` runs the same checks for millions of inputs."""

from __future__ import annotations

import random
import tracemalloc

import msgpack
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aiompc.errors import AiompcError, HandshakeError
from aiompc.fuzzing import DECODE_BUDGET, check_decode, check_hello, mutants

FAST = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])

scalars = st.one_of(st.none(), st.booleans(), st.integers(min_value=-(1 << 64), max_value=1 << 64),
                    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=300), st.binary(max_size=40))
values = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=5),
                                                      st.dictionaries(st.text(max_size=8), inner, max_size=5)),
                      max_leaves=20)


@FAST
@given(st.binary(max_size=256))
def test_random_bytes_decode_to_a_value_or_a_typed_error(data: bytes) -> None:
    check_decode(data)  # anything but an AiompcError propagates and fails the test


@FAST
@given(st.integers(min_value=0, max_value=2**32 - 1))
def test_forged_and_mutated_messages_decode_to_a_value_or_a_typed_error(seed: int) -> None:
    gen = mutants(random.Random(seed))
    for _ in range(20):
        check_decode(next(gen))


@settings(max_examples=60, deadline=None)
@given(st.integers(min_value=0, max_value=2**32 - 1))
def test_a_decode_allocates_a_bounded_multiple_of_its_input(seed: int) -> None:
    gen = mutants(random.Random(seed))
    for _ in range(5):
        data = next(gen)
        tracemalloc.start()
        try:
            check_decode(data)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert peak <= 80 * len(data) + 64 * 1024, (peak, len(data))


def test_the_decode_budget_refuses_an_expansion_before_allocating() -> None:
    body = bytes([1, 1]) + (8 * 1024 * 1024 * 8).to_bytes(8, "little") + bytes(8 * 1024 * 1024)
    bomb = msgpack.packb(msgpack.ExtType(2, body))
    tracemalloc.start()
    try:
        got = check_decode(bomb)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert isinstance(got, AiompcError) and "budget" in str(got)
    assert 8 * 8 * 8 * 1024 * 1024 > DECODE_BUDGET  # 64 Mi values of 1 bit would be 512 MiB as uint64
    assert peak < 2 * len(bomb)  # msgpack copies the payload once; nothing is expanded


@FAST
@given(values)
def test_any_hello_is_accepted_or_refused_with_a_handshake_error(hello: object) -> None:
    check_hello(hello)


@FAST
@given(st.dictionaries(st.text(max_size=10), values, max_size=6), st.one_of(st.none(), values))
def test_any_options_and_token_are_accepted_or_refused_with_a_handshake_error(options: dict, token: object) -> None:
    hello = {"proto": "aiompc", "version": 1, "role": "client", "options": options}
    if token is not None:
        hello["token"] = token
    got = check_hello(hello, token="secret")
    assert isinstance(got, HandshakeError)  # no token matches "secret" unless given exactly
