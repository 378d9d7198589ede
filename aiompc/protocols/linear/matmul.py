"""The product of two secret-shared matrices (attention's ``Q·Kᵀ`` and ``P·V``) by the HE engine of :func:`fc`.

Inputs: ``a = a_S + a_C`` of shape ``(..., S, K)`` and ``b = b_S + b_C`` of shape ``(..., K, T)``, both shared mod
``2^l`` (equal leading axes: batch × heads, ``G`` products in all).  Output: shares mod ``2^l`` of ``a @ b``::

    a @ b = a_S b_S (server, local) + a_C b_C (client, local) + a_C b_S + a_S b_C   (the two cross terms)

Each cross term is a product of a client matrix ``X`` and a server matrix ``Y``: ``a_C · b_S`` (``X = a_C``,
``Y = b_S``) and ``a_S · b_C = (b_Cᵀ · a_Sᵀ)ᵀ`` (``X = b_Cᵀ``, ``Y = a_Sᵀ``).  It runs as one :func:`fc` call per
product: the client encrypts ``X`` (the server's share of ``X`` is zero), the server multiplies by its own ``Y``
as the plaintext "weight" — the engine's matrix-matrix packing (Iron's, ``d0·d1·d2 <= N``), its noise bound,
its 40-bit flooding and re-randomisation of every response (so the client learns nothing of ``Y`` beyond the
product), its byte model.  The two cross terms and all ``G`` products run concurrently under distinct labels:
``f"{label}/ac_bs/g{g}"`` and ``f"{label}/bc_as/g{g}"`` (each with the engine's ``/tile{u}`` sub-labels).

**Full-ring plaintexts.**  ``Y`` is a share: uniform in ``Z_{2^l}``, so as a centered weight it is as large as
``2^(l-1)`` and the product noise grows with it.  Under Cheetah's ``q ~ 2^109`` at ``N = 4096`` and ``l = 37``
that leaves no room for the 40-bit flood (weights of about 12 bits are the most that fit).  So the server's
operand is split into ``d`` signed digits of ``h = ceil(l / d)`` bits, ``Y = Σ_i 2^(i·h) Y_i`` with
``Y_i ∈ [-2^(h-1), 2^(h-1))`` (the top digit reduced mod ``2^(l - (d-1)h)``), and the client uploads
``[X, 2^h X, ..., 2^((d-1)h) X] mod 2^l`` as one ``(R, d·K)`` input: ``Σ_i (2^(i·h) X) Y_i = X Y (mod 2^l)``
with the noise of ``h``-bit weights.  ``d = 1`` is the plain full-ring product (``weight_bits = l``, checked by
the same noise bound and flooding as any layer).  The upload grows ``d``-fold, the download does not.  The
planner chooses ``d`` per cross term: the fewest modelled bytes among all digit counts ``1 .. MAX_DIGITS`` that
decrypt with 40-bit flooding (the bytes are not monotonic in ``d``: fewer plaintext bits can allow a smaller ``q``
or larger blocks; e.g. BERT's ``128x64 @ 64x128`` at ``l = 24``: 1.19 / 1.08 / 0.71 / 1.49 / 1.66 / 0.67 MB for
``d = 1..6``).  Planning costs one planner search per digit count (quantized planner: about 1 s CPU for ``d = 1``,
0.2 s for the others; cached per shape).

**Method choice.**  :func:`plan_cross` also prices Gilboa's OT multiplication of the cross term
(:func:`ot_cross_bits`: one COT per bit of the client's operand, the server's row of ``Y`` times ``2^i`` as an
``(l - i)``-bit correlation over the ``C`` outputs) and picks the fewer modelled bytes — among the methods the
caller can run.  The HE linear layers never touch OT (import-linter), so the runners are passed down as a table:
``methods`` maps a method name to its runner (default :data:`HE_METHODS`, ``{"he": cross_he}``); the table with
the OT runner too is :data:`aiompc.protocols.products.CROSS_METHODS` (``"ot"``:
:func:`aiompc.protocols.nonlinear.gilboa.cross_ot`), which an engine that may use OT passes, with ``cot_bits``
(the modelled bits per random COT of the session's OT engine, :func:`aiompc.protocols.products.cot_bits`).  A plan
never names a method that was not in the table.  OT wins only for small products: ``G·S·K·T·l²/2`` bits grow
with the product's volume while HE pays at least one ciphertext each way (BERT attention: HE is 5–100× fewer
bytes).

Reporting: :func:`matmul_shared` records its :class:`SharedMatmulPlan` in ``party.state["matmul_shared"][label]``;
:meth:`SharedMatmulPlan.describe` names the method, digits and HE blocks of each cross term, and
:meth:`SharedMatmulPlan.summary` gives them as a dict a bench can put into its JSON.  Callers that want the plan
before the call (to log it or to plan a network) call :func:`matmul_shared_plan` and pass it as ``plan=``.

Cost per call: the two cross terms' :func:`fc` bytes (:func:`shared_matmul_bytes`, exact, equal to the channel
statistics), one round trip each (concurrent), and the local products ``G·S·K·T`` multiply-adds per party.
"""

