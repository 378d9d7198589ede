"""The protocol modes: decided once at the top (the command line, ``serve``, ``bench``) and handed down
unchanged as one value.

A :class:`Mode` says everything the engine needs to know about the protocol family:

* ``program`` — which integer program of a float model runs: ``fixed-point`` (Cheetah's 37-bit fixed point,
  :func:`aiompc.nn.fixed_point.fixed_point`) or ``quantized`` (:func:`aiompc.nn.quantize.quantize`);
* ``rings`` — ``cheetah``: every edge on Cheetah's 37-bit ring; ``tight``: each edge on the ring its real width
  needs (the quantized mode's reason to exist);
* ``planner`` — the linear-layer planner object (:mod:`aiompc.protocols.linear.planners`);
* ``exact`` — exact rescaling, or Cheetah's one-LSB approximate truncation;
* ``stat_scope`` — what the 40-bit statistical security of the flooding covers: ``inference`` (all result
  ciphertexts of one inference call together, :mod:`aiompc.nn.stat_budget`) or ``ciphertext`` (each result
  ciphertext on its own, as Cheetah states it).

The modes by name are one table, :data:`MODES`:

* ``cheetah`` — the baseline as Cheetah runs it: fixed point, 37-bit rings, Cheetah's tiling and parameters,
  approximate truncation by default, 40 bits per result ciphertext (its parameters hold no more);
* ``quantized`` — the low-precision program on tight rings with the cost-driven planner, exact by default,
  40 bits per inference;
* ``cheetah-int`` — the quantized program on Cheetah's 37-bit rings and parameters (kept for comparison).

:class:`EngineConfig` is what a session agrees on in its handshake: the mode and what the client learns
(``output``).  A server announces it; a client that insists on a mode (:func:`mode_options`) and meets a
different one gets a :class:`~aiompc.errors.HandshakeError`.

:func:`check_output` compares a secure result with the plaintext integer reference of the program that ran
(:func:`~aiompc.nn.interpret.run_int`): any difference is an error in exact mode; in approximate mode the
deviation is reported (:func:`describe_check`).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Literal, Mapping

import numpy as np

from aiompc.crypto.he import CHEETAH_PLAIN_BITS
from aiompc.errors import HandshakeError, InputError, ProtocolError
from aiompc.nn.interpret import run_int
from aiompc.nn.ir import QGraph
from aiompc.protocols.linear import PLANNERS, Planner

__all__ = ["Mode", "MODES", "GraphKind", "RingPolicy", "Output", "EngineConfig", "mode_named", "engine_config",
           "mode_options", "check_output", "describe_check", "CHEETAH_RING", "StatScope", "STAT_SCOPES"]

GraphKind = Literal["fixed-point", "quantized"]
StatScope = Literal["inference", "ciphertext"]
STAT_SCOPES: tuple[StatScope, ...] = ("inference", "ciphertext")
RingPolicy = Literal["cheetah", "tight"]
Output = Literal["logits", "argmax"]

CHEETAH_RING = CHEETAH_PLAIN_BITS
"""Cheetah's ring width for every share (fixed point with 12 fractional bits)."""


@dataclass(frozen=True)
class Mode:
    """One protocol mode (see the module docstring); make it with :func:`mode_named`."""

    name: str
    program: GraphKind
    rings: RingPolicy
    planner: Planner
    exact: bool
    summary: str
    stat_scope: StatScope = "ciphertext"
    """What the flooding's 40-bit statistical security covers (module docstring)."""

    def __post_init__(self) -> None:
        if self.stat_scope not in STAT_SCOPES:
            raise InputError(f"stat_scope must be one of {', '.join(STAT_SCOPES)}, got {self.stat_scope!r}")

    def with_stat_scope(self, scope: StatScope | None) -> Mode:
        """This mode with the flooding's security stated per ``inference`` or per ``ciphertext``; ``None``
        keeps the mode's default."""
        return self if scope is None or scope == self.stat_scope else replace(self, stat_scope=scope)

    def with_exact(self, exact: bool | None) -> Mode:
        """This mode with exact (``True``) or approximate (``False``) rescaling; ``None`` keeps the default."""
        return self if exact is None or exact == self.exact else replace(self, exact=bool(exact))

    def describe(self) -> str:
        """``quantized (quantized program, exact requantization)`` and the like, for people."""
        rescaling = "truncation" if self.program == "fixed-point" else "requantization"
        rings = f", {CHEETAH_RING}-bit rings" if self.rings == "cheetah" and self.program == "quantized" else ""
        return f"{self.name} ({self.program} program{rings}, {'exact' if self.exact else 'approximate'} {rescaling})"


