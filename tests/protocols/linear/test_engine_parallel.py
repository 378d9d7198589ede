"""The server's steps split over threads: absorbing a chunk (rows of the accumulator) and re-randomising a unit's
results (chunks of ciphertexts) give results that do not depend on the number of threads, equal the one-pass
computations, and keep their temporaries bounded."""

from __future__ import annotations

import numpy as np
import pytest

from aiompc.crypto.he import Ciphertext, add, decrypt, keygen, multiply_accumulate, public_key
from aiompc.crypto.he.packing import refresh
from aiompc.crypto.prg import PRG
from aiompc.errors import InputError
from aiompc.protocols.linear import prepared
from aiompc.protocols.linear.engine import absorb_chunk, encrypt_chunk, input_chunks, refresh_batch
from aiompc.protocols.linear.prepared import prepare_weights
from tests.protocols.linear.test_prepared import _plans


def _upload(plan, nprng: np.random.Generator):
    lay, l = plan.layout, plan.l
    x = nprng.integers(0, 1 << l, lay.in_shape, dtype=np.uint64)
    xs = nprng.integers(0, 1 << l, lay.in_shape, dtype=np.uint64)
    xc = (x - xs) & np.uint64((1 << l) - 1)
    sk = keygen(plan.he, PRG(b"\x02" * 32))
    polys_c, polys_s = lay.input_polys(xc, l), lay.input_polys(xs, l)
    chunks = input_chunks(plan)
    uploads = [encrypt_chunk(sk, polys_c[0, k0:k1], PRG(bytes([k0 % 256]) * 32)) for k0, k1 in chunks]
    return sk, chunks, uploads, polys_s[0]


def _one_pass(plan, chunks, uploads, own, weights) -> np.ndarray:
    """The reference: every chunk multiplied by its whole weight block with :func:`multiply_accumulate`, summed."""
    from aiompc.crypto.he import SeededCiphertext, add_plain

    acc = None
    for (k0, k1), data in zip(chunks, uploads):
        ct = add_plain(SeededCiphertext.from_bytes(plan.he, data).expand(), own[k0:k1]).to_ntt()
        block, mask = weights.block(k0, k1)
        w = block.data * mask[:, :, None, None]  # structurally zero blocks are zero plaintexts
        part = multiply_accumulate(ct, type(block)(plan.he, w, block.norm, block.count))
        acc = part if acc is None else add(acc, part)
    return acc.data


@pytest.mark.parametrize("streamed", [False, True])
def test_absorb_does_not_depend_on_parts(streamed: bool, nprng: np.random.Generator, monkeypatch: pytest.MonkeyPatch) -> None:
    for plan, w in _plans(nprng):
        weights = prepare_weights(plan, w, max_bytes=0 if streamed else None)
        sk, chunks, uploads, own = _upload(plan, nprng)
        want = _one_pass(plan, chunks, uploads, own, prepare_weights(plan, w))
        per_row = len(plan.he.primes) * plan.he.n * 4
        for parts, block_bytes in [(1, prepared.BLOCK_MAX_BYTES), (2, prepared.BLOCK_MAX_BYTES), (3, 2 * per_row), (5, 1)]:
            monkeypatch.setattr(prepared, "BLOCK_MAX_BYTES", block_bytes)
            acc = None
            for (k0, k1), data in zip(chunks, uploads):
                acc = absorb_chunk(plan, acc, data, own[k0:k1], weights, k0, k1, parts=parts)
            assert np.array_equal(acc.data, want), (plan.layout, parts, block_bytes)


def test_row_blocks_of_a_range_and_parts(nprng: np.random.Generator, monkeypatch: pytest.MonkeyPatch) -> None:
    plan, w = next(_plans(nprng))
    outputs = plan.layout.outputs
    whole, streamed = prepare_weights(plan, w), prepare_weights(plan, w, max_bytes=0)
    assert whole.row_blocks(0, 1, 1, 3) == [(1, 3)] and whole.row_blocks(0, 1, 2, 2) == []
    per_row = len(plan.he.primes) * plan.he.n * 4
    monkeypatch.setattr(prepared, "BLOCK_MAX_BYTES", 4 * per_row)
    assert max(b - a for a, b in streamed.row_blocks(0, 1)) == min(4, outputs)
    assert max(b - a for a, b in streamed.row_blocks(0, 1, parts=2)) == min(2, outputs)  # the bound is shared
    blocks = streamed.row_blocks(0, 1, 1, outputs)
    assert blocks[0][0] == 1 and blocks[-1][1] == outputs
    assert all(a1 == b0 for (_, a1), (b0, _) in zip(blocks, blocks[1:]))
    with pytest.raises(InputError):
        streamed.row_blocks(0, 1, 2, 1)
    with pytest.raises(InputError):
        streamed.row_blocks(0, 1, 0, outputs + 1)