from __future__ import annotations

import asyncio
import functools
import math
from dataclasses import dataclass
from typing import Any, Awaitable, Callable, Mapping

import numpy as np

from aiompc.errors import InputError, ParameterError, UndecryptableParameters
from aiompc.party import Party
from aiompc.protocols.linear.costs import plan_cost
from aiompc.protocols.linear.fc import fc, fc_plan
from aiompc.protocols.linear.plan import LinearPlan, Planner
from aiompc.protocols.linear.tiling import MatmulShape, MatmulTiling
from aiompc.ring import check_width, reduce

__all__ = [
    "MAX_DIGITS", "METHODS", "HE_METHODS", "CrossRunner", "CrossShape", "CrossPlan", "SharedMatmulPlan", "STATE_KEY",
    "digit_split", "digit_inputs", "digit_weights", "ot_cross_bits", "plan_cross", "matmul_shared_plan", "shared_matmul_bytes",
    "cross_he", "local_product", "matmul_shared",
]

MAX_DIGITS = 6
"""Most digits the server's operand is split into (``h = ceil(l / d)`` bits each)."""
METHODS = ("he", "ot")
"""The cross-term methods a plan may name (each runs only if the caller's runner table has it)."""
STATE_KEY = "matmul_shared"
"""``party.state[STATE_KEY][label]``: the :class:`SharedMatmulPlan` of each call (for logs and benchmarks)."""
_PLAN_LABEL = "matmul"  # the label length the chooser prices frames with (the choice does not depend on it)


@dataclass(frozen=True)
class CrossShape:
    """``groups`` independent products ``X (rows × inner)`` (client) times ``Y (inner × cols)`` (server)."""

    groups: int
    rows: int
    inner: int
    cols: int

    def __post_init__(self) -> None:
        for name in ("groups", "rows", "inner", "cols"):
            v = getattr(self, name)
            if not isinstance(v, int) or v < 1:
                raise InputError(f"cross-term {name} must be a positive int, got {v!r}")


