"""The two-party HE flow of every linear layer, generic over the plan (layout + HE parameters + wire widths).

Roles: the client holds the HE secret key (generated once per session and cached in ``party.state``); the
server holds the weights and only ever sees the client's ciphertexts and a public key (an encryption of
zero, sent once per session per key set on label ``"he-keys/<key fingerprint>"``).  A key set is ``(N, primes,
σ)`` (:attr:`~aiompc.crypto.he.HEParams.key_params`): no key depends on ``t``, so layers of different ``l``
over the same primes share one secret, one public key and one set of Galois keys.

Flow of one call (label ``L``; unit ``u`` of the layout uses label ``f"{L}/tile{u}"``):

1. client → server, per unit, in messages of up to ``plan.chunk`` ciphertexts: its share's input
   polynomials encrypted symmetrically (``c0`` bit-packed at ``ceil(log2 q)`` bits + one 32-byte seed
   per message).  Encryption of message ``i + 1`` runs in the executor while message ``i`` is sent.
2. server, as each message arrives: expand, add its own share as a plaintext, multiply-accumulate with
   the weight plaintexts (NTT form, prepared while the first upload is in flight, once per weight array and
   plan and then reused from the session's :class:`~aiompc.protocols.linear.weight_cache.WeightCache`; layers
   too wide to hold in NTT form are transformed per chunk instead, :mod:`aiompc.protocols.linear.prepared`).
3. server → client, per unit, in messages of up to ``plan.chunk`` results: each output ciphertext masked
   with a fresh random ``r`` at its output coefficients, re-randomised with the public key and flooded
   (hiding the weights; both parties first check the plan's statistical security, :func:`require_private`:
   a plan below 40 bits is refused with :class:`~aiompc.errors.InsecureParameters`), switched to ``2^62``, low bits dropped, ``c1`` whole plus ``c0`` only at the output
   coefficients (:func:`aiompc.crypto.he.finalize`).  Finishing result batch ``b + 1`` overlaps sending ``b``.
4. client: decrypts ``y - r`` at those coefficients; the server's share is ``r``.

Approximate truncation (``plan.out_shift = s > 0``): the client decrypts only the top ``l - s`` bits,
``round((y - r) / 2^s)``, and the server keeps ``floor((r + offset) / 2^s)``; their sum is
``floor((y + offset) / 2^s) + e`` with ``e = b - c ∈ {-1, 0, 1}`` (``b`` the rounding bit of the coarse
decryption, ``c`` the carry of the two low parts).  The noise then only has to stay below half of a
``2^s`` unit, so ``q`` and the result's ``c0``/``c1`` widths shrink by about ``s`` bits.  Privacy is unchanged
(the same uniform ``r`` masks every bit of ``y``; the flooding does not depend on ``t``); the error is that of
the usual local truncation of shares.  It replaces the truncation of a following requantization.

Inputs and outputs are additive shares mod ``2^l`` (``l = plan.he.plain_bits``).  Cost per call (visible in the
channel statistics under ``L``): one round trip per unit; upload ``input ciphertexts * N * ceil(log2 q)`` bits,
download ``output ciphertexts * (N * bits1 + visible * bits0)`` bits, plus small headers.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any, Awaitable, Callable, TypeVar

import numpy as np

from aiompc.crypto.he import (
    Ciphertext,
    PlainNTT,
    PublicKey,
    ResultCiphertext,
    SecretKey,
    SeededCiphertext,
    add,
    add_plain,
    decrypt_result,
    encrypt_symmetric,
    finalize,
    keygen,
    multiply_accumulate_into,
    public_key,
    result_phase,
)
from aiompc.crypto.he import HEParams
from aiompc.crypto.he.galois import GaloisKeyRing, GaloisKeys, galois_keys
from aiompc.crypto.he.packing import extract_leaves, finish_packed, pack_leaves, refresh
from aiompc.crypto.prg import PRG
from aiompc.errors import InputError, ProtocolError
from aiompc.kernels.threads import run_parts
from aiompc.party import Party
from aiompc.pipeline import pipelined
from aiompc.ring import reduce
from aiompc.protocols.linear.packed import PackedGroup, layout_elements, packed_groups
from aiompc.protocols.linear.plan import LinearPlan, require_private
from aiompc.protocols.linear.prepared import PreparedWeights, prepare_weights, prepared_nbytes, weight_key
from aiompc.protocols.linear.weight_cache import STATE_KEY, WeightCache

__all__ = [
    "run_linear",
    "check_weight_and_bias",
    "client_key",
    "server_key",
    "OutputBatch",
    "output_batches",
    "input_chunks",
    "encrypt_chunk",
    "absorb_chunk",
    "refresh_batch",
    "REFRESH_CHUNK",
    "finish_batch",
    "decrypt_batch",
    "prepared_weights",
    "PackedGroup",
    "packed_groups",
    "finish_group",
    "decrypt_group",
    "client_galois_keys",
    "server_galois_keys",
]

KEY_LABEL = "he-keys"
GALOIS_LABEL = "he-galois"
T = TypeVar("T")
_INFLIGHT_UNITS = 2  # server units processed concurrently (bounded memory)
_ROW_ALIGN = 4  # output rows per part in multiples of the kernel's output block (aiompc.kernels.rns._OUTS)
REFRESH_CHUNK = 64
"""Results re-randomised together before output packing (:func:`refresh_batch`): bounds the temporaries."""


# --------------------------------------------------------------------------- session keys


async def _once_per_session(party: Party, params: HEParams, make: Callable[[], Awaitable[T]],
                            store: str = "he_keys", key: bytes | None = None) -> T:
    """``await make()`` once per session and key set (``params``' ring, primes and σ, whatever its ``t``; and
    ``key``, if given); concurrent callers share the result.  On failure every waiting caller gets the error and
    the next call tries again (nothing half-made stays cached)."""
    cache: dict[bytes, asyncio.Future[Any]] = party.state.setdefault(store, {})
    slot = params.key_fingerprint if key is None else params.key_fingerprint + key
    fut = cache.get(slot)
    if fut is None:
        fut = cache[slot] = asyncio.get_running_loop().create_future()
        try:
            fut.set_result(await make())
        except BaseException as exc:
            del cache[slot]
            fut.set_exception(exc)
            fut.exception()  # retrieved here: the error is re-raised to this caller and to any waiting one
            raise
    return await fut


async def client_key(party: Party, params: HEParams) -> SecretKey:
    """The session's secret key for ``params`` (created under ``params.key_params``, and its public key sent,
    on first use for that key set; returned bound to ``params``' ``t``)."""
    keyed = params.key_params

    async def make() -> SecretKey:
        sk = keygen(keyed, party.rng)
        pk = public_key(sk, party.rng)
        await party.sub(f"{KEY_LABEL}/{keyed.fingerprint.hex()}").send_bytes(pk.to_bytes())
        return sk

    return (await _once_per_session(party, params, make)).at(params)