@pytest.fixture(scope="module")
def batch():
    from aiompc.crypto.he import cheetah_params, encrypt_symmetric

    params = cheetah_params()
    sk = keygen(params, PRG(b"\x07" * 32))
    pk = public_key(sk, PRG(b"\x08" * 32))
    m = np.random.default_rng(3).integers(0, params.t, (5, params.n), dtype=np.uint64)
    ct = encrypt_symmetric(sk, m, PRG(b"\x09" * 32)).expand().to_ntt()
    return params, sk, pk, m, ct


@pytest.mark.parametrize("chunk", [1, 2, 5, 64])
def test_refresh_batch_equals_chunkwise_refresh(batch, chunk: int) -> None:
    params, sk, pk, m, ct = batch
    fork = PRG(b"\x0a" * 32)
    bounds = [(b0, min(b0 + chunk, ct.batch)) for b0 in range(0, ct.batch, chunk)]
    prgs = [fork.fork() for _ in bounds]
    want = np.concatenate([refresh(Ciphertext(params, ct.data[:, b0:b1], True), pk, g).data
                           for (b0, b1), g in zip(bounds, prgs)], axis=1)
    for parts in (1, 2, 3):
        got = refresh_batch(Ciphertext(params, ct.data.copy(), True), pk, PRG(b"\x0a" * 32), chunk=chunk, parts=parts)
        assert np.array_equal(got.data, want)
        assert np.array_equal(decrypt(sk, got), m)  # still the same messages
        assert not np.array_equal(got.data[1], ct.data[1])  # fresh c1's


def test_refresh_batch_of_one_chunk_is_one_refresh(batch) -> None:
    params, sk, pk, m, ct = batch
    one = refresh(ct, pk, PRG(b"\x0b" * 32).fork())
    got = refresh_batch(Ciphertext(params, ct.data.copy(), True), pk, PRG(b"\x0b" * 32), chunk=ct.batch, parts=2)
    assert np.array_equal(got.data, one.data)
    with pytest.raises(InputError):
        refresh_batch(ct, pk, PRG(b"\x0b" * 32), chunk=0)
    with pytest.raises(InputError):
        refresh_batch(ct.to_coeff(), pk, PRG(b"\x0b" * 32))


@pytest.mark.parametrize("room", [0, 1 << 40])
async def test_a_layer_the_cache_cannot_keep_is_streamed(room: int, nprng: np.random.Generator,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """A one-unit layer whose NTT form does not fit what the session's cache leaves is prepared streamed (one
    block per thread at a time) and is still exact; one that fits is prepared whole and kept."""
    from aiompc.protocols.linear import engine
    from aiompc.protocols.linear.conv import conv_plan
    from aiompc.protocols.linear.planners import PLANNERS
    from aiompc.protocols.linear.reference import conv2d_ref
    from aiompc.protocols.linear.tiling import ConvShape
    from aiompc.protocols.linear.weight_cache import STATE_KEY, WeightCache
    from aiompc.ring import share
    from aiompc.session import run_local

    shape, l = ConvShape.make(80, 8, 8, 6, 3, padding=1), 16
    plan = conv_plan(shape, l, weight_bits=8, planner=PLANNERS["cheetah-smallest"])
    assert plan.layout.units == 1
    x = nprng.integers(0, 1 << l, shape.in_shape, dtype=np.uint64)
    w = nprng.integers(-127, 128, shape.weight_shape)
    xs, xc = share(x, l, PRG(b"\x0c" * 32))
    made: list[bool] = []
    real = engine.prepare_weights

    def spy(plan_, w_, *, max_bytes=None):
        out = real(plan_, w_, max_bytes=max_bytes)
        made.append(out.streamed)
        return out

    monkeypatch.setattr(engine, "prepare_weights", spy)
    cache = WeightCache(room)

    async def server(p):
        p.state[STATE_KEY] = cache
        return await engine.run_linear(p, "L", plan, xs, w)

    ys, yc = await run_local(server, lambda p: engine.run_linear(p, "L", plan, xc))
    assert np.array_equal((ys + yc) & np.uint64((1 << l) - 1), conv2d_ref(x, w, shape, l))
    assert made == [room == 0] and (len(cache) == 1) == (room > 0)
