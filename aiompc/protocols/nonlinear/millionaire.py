"""Millionaire comparison: Boolean shares of ``[s < r]`` for ``s`` held by one party and ``r`` by the other.

The protocol of CrypTFlow2 as used by Cheetah.  Both ``b``-bit operands are cut into digits of at most
``m`` bits (default 4).  For each digit the *sender* (the party whose operand builds the tables) offers a
1-of-``2^w`` OT whose ``k``-th message is ``(lt, eq) = ([s_j < k], [s_j == k])`` masked with its own
random bits; the *receiver* picks ``k = r_j``.  Now both hold XOR shares of every digit's ``lt``/``eq``,
and a log-depth tree combines adjacent nodes, low half ``lo`` and high half ``hi``::

    lt = lt_hi ^ (eq_hi & lt_lo)        eq = eq_hi & eq_lo

with one AND (from a bit triple) per operator.  Nodes that contain digit 0 never need ``eq``, nor does
digit 0's leaf (its OT messages are one bit).  A partial digit (``b`` not a multiple of ``m``) sits at the
top of its run, which makes the leaves cheapest: the one-bit leaf gets the full ``2^m`` table.

The module is organised as a pure *plan* (:func:`plan_comparisons`: digit layout, OT groups and the AND
tree as index arrays, identical on both sides) and one batched engine (:func:`compare_batch`) that runs
any number of comparisons over the same elements together: one OT call per digit shape, one AND
exchange per tree level.  A task may

* compare ``fanout`` sender operands against the same receiver operand (the receiver's choices, and so
  the OTs, are shared: the messages just carry more bits), and
* ask for the comparison of its low ``split`` bits as well (``split`` sits on a digit boundary: the low
  and high runs are reduced separately and then joined by one more operator), which is what exact
  truncation needs (carry of the low ``f`` bits and wrap of all ``l`` bits from one tree), and
* ask for ``eq_rows`` more sender operands compared for *equality only* with the receiver's high run
  (bits ``split..bits``): their leaves ride on the same OTs (one more message bit per high digit each)
  and are reduced by ``eq``-only operators (one AND each); :func:`compare_batch_eq` returns them with
  the ``eq`` of every fanout row's high run (what the clip of
  :func:`~aiompc.protocols.nonlinear.threshold.compare_thresholds` needs for a range of ``2^j`` values).

Cost of one ``b``-bit comparison with ``q = ceil(b/m)`` digits (bits on the wire, online):
leaves ``Σ_digits (w_j + 2^w_j·(1 or 2))`` (receiver's choice bits, sender's tables: one bit for digit
0, two for the others); tree ``2(q−1) − ceil(log2 q)`` ANDs at 4 bits each (2 each way); offline one
random OT per digit bit (1-of-2^w OT from ``w`` OTs) and one bit triple per AND.  Rounds: the leaf OT
round trip, then ``ceil(log2 q)`` AND exchanges (one flight each).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any, Literal, Sequence

import numpy as np

from aiompc.errors import InputError, ProtocolError
from aiompc.party import Party, Role
from aiompc.ring import check_width
from aiompc.protocols.nonlinear.boolean import TriplePool, and_, fetch_triples
from aiompc.protocols.ot import one_of_n_ot

__all__ = [
    "CompareTask",
    "ComparePlan",
    "plan_comparisons",
    "compare_batch",
    "compare_batch_eq",
    "millionaire",
    "digit_widths",
    "DEFAULT_DIGIT_BITS",
    "COT_BITS",
    "comparison_cost",
    "choose_digit_bits",
]

DEFAULT_DIGIT_BITS = 4
"""Cheetah's digit size (its 37-bit comparisons use m = 4).  The baseline's protocols (DReLU, ReLU,
truncation, max-pool) keep it so that the comparison with Cheetah stays faithful; the quantized mode's
requantization picks m per comparison width with :func:`choose_digit_bits`."""
COT_BITS = {"silent": 1.0, "iknp": 128.0}
"""Modelled offline bits per random COT by OT engine (Ferret: well under a bit, charged as one; IKNP: a
128-bit column per OT) for :func:`choose_digit_bits`; an unknown engine is charged as IKNP."""
CHUNK_ELEMENTS = 1 << 15  # elements per chunk of a large batch (bounds the leaf tables' memory)
CHUNKS_IN_FLIGHT = 4
Op = Literal["<", "<=", ">", ">="]


# --------------------------------------------------------------------------- the pure plan


def digit_widths(bits: int, m: int) -> list[int]:
    """Widths of the digits of a ``bits``-bit run, least significant first: full ``m``-bit digits
    and a partial one (if any) on top."""
    if bits <= 0:
        return []
    q, r = divmod(bits, m)
    return [m] * q + ([r] if r else [])


@dataclass(frozen=True)
class CompareTask:
    """One comparison in a batch.

    ``bits``: operand width (0..64).  ``fanout``: number of sender operands compared against the same
    receiver operand.  ``split``: if ``0 < split < bits``, also return the comparison of the low
    ``split`` bits.  ``eq_rows``: sender operands (after the ``fanout`` ones) whose bits ``split..bits``
    are compared with the receiver's for equality only (needs ``0 < split < bits``).
    """

    bits: int
    fanout: int = 1
    split: int = 0
    eq_rows: int = 0

    def __post_init__(self) -> None:
        if not 0 <= self.bits <= 64:
            raise InputError(f"comparison width must be in 0..64, got {self.bits}")
        if self.fanout < 1:
            raise InputError("comparison fanout must be >= 1")
        if not 0 <= self.split <= self.bits:
            raise InputError(f"split {self.split} outside 0..{self.bits}")
        if self.eq_rows < 0 or (self.eq_rows and not 0 < self.split < self.bits):
            raise InputError("equality rows need a split strictly inside the operand")

    @property
    def rows(self) -> int:
        """Sender operands: the ``fanout`` compared ones and the ``eq_rows`` equality-only ones."""
        return self.fanout + self.eq_rows


@dataclass(frozen=True)
class OTGroup:
    """The OTs of one digit shape: ``width``-bit digits, ``fanout`` leaves each, with or without ``eq``,
    and ``eq_rows`` equality-only leaves.

    ``slots``: (task, offset) of each digit; ``nodes``: leaf node ids, shape ``(len(slots), fanout + eq_rows)``.
    """

    width: int
    fanout: int
    eq: bool
    eq_rows: int
    slots: tuple[tuple[int, int], ...]
    nodes: np.ndarray

    @property
    def message_bits(self) -> int:
        return self.fanout * (2 if self.eq else 1) + self.eq_rows


@dataclass(frozen=True)
class Level:
    """One AND exchange of the tree: node ``out = combine(hi, lo)`` for every index of ``lt_*``; the
    ``eq_*`` arrays list the combines whose output also needs ``eq`` (a sub-list)."""

    lt_hi: np.ndarray
    lt_lo: np.ndarray
    lt_out: np.ndarray
    eq_hi: np.ndarray
    eq_lo: np.ndarray
    eq_out: np.ndarray

    @property
    def ands(self) -> int:
        return int(self.lt_hi.size + self.eq_hi.size)


@dataclass(frozen=True)
class ComparePlan:
    """Everything both parties must agree on to run a batch of comparisons, as index arrays."""

    tasks: tuple[CompareTask, ...]
    digit_bits: int
    num_nodes: int
    groups: tuple[OTGroup, ...]
    levels: tuple[Level, ...]
    roots: tuple[np.ndarray, ...]  # per task, node ids (fanout,) of the full comparison (-1: constant 0)
    low_roots: tuple[np.ndarray | None, ...]  # per task with a split, node ids of the low comparison
    high_roots: tuple[np.ndarray | None, ...]  # per task with eq rows, (rows,) node ids whose eq is the high run's
    has_eq: np.ndarray = field(repr=False)  # per node

    @property
    def ands(self) -> int:
        """ANDs (= bit triples) per element."""
        return sum(lv.ands for lv in self.levels)

    @property
    def leaf_bits(self) -> int:
        """Online bits per element of the leaf OTs: the receiver's ``w`` choice bits per digit and the
        sender's ``2^w`` messages of ``message_bits`` bits (payload only, no framing)."""
        return sum(len(g.slots) * (g.width + (1 << g.width) * g.message_bits) for g in self.groups)

    @property
    def online_bits(self) -> int:
        """Online payload bits per element: the leaves plus 4 bits per AND (2 opened bits each way)."""
        return self.leaf_bits + 4 * self.ands

    @property
    def cots(self) -> int:
        """Random COTs per element (offline): one per digit bit, two per bit triple."""
        return sum(len(g.slots) * g.width for g in self.groups) + 2 * self.ands