async def server_key(party: Party, params: HEParams) -> PublicKey:
    """The client's public key for ``params``' key set (received on first use, then cached for the session)."""
    keyed = params.key_params

    async def make() -> PublicKey:
        data = await party.sub(f"{KEY_LABEL}/{keyed.fingerprint.hex()}").recv_bytes()
        return PublicKey.from_bytes(keyed, data)

    return (await _once_per_session(party, params, make)).at(params)


def galois_label(params: HEParams, g: int) -> str:
    """The label of the Galois key for element ``g`` of ``params``' key set: ``"he-galois/<key fingerprint>/<g>"``."""
    return f"{GALOIS_LABEL}/{params.key_fingerprint.hex()}/{g}"


async def client_galois_keys(party: Party, params: HEParams, elements: tuple[int, ...]) -> None:
    """Send the Galois keys of output packing for ``elements`` of ``params``, each once per session and key set
    (setup bytes: ``L·N·⌈log2 q⌉`` bits plus a seed per element; made under ``params.key_params``)."""
    sk = (await client_key(party, params)).at(params.key_params)

    async def send(g: int) -> None:
        async def make() -> bool:
            gk = await party.compute(galois_keys, sk, (g,), party.rng.fork())
            await party.sub(galois_label(params, g)).send_bytes(gk.to_bytes())
            return True

        await _once_per_session(party, params, make, "he_galois", g.to_bytes(4, "little"))

    await asyncio.gather(*(send(g) for g in elements))