MODES: dict[str, Mode] = {
    "cheetah": Mode("cheetah", "fixed-point", "cheetah", PLANNERS["cheetah-baseline"], exact=False,
                    summary="Cheetah's own protocol: 37-bit fixed point, its HE parameters and tiling"),
    "quantized": Mode("quantized", "quantized", "tight", PLANNERS["quantized"], exact=True,
                      summary="the low-precision program with messages sized for its real bit widths",
                      stat_scope="inference"),
    "cheetah-int": Mode("cheetah-int", "quantized", "cheetah", PLANNERS["cheetah-baseline"], exact=True,
                        summary="the quantized program on Cheetah's 37-bit rings and parameters"),
}
"""Every mode, the fixed-point baseline first.  Cheetah truncates approximately by default (one LSB at
``2^-12`` is harmless); the quantized program requantizes exactly (one LSB at 4 bits is not).  The quantized
default (and so the demo's) is exact on the evidence of ``aiompc eval`` on the shipped trained models
(BENCHMARKS.md, "accuracy per mode"): even the unbiased approximate requantization costs the best model, the
QAT ResNet, 0.89 points (99.11% → 98.22%) for 12–15% fewer bytes; ``--approx`` stays one flag away.
The quantized mode's flooding gives 40 bits per inference; Cheetah's parameters (``q ~ 2^109`` at ``N = 4096``,
``l = 37``) hold only 40 bits per result ciphertext, so the two Cheetah modes state that (SECURITY.md)."""


def mode_named(name: str | Mode, *, exact: bool | None = None, stat_scope: StatScope | None = None) -> Mode:
    """The mode called ``name`` (a :class:`Mode` is taken as it is), with ``exact`` and ``stat_scope`` if
    given; :class:`InputError` naming the known modes otherwise."""
    if isinstance(name, Mode):
        return name.with_exact(exact).with_stat_scope(stat_scope)
    if name not in MODES:
        raise InputError(f"unknown mode {name!r}; choose from {', '.join(MODES)}")
    return MODES[name].with_exact(exact).with_stat_scope(stat_scope)


@dataclass(frozen=True)
class EngineConfig:
    """What both parties of a session agree on in the handshake: the :class:`Mode` and what the client
    learns (``output``: the logits, or only the top class)."""

    mode: Mode = MODES["quantized"]
    output: Output = "logits"

    def __post_init__(self) -> None:
        if not isinstance(self.mode, Mode):
            raise InputError(f"mode must be a Mode (aiompc.nn.modes.mode_named), got {self.mode!r}")
        if self.output not in ("logits", "argmax"):
            raise InputError(f"output must be 'logits' or 'argmax', got {self.output!r}")

    @property
    def exact(self) -> bool:
        return self.mode.exact

    def to_options(self) -> dict[str, Any]:
        """The handshake options that carry this configuration."""
        return {"mode": self.mode.name, "exact": self.mode.exact, "output": self.output, "stat": self.mode.stat_scope}

    @classmethod
    def from_options(cls, options: Mapping[str, Any]) -> EngineConfig:
        """The configuration the handshake agreed on; :class:`HandshakeError` if it names no known mode."""
        name, exact, output = options.get("mode", "quantized"), options.get("exact"), options.get("output", "logits")
        scope = options.get("stat")
        if not isinstance(name, str) or name not in MODES:
            raise HandshakeError(f"the session's mode {name!r} is not one of {', '.join(MODES)}; upgrade the older side")
        if exact is not None and not isinstance(exact, bool):
            raise HandshakeError(f"the session's 'exact' option must be true or false, got {exact!r}")
        if output not in ("logits", "argmax"):
            raise HandshakeError(f"the session's output must be 'logits' or 'argmax', got {output!r}")
        if scope is not None and scope not in STAT_SCOPES:
            raise HandshakeError(f"the session's 'stat' option must be one of {', '.join(STAT_SCOPES)}, got {scope!r}")
        return cls(mode_named(name, exact=exact, stat_scope=scope), output)