def plan_comparisons(tasks: Sequence[CompareTask], digit_bits: int = DEFAULT_DIGIT_BITS) -> ComparePlan:
    """Lay out digits, OT groups and the AND tree for ``tasks`` (pure; the same on both sides)."""
    if not 1 <= digit_bits <= 8:
        raise InputError(f"digit_bits must be in 1..8 (1-of-2^m OT with m <= 8), got {digit_bits}")
    tasks = tuple(tasks)
    has_eq: list[bool] = []
    node_lo_offset: list[int] = []  # lowest bit offset covered by each node (for has_eq bookkeeping)
    group_slots: dict[tuple[int, int, bool, int], list[tuple[int, int]]] = {}
    group_nodes: dict[tuple[int, int, bool, int], list[list[int]]] = {}
    # runs[t][j] = list of lists of node ids (one list per run, low to high)
    runs: list[list[list[list[int]]]] = []
    eq_runs: list[list[list[int]]] = []  # eq_runs[t][e]: the high-run leaves of equality row e

    def new_node(eq: bool, offset: int) -> int:
        has_eq.append(eq)
        node_lo_offset.append(offset)
        return len(has_eq) - 1

    for t, task in enumerate(tasks):
        bounds = [0, task.split, task.bits] if 0 < task.split < task.bits else [0, task.bits]
        task_runs: list[list[list[int]]] = [[] for _ in range(task.fanout)]
        task_eq: list[list[int]] = [[] for _ in range(task.eq_rows)]
        for ri, (lo, hi) in enumerate(zip(bounds[:-1], bounds[1:])):
            extra = task.eq_rows if ri == 1 else 0  # equality rows live on the high run only
            run_nodes: list[list[int]] = [[] for _ in range(task.fanout)]
            off = lo
            for w in digit_widths(hi - lo, digit_bits):
                eq = off != 0
                key = (w, task.fanout, eq, extra)
                ids = [new_node(eq, off) for _ in range(task.fanout + extra)]
                group_slots.setdefault(key, []).append((t, off))
                group_nodes.setdefault(key, []).append(ids)
                for j in range(task.fanout):
                    run_nodes[j].append(ids[j])
                for e in range(extra):
                    task_eq[e].append(ids[task.fanout + e])
                off += w
            for j in range(task.fanout):
                if run_nodes[j]:
                    task_runs[j].append(run_nodes[j])
        runs.append(task_runs)
        eq_runs.append(task_eq)

    levels: list[Level] = []

    def reduce_lists(lists: list[list[int]], eq_only: int = 0) -> None:
        """Reduce every list (nodes low to high) to one node, all lists level by level in parallel; the
        last ``eq_only`` lists only need ``eq`` (equality rows)."""
        first_eq_only = len(lists) - eq_only
        while any(len(x) > 1 for x in lists):
            lt = ([], [], [])
            eq = ([], [], [])
            for xi, x in enumerate(lists):
                nxt: list[int] = []
                for i in range(0, len(x) - 1, 2):
                    lo, hi = x[i], x[i + 1]
                    out = new_node(has_eq[lo], node_lo_offset[lo])
                    if xi < first_eq_only:
                        for arr, v in zip(lt, (hi, lo, out)):
                            arr.append(v)
                    if has_eq[lo]:
                        for arr, v in zip(eq, (hi, lo, out)):
                            arr.append(v)
                    nxt.append(out)
                if len(x) % 2:
                    nxt.append(x[-1])
                x[:] = nxt
            levels.append(Level(*(np.asarray(a, dtype=np.int64) for a in (*lt, *eq))))

    # stage 1: reduce each run; stage 2: join the runs of each comparison
    stage1 = [run for task_runs in runs for chains in task_runs for run in chains]
    eq_stage = [run for task_eq in eq_runs for run in task_eq]
    reduce_lists(stage1 + eq_stage, eq_only=len(eq_stage))
    high_roots: list[np.ndarray | None] = []
    for t, task in enumerate(tasks):  # before the joins: chains[1][0] is the high run's root
        high_roots.append(np.asarray([chains[1][0] for chains in runs[t]] + [run[0] for run in eq_runs[t]],
                                     dtype=np.int64) if task.eq_rows else None)
    roots: list[np.ndarray] = []
    low_roots: list[np.ndarray | None] = []
    joins: list[list[int]] = []
    for t, task in enumerate(tasks):
        split = 0 < task.split < task.bits
        low_roots.append(np.asarray([chains[0][0] for chains in runs[t]], dtype=np.int64) if split else None)
        for chains in runs[t]:
            joins.append([run[0] for run in chains])
    reduce_lists(joins)
    k = 0
    for task in tasks:
        ids = []
        for _ in range(task.fanout):
            ids.append(joins[k][0] if joins[k] else -1)
            k += 1
        roots.append(np.asarray(ids, dtype=np.int64))

    groups = tuple(
        OTGroup(*key, slots=tuple(group_slots[key]), nodes=np.asarray(group_nodes[key], dtype=np.int64))
        for key in sorted(group_slots)
    )
    return ComparePlan(
        tasks=tasks,
        digit_bits=digit_bits,
        num_nodes=len(has_eq),
        groups=groups,
        levels=tuple(levels),
        roots=tuple(roots),
        low_roots=tuple(low_roots),
        high_roots=tuple(high_roots),
        has_eq=np.asarray(has_eq, dtype=bool),
    )