@dataclass(frozen=True)
class CrossPlan:
    """How one cross term is computed: ``method`` (``"he"``), the digits ``d`` of the server's operand and the
    :func:`fc` plan of one product ``(rows, d·inner) -> cols`` (``fc``), with the modelled bytes of both
    methods over all groups (``he_bytes``; ``ot_bits`` for Gilboa's OT product, priced only)."""

    shape: CrossShape
    l: int
    method: str
    digits: int
    fc: LinearPlan | None
    """The HE plan (``None`` when no digit count decrypts; the method is then ``"ot"``)."""
    he_bytes: int | None
    ot_bits: float

    @property
    def digit_bits(self) -> int:
        """Signed width ``h = ceil(l / d)`` of each digit (the plan's ``weight_bits``)."""
        return -(-self.l // self.digits)

    @property
    def modelled_bytes(self) -> int:
        """Bytes of the chosen method (HE: exact, frames included; OT: payload bits / 8, frames not counted)."""
        if self.method == "he":
            assert self.he_bytes is not None
            return self.he_bytes
        return math.ceil(self.ot_bits / 8)

    def describe(self) -> str:
        s = self.shape
        he = (f"HE {self.digits} digit(s) of {self.digit_bits} bits, {self.fc.describe()}, {self.he_bytes} B"
              if self.fc is not None else "HE does not decrypt")
        return (f"{s.groups}x({s.rows}x{s.inner} @ {s.inner}x{s.cols}) by {self.method} [{he}; OT "
                f"{self.ot_bits / 8:.0f} B]")


@dataclass(frozen=True)
class SharedMatmulPlan:
    """The plans of both cross terms of one :func:`matmul_shared` call (``a`` is ``(G, S, K)``, ``b`` ``(G, K, T)``)."""

    ac_bs: CrossPlan
    """``a_C · b_S``: ``X = a_C`` ``(S, K)``, ``Y = b_S`` ``(K, T)``."""
    bc_as: CrossPlan
    """``(b_Cᵀ · a_Sᵀ)ᵀ``: ``X = b_Cᵀ`` ``(T, K)``, ``Y = a_Sᵀ`` ``(K, S)``."""

    @property
    def l(self) -> int:
        return self.ac_bs.l

    @property
    def methods(self) -> tuple[str, str]:
        return (self.ac_bs.method, self.bc_as.method)

    @property
    def modelled_bytes(self) -> int:
        return self.ac_bs.modelled_bytes + self.bc_as.modelled_bytes

    def describe(self) -> str:
        return f"a_C·b_S: {self.ac_bs.describe()}; a_S·b_C: {self.bc_as.describe()}"

    def summary(self) -> dict[str, Any]:
        """JSON-ready: per cross term the method, digits, blocks, ring degree and modelled bytes."""
        out: dict[str, Any] = {"l": self.l}
        for name, c in (("ac_bs", self.ac_bs), ("bc_as", self.bc_as)):
            row: dict[str, Any] = {"method": c.method, "he_bytes": c.he_bytes, "ot_bytes": math.ceil(c.ot_bits / 8)}
            if c.fc is not None:
                t = c.fc.layout.tiling
                row.update(digits=c.digits, digit_bits=c.digit_bits, planner=c.fc.planner, n=c.fc.he.n,
                           blocks=[t.d0, t.d1, t.d2] if isinstance(t, MatmulTiling) else None)
            out[name] = row
        return out


# --------------------------------------------------------------------------- pure pieces


def digit_split(y: np.ndarray, l: int, digits: int) -> np.ndarray:
    """Signed digits of ``y`` (taken mod ``2^l``): ``(digits, *y.shape)`` int64 with
    ``Σ_i 2^(i·h) · out[i] ≡ y (mod 2^l)``, ``h = ceil(l / digits)``, every ``|out[i]| <= 2^(h-1)`` (the top digit
    is reduced mod ``2^(l - (digits-1)·h)`` and centered).  ``digits = 1``: ``y`` centered in ``[-2^(l-1), 2^(l-1))``."""
    check_width(l)
    if not 1 <= digits <= l:
        raise InputError(f"digits must be in 1..l = {l}, got {digits}")
    h = -(-l // digits)
    if (digits - 1) * h >= l:
        raise InputError(f"{digits} digits of {h} bits overshoot l = {l}: use fewer digits")
    v = reduce(np.asarray(y), l)
    out = np.empty((digits, *v.shape), dtype=np.int64)
    for i in range(digits):  # a loop over the few digits; each step is whole-array numpy
        w = h if i < digits - 1 else l - (digits - 1) * h
        low = v & np.uint64((1 << w) - 1)
        neg = low >= np.uint64(1 << (w - 1))
        out[i] = low.astype(np.int64) - np.where(neg, np.int64(1) << np.int64(w), np.int64(0))
        # v <- (v - digit) / 2^w: the borrow of a negative digit carries into the next one
        v = (v >> np.uint64(w)) + neg.astype(np.uint64)
    return out


def digit_inputs(x: np.ndarray, l: int, digits: int) -> np.ndarray:
    """The client's upload for ``digits`` digits: ``[x, 2^h x, ..., 2^((d-1)h) x] mod 2^l`` concatenated on the
    last axis (``(..., d·inner)`` uint64; ``h = ceil(l / digits)``)."""
    h = -(-l // digits)
    v = reduce(np.asarray(x), l)
    return np.concatenate([reduce(v << np.uint64(i * h), l) for i in range(digits)], axis=-1)


def digit_weights(y: np.ndarray, l: int, digits: int) -> np.ndarray:
    """The server's fc weights for ``Y`` ``(G, inner, cols)``: ``(G, cols, d·inner)`` int64, digit ``i`` of
    ``Y[g, k, c]`` at ``[g, c, i·inner + k]`` (matching :func:`digit_inputs`)."""
    d = digit_split(y, l, digits)  # (digits, G, inner, cols)
    g, k, c = y.shape
    return np.ascontiguousarray(d.transpose(1, 3, 0, 2).reshape(g, c, digits * k))


def ot_cross_bits(shape: CrossShape, l: int, cot_bits: float = 1.0) -> float:
    """Modelled bits of Gilboa's OT product of one cross term (all groups): per element of ``X``, ``l`` COTs
    (the receiver's ``l`` choice bits, plus ``cot_bits`` per random COT of the session's engine: about 1 for
    silent OT, 128 for IKNP) and, for bit ``i``, the sender's ``(l - i)``-bit correlation over the ``cols``
    outputs: ``G·rows·inner·(l·(1 + cot_bits) + cols·l(l+1)/2)``.  Frames and headers not counted."""
    elements = shape.groups * shape.rows * shape.inner
    return float(elements * (l * (1 + cot_bits) + shape.cols * l * (l + 1) / 2))


def _he_bytes(plan: LinearPlan, groups: int, label: str) -> int:
    cost = plan_cost(plan, label)
    return groups * cost.total


@functools.lru_cache(maxsize=512)
def plan_cross(shape: CrossShape, l: int, planner: Planner, *, cot_bits: float = 1.0,
               methods: tuple[str, ...] = ("he",)) -> CrossPlan:
    """The cheapest way (modelled bytes) to compute one cross term among ``methods`` (see the module
    docstring).  HE: the digit count ``d`` whose :func:`fc` plan ``(rows, d·inner) -> cols`` with ``weight_bits =
    ceil(l / d)`` decrypts with the planner's flooding and costs the fewest bytes; OT: :func:`ot_cross_bits` at
    ``cot_bits`` per random COT.  Pure and cached; both parties derive the same plan.  Raises
    :class:`UndecryptableParameters` when HE is the only method and no digit count decrypts, and
    :class:`InputError` for an unknown method."""
    check_width(l)
    unknown = [m for m in methods if m not in METHODS]
    if unknown or not methods:
        raise InputError(f"cross-term methods must be among {METHODS}, got {methods!r}")
    ot = ot_cross_bits(shape, l, cot_bits)
    if "he" not in methods:
        return CrossPlan(shape, l, "ot", 1, None, None, ot)
    best: tuple[int, int, LinearPlan] | None = None
    last: Exception | None = None
    for d in range(1, min(MAX_DIGITS, l) + 1):
        h = -(-l // d)
        if (d - 1) * h >= l:
            continue
        try:
            plan = fc_plan(MatmulShape(shape.rows, d * shape.inner, shape.cols), l, weight_bits=h, planner=planner)
        except (UndecryptableParameters, ParameterError) as exc:
            last = exc
            continue
        cost = _he_bytes(plan, shape.groups, _PLAN_LABEL)
        if best is None or cost < best[0]:
            best = (cost, d, plan)
    if best is None:
        if "ot" in methods:
            return CrossPlan(shape, l, "ot", 1, None, None, ot)
        raise UndecryptableParameters(f"{shape} at l = {l}: no digit count up to {MAX_DIGITS} decrypts under the "
                                      f"{planner.name!r} planner ({last})")
    cost, d, plan = best
    method = "ot" if "ot" in methods and math.ceil(ot / 8) < cost else "he"
    return CrossPlan(shape, l, method, d, plan, cost, ot)


def matmul_shared_plan(groups: int, s: int, k: int, t: int, l: int, planner: Planner, *,
                       cot_bits: float = 1.0, methods: tuple[str, ...] = ("he",)) -> SharedMatmulPlan:
    """Both cross terms' plans for ``G = groups`` products ``(s × k) @ (k × t)`` at ``l`` bits among ``methods``
    (pure, cached)."""
    return SharedMatmulPlan(plan_cross(CrossShape(groups, s, k, t), l, planner, cot_bits=cot_bits, methods=methods),
                            plan_cross(CrossShape(groups, t, k, s), l, planner, cot_bits=cot_bits, methods=methods))


def shared_matmul_bytes(plan: SharedMatmulPlan, label: str) -> tuple[int, int]:
    """``(client → server, server → client)`` bytes of the HE cross terms of one :func:`matmul_shared` call under
    ``label`` (exact: the channel statistics of their sub-labels), without the once-per-session keys; an OT cross
    term counts 0 here (its bytes: :attr:`CrossPlan.ot_bits`, frames apart, plus the OT engine's)."""
    up = down = 0
    for name, c in (("ac_bs", plan.ac_bs), ("bc_as", plan.bc_as)):
        if c.method != "he" or c.fc is None:
            continue
        for g in range(c.shape.groups):
            cost = plan_cost(c.fc, f"{label}/{name}/g{g}")
            up, down = up + cost.upload, down + cost.download
    return up, down


def local_product(a: np.ndarray, b: np.ndarray, l: int) -> np.ndarray:
    """``a @ b mod 2^l`` for ``uint64`` ``(G, S, K)`` and ``(G, K, T)`` (numpy's integer matmul wraps mod ``2^64``,
    so the result is exact mod ``2^l``; ``G·S·K·T`` multiply-adds)."""
    return reduce(np.matmul(reduce(a, l), reduce(b, l)), l)


# --------------------------------------------------------------------------- the protocol


async def cross_he(party: Party, label: str, plan: CrossPlan, x: np.ndarray | None = None,
                   y: np.ndarray | None = None) -> np.ndarray:
    """Shares mod ``2^l`` of ``X @ Y`` for the client's ``X`` ``(G, rows, inner)`` and the server's ``Y``
    ``(G, inner, cols)`` (each passes only its own): ``G`` concurrent :func:`fc` calls ``f"{label}/g{g}"`` under
    ``plan.fc``.  Returns ``(G, rows, cols)`` uint64."""
    s, l, d = plan.shape, plan.l, plan.digits
    if plan.fc is None:
        raise InputError(f"{label}: the cross term has no HE plan (its method is {plan.method!r})")
    if party.is_client:
        if x is None or y is not None or np.shape(x) != (s.groups, s.rows, s.inner):
            raise InputError(f"{label}: the client passes X of shape {(s.groups, s.rows, s.inner)} only")
        inputs = await party.compute(digit_inputs, x, l, d)
        outs = await asyncio.gather(*(
            fc(party, f"{label}/g{g}", inputs[g], out_features=s.cols, l=l, weight_bits=plan.digit_bits, plan=plan.fc)
            for g in range(s.groups)))
    else:
        if y is None or x is not None or np.shape(y) != (s.groups, s.inner, s.cols):
            raise InputError(f"{label}: the server passes Y of shape {(s.groups, s.inner, s.cols)} only")
        weights = await party.compute(digit_weights, np.asarray(y), l, d)
        zero = np.zeros((s.rows, d * s.inner), dtype=np.uint64)
        outs = await asyncio.gather(*(
            fc(party, f"{label}/g{g}", zero, out_features=s.cols, l=l, weight=weights[g], weight_bits=plan.digit_bits,
               plan=plan.fc, cache_weights=False)
            for g in range(s.groups)))
    return np.stack(outs)


CrossRunner = Callable[[Party, str, CrossPlan, "np.ndarray | None", "np.ndarray | None"], Awaitable[np.ndarray]]
"""A cross-term method: ``(party, label, plan, X (client) or None, Y (server) or None) -> shares of X @ Y``."""
HE_METHODS: dict[str, CrossRunner] = {"he": cross_he}
"""The runners of this package (HE only; :data:`aiompc.protocols.products.CROSS_METHODS` adds OT)."""


async def matmul_shared(party: Party, label: str, a: np.ndarray, b: np.ndarray, *, l: int,
                        planner: Planner | None = None, plan: SharedMatmulPlan | None = None,
                        methods: Mapping[str, CrossRunner] | None = None, cot_bits: float = 1.0) -> np.ndarray:
    """This party's share mod ``2^l`` of ``a @ b`` for shared ``a`` ``(..., S, K)`` and ``b`` ``(..., K, T)``
    (equal leading axes; each party passes its shares).  Both parties call it with the same label, ``l``,
    planner (or plan), ``methods`` and ``cot_bits``.  ``methods``: the cross-term runners the plan may choose from
    (default :data:`HE_METHODS`; :data:`aiompc.protocols.products.CROSS_METHODS` adds OT).  Returns
    ``(..., S, T)`` uint64.  The plan used is recorded in ``party.state["matmul_shared"][label]`` (see the module
    docstring for the method and its report)."""
    runners = HE_METHODS if methods is None else methods
    a, b = np.asarray(a), np.asarray(b)
    check_width(l)
    if a.ndim < 2 or b.ndim < 2 or a.shape[:-2] != b.shape[:-2] or a.shape[-1] != b.shape[-2]:
        raise InputError(f"{label}: shared matmul needs a (..., S, K) and b (..., K, T) with equal leading axes, got "
                         f"{a.shape} and {b.shape}")
    if a.dtype.kind not in "ui" or b.dtype.kind not in "ui":
        raise InputError(f"{label}: shares must be integers mod 2^l, got {a.dtype} and {b.dtype}")
    lead = a.shape[:-2]
    s, k, t = a.shape[-2], a.shape[-1], b.shape[-1]
    g = int(np.prod(lead, dtype=np.int64))
    if g == 0 or s == 0 or k == 0 or t == 0:
        raise InputError(f"{label}: empty operands {a.shape} @ {b.shape}")
    if plan is None:
        if planner is None:
            raise InputError(f"{label}: pass a planner (aiompc.protocols.linear.PLANNERS) or a plan")
        plan = await party.compute(functools.partial(matmul_shared_plan, cot_bits=cot_bits,
                                                     methods=tuple(sorted(runners))), g, s, k, t, l, planner)
    expected = (CrossShape(g, s, k, t), CrossShape(g, t, k, s))
    if (plan.ac_bs.shape, plan.bc_as.shape) != expected or plan.l != l:
        raise InputError(f"{label}: the plan is for {plan.ac_bs.shape} at l = {plan.l}, not {expected[0]} at l = {l}")
    missing = [m for m in plan.methods if m not in runners]
    if missing:
        raise InputError(f"{label}: the plan uses {missing}, which the runner table {sorted(runners)} does not run")
    party.state.setdefault(STATE_KEY, {})[label] = plan
    a3 = reduce(a.reshape(g, s, k), l)
    b3 = reduce(b.reshape(g, k, t), l)
    local = party.compute(local_product, a3, b3, l)
    run1, run2 = runners[plan.ac_bs.method], runners[plan.bc_as.method]
    if party.is_client:
        t1, t2, own = await asyncio.gather(run1(party, f"{label}/ac_bs", plan.ac_bs, a3, None),
                                           run2(party, f"{label}/bc_as", plan.bc_as, np.swapaxes(b3, 1, 2), None),
                                           local)
    else:
        t1, t2, own = await asyncio.gather(run1(party, f"{label}/ac_bs", plan.ac_bs, None, b3),
                                           run2(party, f"{label}/bc_as", plan.bc_as, None, np.swapaxes(a3, 1, 2)),
                                           local)
    out = reduce(own + t1 + np.swapaxes(t2, 1, 2), l)
    return out.reshape(*lead, s, t)