async def server_galois_keys(party: Party, params: HEParams, elements: tuple[int, ...]) -> GaloisKeyRing:
    """The client's Galois keys for ``elements`` of ``params`` (each received on first use, then cached)."""

    async def get(g: int) -> GaloisKeys:
        async def make() -> GaloisKeys:
            data = await party.sub(galois_label(params, g)).recv_bytes()
            return await party.compute(GaloisKeys.from_bytes, params.key_params, (g,), data)

        return await _once_per_session(party, params, make, "he_galois", g.to_bytes(4, "little"))

    return GaloisKeyRing(params, tuple(await asyncio.gather(*(get(g) for g in elements))))


# --------------------------------------------------------------------------- message structure


@dataclass(frozen=True)
class OutputBatch:
    """Output ciphertexts ``j0 .. j1 - 1`` of one unit, sharing the output coefficients ``positions``."""

    j0: int
    j1: int
    positions: np.ndarray

    @property
    def count(self) -> int:
        return self.j1 - self.j0


def input_chunks(plan: LinearPlan) -> list[tuple[int, int]]:
    """``(k0, k1)`` ranges of input polynomials sent per message (the same for every unit)."""
    k, c = plan.layout.inputs, plan.chunk
    return [(k0, min(k0 + c, k)) for k0 in range(0, k, c)]


def output_batches(plan: LinearPlan, unit: int) -> list[OutputBatch]:
    """Result messages of ``unit``: consecutive outputs with equal positions, at most ``plan.chunk`` each."""
    lay = plan.layout
    out: list[OutputBatch] = []
    j0 = 0
    pos0 = lay.positions(unit, 0)
    for j in range(1, lay.outputs + 1):
        pos = lay.positions(unit, j) if j < lay.outputs else None
        if pos is None or j - j0 == plan.chunk or not np.array_equal(pos, pos0):
            out.append(OutputBatch(j0, j, pos0))
            if pos is not None:
                j0, pos0 = j, pos
    return out


# --------------------------------------------------------------------------- pure steps


def encrypt_chunk(sk: SecretKey, polys: np.ndarray, prg: PRG) -> bytes:
    """Client: symmetric, seed-compressed encryption of ``(B, N)`` share polynomials → wire bytes."""
    return encrypt_symmetric(sk, polys, prg).to_bytes()