def comparison_cost(tasks: Sequence[CompareTask], digit_bits: int, cot_bits: float) -> float:
    """Modelled bits per element of a batch of comparisons with ``digit_bits``-bit digits: the online
    leaf and AND bits (:attr:`ComparePlan.online_bits`) plus ``cot_bits`` per random COT (leaf OT bits and
    two per bit triple, :attr:`ComparePlan.cots`)."""
    plan = plan_comparisons(tasks, digit_bits)
    return plan.online_bits + cot_bits * plan.cots


def choose_digit_bits(engine: "Party | str | None", tasks: Sequence[CompareTask]) -> int:
    """The digit size ``m`` in 1..6 with the least :func:`comparison_cost` for ``tasks`` with the OT engine of
    ``engine`` (a party: the kind its session uses; or an engine kind); ties go to the larger ``m`` (fewer
    rounds).  E.g. with silent OT one 8-bit comparison picks m = 3 (48 bits online and 12 COTs, against 60
    and 10 with m = 4), and so does a 36-bit one; with IKNP (128 bits per COT) larger digits win.
    Pure and deterministic: both parties derive the same ``m``."""
    if engine is None or isinstance(engine, str):
        kind = engine
    else:
        from aiompc.protocols.ot import engines

        kind = engine.options.get("ot", engines.DEFAULT_ENGINE)
    cot = COT_BITS.get(kind or "", COT_BITS["iknp"])
    if not any(t.bits for t in tasks):
        return DEFAULT_DIGIT_BITS
    return min(range(6, 0, -1), key=lambda m: comparison_cost(tasks, m, cot))


