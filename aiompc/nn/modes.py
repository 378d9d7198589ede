"""The model modes: which integer program of a float model runs, and with which engine settings.

One list for ``aiompc bench`` and the model commands (``run``, ``serve``, ``infer``, ``demo``):

* ``cheetah`` — the baseline as Cheetah runs it: the float model in 37-bit fixed point with 12
  fractional bits (:func:`aiompc.nn.fixed_point.fixed_point`), engine mode ``cheetah`` (37-bit rings,
  Cheetah's HE parameters and tiling).  Truncation is Cheetah's approximate one by default (one LSB
  low at ``2^-12``), exact on request.
* ``quantized`` — the low-precision graph (:func:`aiompc.nn.quantize.quantize`) with the quantized
  protocols; requantization exact by default, one LSB off on request.
* ``cheetah-int`` — the quantized graph on 37-bit rings with Cheetah's HE parameters (the
  pre-fixed-point baseline, kept for comparison); requantization as ``quantized``.

A mode is therefore a pair: the integer program (:data:`GRAPH_OF_MODE`: ``fixed-point`` or
``quantized``) and the :class:`~aiompc.nn.secure.EngineConfig` (:func:`engine_config`).  A server
announces both in its handshake options (:func:`mode_options`: the engine's ``mode`` and ``graph``), so
a client pinning a mode that differs from the server's gets a :class:`~aiompc.errors.HandshakeError`.

:func:`check_output` compares a secure result with the plaintext integer reference of the graph that
ran (:func:`~aiompc.nn.interpret.run_int`): any difference is an error in exact mode; in approximate
mode the deviation is reported (:func:`describe_check`).
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np

from aiompc.errors import InputError, ProtocolError
from aiompc.nn.interpret import run_int
from aiompc.nn.ir import QGraph
from aiompc.nn.secure import EngineConfig

__all__ = ["MODES", "GraphKind", "GRAPH_OF_MODE", "check_mode", "default_exact", "engine_config", "mode_options",
           "default_graph", "check_output", "describe_check"]

MODES = ("cheetah", "quantized", "cheetah-int")
"""Every mode, the fixed-point baseline first."""

GraphKind = Literal["fixed-point", "quantized"]

GRAPH_OF_MODE: dict[str, GraphKind] = {"cheetah": "fixed-point", "quantized": "quantized",
                                       "cheetah-int": "quantized"}
"""The integer program each mode runs."""

_ENGINE_MODE = {"cheetah": "cheetah", "quantized": "quantized", "cheetah-int": "cheetah"}


def check_mode(mode: str) -> str:
    """``mode`` if it is one of :data:`MODES`; else :class:`InputError`."""
    if mode not in GRAPH_OF_MODE:
        raise InputError(f"unknown mode {mode!r}; choose from {', '.join(MODES)}")
    return mode


def default_exact(mode: str) -> bool:
    """Whether ``mode`` rescales exactly by default: Cheetah truncates approximately (one LSB at
    ``2^-12`` is harmless); the quantized graph requantizes exactly (one LSB at 4 bits is not)."""
    return check_mode(mode) != "cheetah"


def engine_config(mode: str, *, exact: bool | None = None, output: Literal["logits", "argmax"] = "logits",
                  ) -> EngineConfig:
    """The engine settings of ``mode``: the engine mode it runs on, exact rescaling iff ``exact``
    (``None``: :func:`default_exact`), and what the client learns (``output``)."""
    exact = default_exact(mode) if exact is None else exact
    return EngineConfig(mode=_ENGINE_MODE[check_mode(mode)], exact=exact, output=output)  # type: ignore[arg-type]


def mode_options(mode: str) -> dict[str, Any]:
    """The handshake options that identify ``mode``: ``{"mode": engine mode, "graph": program}``.

    A server sends them (with the rest of its :class:`EngineConfig`); a client may pass them to
    :func:`aiompc.infer` to insist on a mode (a mismatch is a :class:`~aiompc.errors.HandshakeError`)."""
    return {"mode": _ENGINE_MODE[check_mode(mode)], "graph": GRAPH_OF_MODE[mode]}


def default_graph(config: EngineConfig) -> GraphKind:
    """The program an engine mode runs unless told otherwise: ``cheetah`` the fixed-point one."""
    return "fixed-point" if config.mode == "cheetah" else "quantized"


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