def absorb_chunk(
    plan: LinearPlan,
    acc: Ciphertext | None,
    data: bytes,
    own: np.ndarray,
    weights: PreparedWeights,
    k0: int,
    k1: int,
    *,
    parts: int = 1,
) -> Ciphertext:
    """Server: ``acc + sum_{k0 <= k < k1} (Enc(x_C,k) + x_S,k) * w[:, k]`` (NTT form, one per output).

    ``acc`` is updated in place (``None``: a zero accumulator is made) and returned.  The output rows are cut
    into ``parts`` ranges handled by parallel threads (:func:`~aiompc.kernels.threads.run_parts`; disjoint rows
    of the accumulator, so the result does not depend on ``parts``).  Each range takes its weight blocks from
    the prepared plaintexts, or transforms them here if they are streamed, in blocks of at most
    ``BLOCK_MAX_BYTES / parts`` (:meth:`PreparedWeights.row_blocks`).  Work: ``2·O·(k1-k0)·L·N``
    multiply-adds, plus ``O·(k1-k0)`` weight transforms when streamed; temporaries: one weight block per part."""
    params = plan.he
    up = SeededCiphertext.from_bytes(params, data)
    if up.batch != k1 - k0:
        raise ProtocolError(f"expected {k1 - k0} input ciphertexts, got {up.batch}")
    ct = add_plain(up.expand(), own).to_ntt()
    level, n = ct.level, params.n
    outputs = weights.nonzero.shape[0]
    if acc is None:
        acc = Ciphertext(params, np.zeros((2, outputs, level, n), dtype=np.uint64), True)
    out = acc.data

    def rows(lo: int, hi: int) -> None:
        for j0, j1 in weights.row_blocks(k0, k1, lo, hi, parts=parts):
            block, mask = weights.block(k0, k1, j0, j1)
            if mask.all():
                multiply_accumulate_into(ct, block, out[:, j0:j1])
                continue
            for j in np.flatnonzero(mask.any(axis=1)):  # structurally zero blocks (groups): only where a group meets
                ks = np.flatnonzero(mask[j])
                sub = Ciphertext(params, np.ascontiguousarray(ct.data[:, ks]), True)
                w = PlainNTT(params, block.data[j, ks][None], block.norm, block.count)
                multiply_accumulate_into(sub, w, out[:, j0 + j : j0 + j + 1])

    run_parts(rows, outputs, parts, align=_ROW_ALIGN)
    return acc


def refresh_batch(ct: Ciphertext, pk: PublicKey, prg: PRG, *, chunk: int = REFRESH_CHUNK, parts: int = 1) -> Ciphertext:
    """Server, output packing: :func:`~aiompc.crypto.he.packing.refresh` of a unit's ``B`` results, ``chunk``
    ciphertexts at a time (chunk ``i`` uses the ``i``-th PRG forked from ``prg``), the chunks spread over
    ``parts`` threads; written over ``ct``'s data (which must be in NTT form and is consumed) and returned.

    The result depends on ``chunk`` (which randomness lands where) but not on ``parts``; its distribution is
    that of one :func:`refresh` of the whole batch.  Temporaries: about ``12 · chunk · L · N · 8`` bytes per part
    instead of ``12 · B · L · N · 8`` (a 2048-output layer at three primes: 75 MB instead of 2.4 GB)."""
    if chunk < 1:
        raise InputError(f"refresh chunk must be at least 1, got {chunk}")
    if not ct.ntt_form:
        raise InputError("refresh_batch expects results in NTT form")
    bounds = [(b0, min(b0 + chunk, ct.batch)) for b0 in range(0, ct.batch, chunk)]
    prgs = [prg.fork() for _ in bounds]
    data = ct.data

    def run(lo: int, hi: int) -> None:
        for i in range(lo, hi):
            b0, b1 = bounds[i]
            data[:, b0:b1] = refresh(Ciphertext(ct.params, data[:, b0:b1], True), pk, prgs[i]).data

    run_parts(run, len(bounds), parts)
    return Ciphertext(ct.params, data, True)


def finish_batch(plan: LinearPlan, acc: Ciphertext, batch: OutputBatch, r: np.ndarray, pk: PublicKey, prg: PRG) -> bytes:
    """Server: mask outputs ``j0..j1`` with ``-r`` at their positions, re-randomise, flood, switch, drop, select."""
    params = plan.he
    sub = Ciphertext(params, acc.data[:, batch.j0 : batch.j1], acc.ntt_form)
    mask = np.zeros((batch.count, params.n), dtype=np.uint64)
    mask[:, batch.positions] = (np.uint64(0) - r) & np.uint64(params.t - 1)
    res = finalize(add_plain(sub, mask), pk, plan.output, prg, batch.positions)
    return res.to_bytes()