# --------------------------------------------------------------------------- leaves


def _digits(values: np.ndarray, offset: int, width: int) -> np.ndarray:
    return (values >> np.uint64(offset)) & np.uint64((1 << width) - 1)


def leaf_tables(
    group: OTGroup, sender_values: Sequence[np.ndarray], greater: bool, masks: np.ndarray
) -> np.ndarray:
    """The sender's 1-of-2^w OT messages for ``group``: shape ``(n·g, 2^w)``, ``message_bits`` bits each.

    ``sender_values[t]`` has shape ``(rows, n)`` (``rows >= fanout + eq_rows``); ``masks`` has shape
    ``(n, g, fanout + eq_rows, 2)`` (0/1), the sender's output shares of ``(lt, eq)``.  Bit ``2j`` (or ``j``
    without ``eq``) of message ``k`` is ``[s_j R k] ^ mask``, bit ``2j+1`` is ``[s_j == k] ^ mask``, with
    ``R`` = ``<`` (or ``>``); then one bit ``[s_e == k] ^ mask`` per equality row ``e``.
    """
    rows = group.fanout + group.eq_rows
    digs = np.stack([_digits(sender_values[t][:rows], off, group.width) for t, off in group.slots], axis=-1)
    digs = digs.transpose(1, 2, 0)  # (rows, n, g) -> (n, g, rows)
    n, g = digs.shape[:2]
    k = np.arange(1 << group.width, dtype=np.uint64)
    per = 2 if group.eq else 1
    dtype = np.uint8 if group.message_bits <= 8 else np.uint64
    msg = np.zeros((n, g, 1 << group.width), dtype=dtype)
    for j in range(group.fanout):  # a handful of operands per OT
        d = digs[:, :, j, None]
        lt = (d > k) if greater else (d < k)
        lt ^= masks[:, :, j, 0, None].astype(bool)
        msg |= lt.astype(dtype) << dtype(per * j)
        if group.eq:
            eq = (d == k) ^ masks[:, :, j, 1, None].astype(bool)
            msg |= eq.astype(dtype) << dtype(per * j + 1)
    for e in range(group.eq_rows):
        j = group.fanout + e
        eq = (digs[:, :, j, None] == k) ^ masks[:, :, j, 1, None].astype(bool)
        msg |= eq.astype(dtype) << dtype(per * group.fanout + e)
    return msg.reshape(n * g, 1 << group.width)