def engine_config(mode: str | Mode, *, exact: bool | None = None, output: Output = "logits",
                  stat_scope: StatScope | None = None) -> EngineConfig:
    """The session configuration of ``mode`` (by name or value) with ``exact`` and ``stat_scope`` (``None``:
    the mode's default)."""
    return EngineConfig(mode_named(mode, exact=exact, stat_scope=stat_scope), output)


def mode_options(mode: str | Mode) -> dict[str, Any]:
    """The handshake options by which a client insists on ``mode`` (a server running another mode refuses the
    session with a :class:`~aiompc.errors.HandshakeError`)."""
    return {"mode": mode_named(mode).name}


def check_output(graph: QGraph, x_int: np.ndarray, secure: np.ndarray, config: EngineConfig, *,
                 reference: np.ndarray | None = None) -> dict[str, Any]:
    """How the secure logits ``secure`` compare with the plaintext integer reference ``run_int(graph, x_int)``
    (pass it as ``reference`` if already computed).

    Returns ``{"max_abs_diff_lsb": max |secure − reference|, "max_abs_logit_lsb": max |reference|,
    "argmax_agree": fraction of samples with the same top class}`` (in output LSBs); raises
    :class:`ProtocolError` if exact mode disagrees at all (approximate requantization may move every
    value by one LSB, and deep networks compound that, so there the deviation is only recorded).  With
    ``config.output == "argmax"`` the secure result is class indices: only their agreement is checked
    (an error in exact mode too)."""
    reference = run_int(graph, x_int) if reference is None else np.asarray(reference)
    n = len(reference)
    top = int(np.max(np.abs(reference), initial=0))
    ref_class = np.argmax(reference.reshape(n, -1), axis=1) if n else np.zeros(0, np.int64)
    if secure.size == 0:
        return {"max_abs_diff_lsb": 0, "max_abs_logit_lsb": top, "argmax_agree": 1.0}
    if config.output != "logits":
        agree = float(np.mean(secure.reshape(n) == ref_class))
        if config.exact and agree < 1:
            raise ProtocolError(f"secure classes differ from the integer reference on {1 - agree:.0%} of the "
                                "samples in exact mode")
        return {"max_abs_diff_lsb": 0, "max_abs_logit_lsb": top, "argmax_agree": agree}
    diff = int(np.max(np.abs(secure.astype(np.int64) - reference)))
    if config.exact and diff:
        raise ProtocolError(f"secure output differs from the integer reference by {diff} LSB in exact mode")
    agree = float(np.mean(np.argmax(secure.reshape(n, -1), axis=1) == ref_class))
    return {"max_abs_diff_lsb": diff, "max_abs_logit_lsb": top, "argmax_agree": agree}


def describe_check(check: dict[str, Any]) -> str:
    """``equal`` or the largest deviation relative to the largest logit, and the top-1 agreement."""
    diff, top, agree = check.get("max_abs_diff_lsb"), check.get("max_abs_logit_lsb"), check.get("argmax_agree")
    if diff == 0 and agree in (None, 1.0):
        return "equal"
    if diff == 0:
        return f"top-1 {100 * agree:.0f}%"
    if diff is None or not top or agree is None:
        return "–" if diff is None else f"±{diff} LSB"
    return f"±{100 * diff / top:.3g}%, top-1 {100 * agree:.0f}%"