def finish_group(plan: LinearPlan, fresh: Ciphertext, group: PackedGroup, r: np.ndarray, keys: GaloisKeys | GaloisKeyRing,
                 prg: PRG) -> bytes:
    """Server, output packing: pack the group's leaves of the re-randomised ``fresh`` results, mask with ``-r``,
    flood, switch, drop and keep ``c0`` at the packed positions (:func:`~aiompc.crypto.he.packing.finish_packed`)."""
    params = plan.he

    def leaf(ids: np.ndarray) -> np.ndarray:
        return extract_leaves(fresh, group.index[ids], group.shifts[ids]).data

    packed = pack_leaves(leaf, group.leaves, params, keys, group.stride_bits)
    mask = np.zeros((1, params.n), dtype=np.uint64)
    mask[0, group.positions] = (np.uint64(0) - r) & np.uint64(params.t - 1)
    return finish_packed(packed, mask, plan.output, prg, group.positions).to_bytes()


def decrypt_group(plan: LinearPlan, sk: SecretKey, data: bytes, group: PackedGroup) -> np.ndarray:
    """Client, output packing: the values of one packed result message, in output order (mod ``2^out_bits``)."""
    return _decrypt(plan, sk, ResultCiphertext.from_bytes(plan.he, data, group.positions), 1)[0]


def decrypt_batch(plan: LinearPlan, sk: SecretKey, data: bytes, batch: OutputBatch) -> np.ndarray:
    """Client: parse a result message and decrypt its outputs, ``(count, len(positions))`` mod ``2^out_bits``.

    With ``plan.out_shift = s`` only the top ``l - s`` bits are decrypted: ``round(2^(l-s) · phase / Q)``, i.e.
    ``floor(v / 2^s) + b`` with ``b ∈ {0, 1}`` for the masked value ``v`` (the noise is below half of that
    coarser unit, which is what ``plan.output`` was planned for).
    """
    return _decrypt(plan, sk, ResultCiphertext.from_bytes(plan.he, data, batch.positions), batch.count)


def _decrypt(plan: LinearPlan, sk: SecretKey, res: ResultCiphertext, count: int) -> np.ndarray:
    o = plan.output
    if res.batch != count or (res.modulus, res.drop0, res.drop1) != (o.modulus, o.drop0, o.drop1):
        raise ProtocolError(
            f"result batch does not follow the plan: {res.batch} ciphertexts mod 2^{res.modulus.bit_length() - 1} "
            f"dropping ({res.drop0}, {res.drop1}); expected {count}, ({o.drop0}, {o.drop1})"
        )
    if not plan.out_shift:
        return decrypt_result(sk, res)
    k = res.modulus.bit_length() - 1
    if res.modulus != 1 << k or k <= plan.out_bits:
        raise ProtocolError(f"a truncated result needs a power-of-two modulus above 2^{plan.out_bits}")
    phi = result_phase(sk, res)
    shift = k - plan.out_bits
    return ((phi + np.uint64(1 << (shift - 1))) >> np.uint64(shift)) & np.uint64((1 << plan.out_bits) - 1)


# --------------------------------------------------------------------------- the protocol


def check_weight_and_bias(party: Party, label: str, weight: np.ndarray | None, weight_shape: tuple[int, ...],
                          bias: np.ndarray | None, outputs: int) -> None:
    """The caller-side checks of a layer's server operands: ``weight`` (if given) of ``weight_shape``, ``bias``
    only on the server and of shape ``(outputs,)``.  Raises :class:`InputError` naming ``label``."""
    if weight is not None and np.shape(weight) != weight_shape:
        raise InputError(f"{label}: weight must have shape {weight_shape}, got {np.shape(weight)}")
    if party.is_client and bias is not None:
        raise InputError(f"{label}: the client must not pass a bias")
    if bias is not None and np.shape(bias) != (outputs,):
        raise InputError(f"{label}: bias must have shape ({outputs},), got {np.shape(bias)}")