def unpack_leaf_messages(group: OTGroup, received: np.ndarray, n: int) -> np.ndarray:
    """The receiver's shares of ``(lt, eq)``, shape ``(n, g, fanout + eq_rows, 2)``, from its OT outputs
    (an equality row's ``lt`` is 0)."""
    g = len(group.slots)
    per = 2 if group.eq else 1
    v = np.asarray(received, dtype=np.uint64).reshape(n, g, 1)
    pos = np.arange(group.fanout * per, dtype=np.uint64)
    bits = ((v >> pos) & np.uint64(1)).astype(np.uint8).reshape(n, g, group.fanout, per)
    if per == 1:
        bits = np.concatenate([bits, np.zeros_like(bits)], axis=-1)
    if group.eq_rows:
        epos = np.arange(group.fanout * per, group.message_bits, dtype=np.uint64)
        eqb = ((v >> epos) & np.uint64(1)).astype(np.uint8)[..., None]  # (n, g, eq_rows, 1)
        bits = np.concatenate([bits, np.concatenate([np.zeros_like(eqb), eqb], axis=-1)], axis=2)
    return bits


# --------------------------------------------------------------------------- the engine


async def compare_batch(
    party: Party, label: str, tasks: Sequence[CompareTask], values: Sequence[np.ndarray], **options: Any
) -> list[tuple[np.ndarray, np.ndarray | None]]:
    """Run a batch of comparisons over the same ``n`` elements; XOR shares of ``[s R r]``, ``R`` = ``<``
    (or ``>`` with ``greater``), ``s`` the ``sender``'s operand, ``r`` the receiver's.

    ``options``: ``sender`` (``"server"`` unless given), ``greater`` (``False``) and ``digit_bits``
    (:data:`DEFAULT_DIGIT_BITS`), as :func:`compare_batch_eq` takes them.
    ``values[t]``: the sender passes its operands of task ``t`` with shape ``(fanout, n)``, the receiver
    its operand with shape ``(n,)``; ``uint64`` below ``2^bits``.  Returns per task ``(full, low)``:
    ``uint8`` shares of shape ``(fanout, n)``, ``low`` (the low ``split`` bits) or ``None``.
    Cost: see the module docstring (one OT call per digit shape and the triples run concurrently).
    """
    out = await compare_batch_eq(party, label, tasks, values, **options)
    return [(full, low) for full, low, _ in out]


