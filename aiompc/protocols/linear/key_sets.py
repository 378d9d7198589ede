"""Key sets shared by several HE layers: what one session's keys cost, and which keys a plan finds already paid.

A *key set* is what the client's keys depend on — the ring degree ``N``, the RNS primes and σ, not ``t``
(:attr:`~aiompc.crypto.he.HEParams.key_params`): one secret, one public key (``"he-keys/<key fingerprint>"``) and
one Galois key per element used by output packing (``"he-galois/<key fingerprint>/<g>"``), each sent once per
session (:mod:`aiompc.protocols.linear.engine`).  Every layer whose parameters have the same primes shares them,
whatever its ``l``.

* :class:`KeySet` — primes chosen for a whole network (:func:`shared_primes`: balanced NTT primes that do not
  depend on ``l``) and the Galois elements its layers use.  A planner given key sets
  (:attr:`~aiompc.protocols.linear.quantized.QuantizedPlanner.key_sets`) also tries each packed layout at a key
  set's primes, where its keys are already paid (:func:`uncovered`).
* :func:`session_key_bytes` — the one-time bytes of a list of plans: one public key per distinct key set, one
  Galois key per distinct ``(key set, element)`` of the packed plans.  Equal to the channel statistics of the
  ``he-keys`` and ``he-galois`` labels of a session running those plans (``tests/nn/test_key_plan.py``).

Pure functions of public data (shapes, widths, primes); no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

from aiompc.crypto.he import SECURITY_TABLE, HEParams
from aiompc.crypto.he.noise import choose_primes
from aiompc.errors import InputError
from aiompc.protocols.linear.costs import Overhead, galois_key_bytes, key_bytes
from aiompc.protocols.linear.packed import layout_elements
from aiompc.protocols.linear.plan import LinearPlan

__all__ = ["KeySet", "shared_primes", "uncovered", "session_key_bytes", "group_key_bytes", "key_groups"]


@dataclass(frozen=True)
class KeySet:
    """Primes shared by several layers at ring degree ``n`` and the Galois ``elements`` its packed layers use
    (sorted).  ``q`` = the primes' product; the keys are those of ``HEParams(n, primes, any l)``."""

    n: int
    primes: tuple[int, ...]
    elements: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        if self.n not in SECURITY_TABLE or not self.primes:
            raise InputError(f"a key set needs a secure ring degree and primes, got N = {self.n}, {self.primes}")
        if tuple(sorted(set(self.elements))) != self.elements:
            raise InputError(f"key set elements must be sorted and distinct: {self.elements}")

    def params(self, l: int) -> HEParams:
        """The set's primes with ``t = 2**l`` (validated: 128-bit table, NTT-friendly primes)."""
        return HEParams(self.n, self.primes, l)

    @property
    def key_params(self) -> HEParams:
        """The parameter set its keys are made and sent under (:attr:`~aiompc.crypto.he.HEParams.key_params`)."""
        return self.params(1).key_params

    @property
    def log2_q(self) -> float:
        return self.key_params.log2_q

    def holds(self, params: HEParams) -> bool:
        """Whether ``params`` uses this set's keys (same ring and primes, any ``t``)."""
        return params.n == self.n and params.primes == self.primes


def shared_primes(n: int, need_bits: float) -> tuple[int, ...]:
    """Balanced NTT primes at ring degree ``n`` with ``log2 q >= need_bits`` chosen *without* regard to ``t``
    (no ``q ≡ 1 mod 2^l``: the worst-case noise bound holds for any ``ρ = q mod t``, :mod:`aiompc.crypto.he.noise`),
    so that layers of every ``l`` can share them.  Raises :class:`~aiompc.errors.UndecryptableParameters` above
    the 128-bit budget."""
    return choose_primes(n, need_bits, SECURITY_TABLE[n], None)


def uncovered(key_sets: Iterable[KeySet], params: HEParams, elements: tuple[int, ...]) -> tuple[int, ...]:
    """The elements of ``elements`` whose Galois keys for ``params`` no key set in ``key_sets`` holds."""
    have: set[int] = set()
    for ks in key_sets:
        if ks.holds(params):
            have.update(ks.elements)
    return tuple(g for g in elements if g not in have)


def key_groups(plans: Iterable[LinearPlan]) -> dict[HEParams, set[int]]:
    """Per key set (its :attr:`~aiompc.crypto.he.HEParams.key_params`) the Galois elements the packed plans use
    (empty for a key set only unpacked plans use: it still costs a public key)."""
    out: dict[HEParams, set[int]] = {}
    for plan in plans:
        elements = out.setdefault(plan.he.key_params, set())
        if plan.output_packing:
            elements.update(layout_elements(plan.layout))
    return out


def group_key_bytes(groups: Iterable[tuple[HEParams, Iterable[int]]], overhead: Overhead | None = None) -> int:
    """One-time bytes of keys grouped as ``(key set's key_params, Galois elements)``: a public key per distinct
    key set and a Galois key per distinct ``(key set, element)`` (frames included, ``overhead`` the transport's)."""
    merged: dict[HEParams, set[int]] = {}
    for kp, els in groups:
        merged.setdefault(kp, set()).update(els)
    return sum(key_bytes(kp, overhead) + galois_key_bytes(kp, tuple(sorted(els)), overhead)
               for kp, els in merged.items())


def session_key_bytes(plans: Iterable[LinearPlan], overhead: Overhead | None = None) -> int:
    """One-time bytes of running ``plans`` in one session (:func:`group_key_bytes` of :func:`key_groups`)."""
    return group_key_bytes(key_groups(plans).items(), overhead)