async def run_linear(party: Party, label: str, plan: LinearPlan, x_share: np.ndarray,
                     weight: np.ndarray | None = None, *, offset: np.ndarray | None = None,
                     cache_weights: bool = True) -> np.ndarray:
    """Run one linear layer under ``plan``; both parties call it with the same ``label`` and plan.

    ``x_share``: this party's share of the input, shape ``plan.layout.in_shape``, mod ``2^l``.
    ``weight``: the server's weights (layout-specific shape, integers mod ``2^l``); ``None`` on the client.
    ``offset``: server only, integers broadcastable to the output shape, added to the output (a bias) before
    any truncation.  Returns this party's share of the output (``plan.layout.out_shape``, ``uint64``) mod
    ``2^l``, or with ``plan.out_shift = s`` of ``floor((y + offset) / 2^s) + e``, ``e ∈ {-1, 0, 1}``, mod
    ``2^(l - s)`` (approximate mode: the carry between the two shares' low bits and the rounding of the
    coarse decryption are not corrected; every value is within one unit of the exact floor).
    ``cache_weights = False`` (server): prepare the weight plaintexts for this call only, outside the session's
    :class:`WeightCache` (one-time "weights" such as the server's share of an activation, which would only
    push the model's prepared layers out of the cache).
    """
    require_private(plan, label)
    lay = plan.layout
    x = np.asarray(x_share)
    if x.shape != tuple(lay.in_shape):
        raise InputError(f"{label}: input share has shape {x.shape}, the layer expects {tuple(lay.in_shape)}")
    if x.dtype.kind not in "ui":
        raise InputError(f"{label}: shares must be integers mod 2^l, got dtype {x.dtype}")
    x = reduce(x, plan.l)
    if party.is_server:
        if weight is None:
            raise InputError(f"{label}: the server must pass the weights")
        y = await _server(party, label, plan, x, weight, cache_weights)
        if offset is not None:
            y = reduce(y + np.broadcast_to(reduce(np.asarray(offset), plan.l), y.shape), plan.l)
        return y >> np.uint64(plan.out_shift) if plan.out_shift else y
    if weight is not None or offset is not None:
        raise InputError(f"{label}: the client must not pass weights or an offset")
    return await _client(party, label, plan, x)


async def _client(party: Party, label: str, plan: LinearPlan, x: np.ndarray) -> np.ndarray:
    lay = plan.layout
    sk = await client_key(party, plan.he)
    polys = await party.compute(lay.input_polys, x, plan.l)
    msgs = [(u, k0, k1) for u in range(lay.units) for (k0, k1) in input_chunks(plan)]
    prgs = [party.rng.fork() for _ in msgs]

    def produce(i: int) -> bytes:
        u, k0, k1 = msgs[i]
        return encrypt_chunk(sk, polys[u, k0:k1], prgs[i])

    async def send(i: int, data: bytes) -> None:
        await party.sub(f"{label}/tile{msgs[i][0]}").send_bytes(data)

    values: dict[tuple[int, int], np.ndarray] = {}
    if plan.output_packing:
        await client_galois_keys(party, plan.he, layout_elements(lay))

    async def receive(u: int) -> None:
        sub = party.sub(f"{label}/tile{u}")
        if plan.output_packing:
            groups, sizes = packed_groups(lay, u)
            got = [await party.compute(decrypt_group, plan, sk, await sub.recv_bytes(), g) for g in groups]
            for j, v in enumerate(np.split(np.concatenate(got), np.cumsum(sizes)[:-1])):
                values[(u, j)] = v
            return
        for batch in output_batches(plan, u):
            data = await sub.recv_bytes()
            vals = await party.compute(decrypt_batch, plan, sk, data, batch)
            for j in range(batch.j0, batch.j1):
                values[(u, j)] = vals[j - batch.j0]

    await asyncio.gather(pipelined(party, len(msgs), produce, send, workers=party.parts),
                         *(receive(u) for u in range(lay.units)))
    return await party.compute(lay.assemble, values)