async def compare_batch_eq(
    party: Party,
    label: str,
    tasks: Sequence[CompareTask],
    values: Sequence[np.ndarray],
    *,
    sender: Role = "server",
    greater: bool = False,
    digit_bits: int = DEFAULT_DIGIT_BITS,
) -> list[tuple[np.ndarray, np.ndarray | None, np.ndarray | None]]:
    """:func:`compare_batch` with equality rows: the sender passes ``(fanout + eq_rows, n)`` operands per
    task; returns per task ``(full, low, high_eq)``, ``high_eq`` (``None`` without equality rows) the
    XOR shares, shape ``(fanout + eq_rows, n)``, of ``[s_j >> split == r >> split]`` (bits ``split..bits``)
    for every fanout row and then every equality row."""
    plan = plan_comparisons(tasks, digit_bits)
    if len(values) != len(plan.tasks):
        raise InputError(f"compare_batch: {len(plan.tasks)} tasks but {len(values)} value arrays")
    is_sender = party.role == sender
    vals: list[np.ndarray] = []
    n = -1
    for task, v in zip(plan.tasks, values):
        a = np.asarray(v)
        if a.dtype.kind not in "ui":
            raise InputError(f"comparison operands must be unsigned integers, got dtype {a.dtype}")
        a = a.astype(np.uint64, copy=False)
        want_ndim = 2 if is_sender else 1
        if a.ndim != want_ndim or (is_sender and a.shape[0] != task.rows):
            raise InputError(
                f"comparison operands: the {'sender' if is_sender else 'receiver'} passes shape "
                f"{'(fanout + eq_rows, n)' if is_sender else '(n,)'}; got {a.shape} for {task.rows} rows"
            )
        if task.bits < 64 and a.size and int(a.max()) >> task.bits:
            raise InputError(f"a comparison operand does not fit in {task.bits} bits")
        m = a.shape[-1]
        if n not in (-1, m):
            raise InputError("all comparisons of a batch must have the same number of elements")
        n = m
        vals.append(a)
    if n == -1:
        return []
    if n <= CHUNK_ELEMENTS:
        return await _compare_chunk(party, label, plan, vals, n, is_sender, sender, greater)

    # bounded memory: the leaf tables take about n·q·2^m·8 bytes, so large batches run in chunks,
    # a few at a time (their rounds overlap)
    gate = asyncio.Semaphore(CHUNKS_IN_FLIGHT)
    bounds = list(range(0, n, CHUNK_ELEMENTS)) + [n]

    async def chunk(i: int) -> list[tuple[np.ndarray, np.ndarray | None, np.ndarray | None]]:
        lo, hi = bounds[i], bounds[i + 1]
        async with gate:
            return await _compare_chunk(
                party, f"{label}/c{i}", plan, [v[..., lo:hi] for v in vals], hi - lo, is_sender, sender, greater
            )

    parts = await asyncio.gather(*(chunk(i) for i in range(len(bounds) - 1)))
    out: list[tuple[np.ndarray, np.ndarray | None, np.ndarray | None]] = []
    for t in range(len(plan.tasks)):
        full = np.concatenate([p[t][0] for p in parts], axis=1)
        low = None if parts[0][t][1] is None else np.concatenate([p[t][1] for p in parts], axis=1)  # type: ignore[misc]
        heq = None if parts[0][t][2] is None else np.concatenate([p[t][2] for p in parts], axis=1)  # type: ignore[misc]
        out.append((full, low, heq))
    return out