async def prepared_weights(party: Party, plan: LinearPlan, weight: np.ndarray) -> PreparedWeights:
    """Server: :func:`prepare_weights` through the session's :class:`WeightCache` (computed once per weight
    array and plan, then reused by every sample and call)."""
    cache = party.state.get(STATE_KEY)
    if cache is None:
        cache = party.state[STATE_KEY] = WeightCache()
    w = np.asarray(weight)
    key = await party.compute(weight_key, plan, w)  # hashing the weights: off the event loop (hashlib drops the GIL)
    # A one-unit layer whose NTT form the cache could not keep is streamed: its blocks are transformed per
    # chunk as they are needed (the same work, each block used once) instead of all at once, so a layer
    # prepared per inference holds one block per thread, not up to WHOLE_MAX_BYTES plus the transform's
    # temporaries (ResNet-50's last 3×3 layers: 402 MiB each, the server's peak).
    stream = plan.layout.units == 1 and prepared_nbytes(plan, max_bytes=1 << 62) > cache.room
    return await cache.get(key, lambda: party.compute(prepare_weights, plan, w, max_bytes=0 if stream else None))


async def _send_packed(party: Party, sub: Any, plan: LinearPlan, u: int, acc: Ciphertext, pk: PublicKey,
                       gk: GaloisKeyRing, values: dict[tuple[int, int], np.ndarray]) -> None:
    """Server, output packing: re-randomise the unit's results (fresh ``c1``'s, so the key-switching noise does
    not depend on the weights), then pack, mask, flood and send one message per group of ``N`` outputs."""
    groups, sizes = packed_groups(plan.layout, u)
    masks = [party.rng.integers(plan.l, g.count) for g in groups]
    for j, r in enumerate(np.split(np.concatenate(masks), np.cumsum(sizes)[:-1])):
        values[(u, j)] = r
    fresh = await party.compute(refresh_batch, acc, pk, party.rng.fork(), parts=party.parts)
    prgs = [party.rng.fork() for _ in groups]

    def produce(i: int) -> bytes:
        return finish_group(plan, fresh, groups[i], masks[i], gk, prgs[i])

    async def send(i: int, data: bytes) -> None:
        await sub.send_bytes(data)

    await pipelined(party, len(groups), produce, send, workers=party.parts)


async def _server(party: Party, label: str, plan: LinearPlan, x: np.ndarray, weight: np.ndarray,
                  cache_weights: bool = True) -> np.ndarray:
    lay = plan.layout
    prep = asyncio.ensure_future(prepared_weights(party, plan, weight) if cache_weights
                                 else party.compute(prepare_weights, plan, np.asarray(weight)))
    try:
        own = await party.compute(lay.input_polys, x, plan.l)
        pk = await server_key(party, plan.he)
        gk = await server_galois_keys(party, plan.he, layout_elements(lay)) if plan.output_packing else None
    except BaseException:
        prep.cancel()
        raise
    values: dict[tuple[int, int], np.ndarray] = {}
    gate = asyncio.Semaphore(_INFLIGHT_UNITS)

    async def unit(u: int) -> None:
        sub = party.sub(f"{label}/tile{u}")
        async with gate:
            acc: Ciphertext | None = None
            for k0, k1 in input_chunks(plan):
                data = await sub.recv_bytes()
                weights = await prep
                acc = await party.compute(absorb_chunk, plan, acc, data, own[u, k0:k1], weights, k0, k1,
                                          parts=party.parts)
            assert acc is not None
            if gk is not None:
                await _send_packed(party, sub, plan, u, acc, pk, gk, values)
                return
            batches = output_batches(plan, u)
            masks = [party.rng.integers(plan.l, (b.count, b.positions.size)) for b in batches]
            prgs = [party.rng.fork() for _ in batches]
            for b, r in zip(batches, masks):
                for j in range(b.j0, b.j1):
                    values[(u, j)] = r[j - b.j0]
            final = acc

            def produce(i: int) -> bytes:
                return finish_batch(plan, final, batches[i], masks[i], pk, prgs[i])

            async def send(i: int, data: bytes) -> None:
                await sub.send_bytes(data)

            await pipelined(party, len(batches), produce, send, workers=party.parts)

    try:
        await asyncio.gather(*(unit(u) for u in range(lay.units)))
    finally:
        if not prep.done():
            prep.cancel()
    return await party.compute(lay.assemble, values)