async def _compare_chunk(
    party: Party,
    label: str,
    plan: ComparePlan,
    vals: list[np.ndarray],
    n: int,
    is_sender: bool,
    sender: Role,
    greater: bool,
) -> list[tuple[np.ndarray, np.ndarray | None, np.ndarray | None]]:
    """The protocol on ``n`` elements: leaves (OTs) and triples concurrently, then the AND levels."""
    L = np.zeros((n, plan.num_nodes), dtype=np.uint8)
    E = np.zeros((n, plan.num_nodes), dtype=np.uint8)

    async def leaves(gi: int, group: OTGroup) -> None:
        lab = f"{label}/leaf{gi}"
        g = len(group.slots)
        if is_sender:
            masks = party.rng.bits((n, g, group.fanout + group.eq_rows, 2))
            if not group.eq:
                masks[:, :, : group.fanout, 1] = 0
            masks[:, :, group.fanout :, 0] = 0  # equality rows have no lt
            table = await party.compute(leaf_tables, group, vals, greater, masks)
            await one_of_n_ot(
                party, lab, sender=sender, bits=group.message_bits, n_choices=1 << group.width, messages=table
            )
            shares = masks
        else:
            choices = np.stack([_digits(vals[t], off, group.width) for t, off in group.slots], axis=1)
            got = await one_of_n_ot(
                party, lab, sender=sender, bits=group.message_bits, n_choices=1 << group.width,
                choices=choices.reshape(-1).astype(np.uint64),
            )
            if got is None or np.asarray(got).size != n * g:
                raise ProtocolError(f"millionaire {label!r}: the OT returned no or too few leaf messages")
            shares = unpack_leaf_messages(group, got, n)
        L[:, group.nodes] = shares[..., 0]
        E[:, group.nodes] = shares[..., 1]

    triples_needed = n * plan.ands
    jobs = [leaves(gi, grp) for gi, grp in enumerate(plan.groups)]
    results = await asyncio.gather(fetch_triples(party, f"{label}/triples", triples_needed), *jobs)
    pool: TriplePool = results[0]

    for li, lv in enumerate(plan.levels):
        x = np.concatenate([E[:, lv.lt_hi], E[:, lv.eq_hi]], axis=1)
        y = np.concatenate([L[:, lv.lt_lo], E[:, lv.eq_lo]], axis=1)
        z = await and_(party, f"{label}/and{li}", x, y, triples=pool)
        a = lv.lt_hi.size
        L[:, lv.lt_out] = L[:, lv.lt_hi] ^ z[:, :a]
        E[:, lv.eq_out] = z[:, a:]

    out: list[tuple[np.ndarray, np.ndarray | None, np.ndarray | None]] = []
    for roots, low, high in zip(plan.roots, plan.low_roots, plan.high_roots):
        full = np.zeros((roots.size, n), dtype=np.uint8)  # a 0-bit comparison is constantly false
        valid = roots >= 0
        full[valid] = L[:, roots[valid]].T
        out.append((full, None if low is None else L[:, low].T.copy(), None if high is None else E[:, high].T.copy()))
    return out


_CONVERSE = {"<": ">", ">": "<", "<=": ">=", ">=": "<="}


async def millionaire(
    party: Party,
    label: str,
    x: np.ndarray,
    *,
    bits: int,
    op: Op = "<",
    sender: Role = "server",
    digit_bits: int = DEFAULT_DIGIT_BITS,
) -> np.ndarray:
    """XOR shares (``uint8``) of ``[x_server op x_client]`` for ``bits``-bit unsigned operands.

    Each party passes its own operand ``x`` (``uint64`` array below ``2^bits``, same shape on both
    sides, ``0 <= bits <= 64``); ``op`` is one of ``<``, ``<=``, ``>``, ``>=`` and always reads
    *server's operand op client's operand*.  ``sender`` picks the party that builds the OT tables
    (the other chooses with its digits); the result does not depend on it.  Non-strict relations are
    the negation of the converse strict one (the server flips its share), so all four cost the same.

    Cost (``q = ceil(bits/m)`` digits, ``m = digit_bits``): leaves ``Σ (w_j + 2^w_j·(1|2))`` bits,
    ``2(q−1) − ceil(log2 q)`` ANDs at 4 bits, offline ``bits`` random OTs for the leaves and one bit
    triple per AND; rounds: the leaf OT round trip plus ``ceil(log2 q)`` exchanges.  For ``bits = 31``,
    ``m = 4``: 255 bits of leaves + 11 ANDs (44 bits) = 299 bits online and 53 random COTs offline
    (:attr:`ComparePlan.online_bits`, :attr:`ComparePlan.cots`).
    """
    check_width(max(bits, 1))
    if op not in _CONVERSE:
        raise InputError(f"millionaire: op must be one of <, <=, >, >=; got {op!r}")
    xs = np.asarray(x)
    shape = xs.shape
    flat = xs.reshape(-1)
    # express as [s R r] with s the sender's operand: server-sender reads op as is, client-sender its converse
    rel = op if sender == "server" else _CONVERSE[op]
    negate = rel in ("<=", ">=")
    strict = {"<=": ">", ">=": "<"}.get(rel, rel)
    mine = flat[None, :] if party.role == sender else flat
    ((res, _),) = await compare_batch(
        party, label, [CompareTask(bits)], [mine], sender=sender, greater=strict == ">", digit_bits=digit_bits
    )
    res = res[0]
    if negate and party.is_server:
        res = res ^ np.uint8(1)
    return res.reshape(shape)
