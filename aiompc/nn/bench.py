"""``aiompc bench``: one network under several protocol settings in one run, over real sockets.

Modes.  Both integer programs come from the same float model (a built-in network or an ONNX file):

* ``cheetah`` — the baseline as Cheetah runs it: the float model in 37-bit fixed point with 12
  fractional bits (:func:`aiompc.nn.fixed_point.fixed_point`: ReLU, then truncation by 12 bits with the
  MSB known, no clip), Cheetah's HE parameters and tiling (engine mode ``cheetah``).  Its truncation is
  Cheetah's approximate one (``--baseline-truncation approx``, the default) or exact (``exact``).
* ``quantized`` — the low-precision graph (:func:`aiompc.nn.quantize.quantize`, :data:`BENCH_CONFIG`
  for a built-in network) with the quantized protocols; requantization exact (``--exact``, the
  default) or one LSB off (``--approx``).
* ``cheetah-int`` — the quantized graph evaluated on 37-bit rings with Cheetah's HE parameters (its
  requantizations pay for 37-bit wraps and clips; the pre-fixed-point baseline, kept for comparison;
  requantization as ``--exact/--approx``).

``--relu-budget N`` runs a ReLU-reduced version of the network (SNL / SENet): every ReLU becomes a partial
ReLU and exactly ``N`` of them are kept per inference, spread over the layers in proportion to their sizes
with a fixed-seed random mask (:func:`aiompc.nn.relu_budget.apply_relu_budget`); the model is reported as
``NAME:reluN``.  Every layer that evaluates ReLUs reports ``relus_kept`` / ``relus`` (per inference), the
total their sums, ``relu_budget`` the budget (``null`` for the dense network).

The headline pairs each system in its accurate configuration: Cheetah's approximate truncation (one
LSB at 2^-12 is harmless) against exact requantization (one LSB at 4 bits is not).  Every row says
which it used (``exact``; the ratio rows carry both).

For every combination of mode, OT engine and link (``none``, ``lan`` = 3 Gbit/s and 0.3 ms RTT, ``wan`` =
400 Mbit/s and 40 ms RTT, see :mod:`aiompc.transports.shaped`) the server party runs in its own process, as on
two machines (``--processes 2``, the default: :mod:`aiompc.nn.two_process`; ``--processes 1`` runs both here),
connected by a loopback TCP connection whose two ends are wrapped by the shaped transport.  Each run
gives one JSON object (the layout of :mod:`aiompc.nn.report`, all bytes from the client's channel
statistics)::

    {"model", "mode", "network",
     "layers": [{"name", "op", "bytes_c2s", "bytes_s2c", "rounds", "seconds", "ring", "samples", "elements"
                 [, "relus_kept", "relus"]}],
     "total": {"bytes_c2s", "bytes_s2c", "linear_bytes", "nonlinear_bytes", "offline_bytes", "key_bytes", "rounds", "seconds",
               "processes", "cpu_server", "cpu_client" (two processes) or "cpu_both" (one), "relus_kept", "relus"},
     "categories": {"matmul" | "softmax" | "gelu" | "layernorm" | "rescale" | "other": {"bytes", "rounds", "seconds",
                    "layers"}, "offline_ot": {"bytes"}, "setup": {"bytes"}},
     "graph", "planner", "ot", "exact", "stat_scope", "samples", "check", "machine", "code", "relu_budget", "seq",
     "prepare": {"server", "client"} (two processes) or {"both"} (one), "peak_rss": {"server", "client"} (two)}

``categories`` sums the layer rows by what they compute (:mod:`aiompc.nn.cost_categories`, one explicit table
from IR op to category; the bytes of all categories add up to the total): the transformer split of matmul /
softmax / GELU / LayerNorm bytes.  ``seq``: a built-in transformer's sequence length (``--seq``; the model is
named ``NAME:seqS``), ``null`` for other models.

**Once per model, not per inference.**  Before the session the server prepares the model — every HE layer's
plan and weight plaintexts (:func:`aiompc.nn.prepare.prepare_model`, up to
:data:`~aiompc.nn.prepare.WEIGHT_MEMORY` bytes of them kept; a deployed server does this once and serves
every client from it, see :func:`aiompc.nn.service.serve`) — and the client plans its layers.  ``prepare``
reports that one-time work (wall and CPU seconds, layers kept, bytes held, layers left to be prepared per
inference); the session's ``seconds`` and CPU figures do not include it.  ``peak_rss``: each process's peak
resident memory in bytes (the client's: of the benchmark process so far).

A layer row also has its ring width, the number of samples summed and ``elements``, the number of values
the layer outputs (all samples).  The trailing keys say how the row was obtained: the integer program
(``graph``: ``fixed-point`` or ``quantized``), the linear-layer planner of the mode, the OT engine
(``iknp`` or ``silent``), whether requantization/truncation was bit-exact, what the 40-bit flooding covers
(``stat_scope``: ``inference`` or ``ciphertext``, ``--stat-scope``), the number of inferences, the
machine (:func:`machine_info`), the code (:func:`code_version`: the git commit, ``-dirty`` if the
checkout had uncommitted changes), and ``check``: how the secure logits compare with the plaintext
integer reference of the row's own graph (:func:`~aiompc.nn.interpret.run_int`; largest absolute
difference and largest logit, in output LSBs, and the fraction of samples with the same top class).
In exact mode any difference is an error, so a row in a table is also a correctness test; approximate
requantization moves values by one LSB per layer, which deep 4-bit networks compound (and 12-bit fixed
point shrugs off), so there the deviation is recorded for the reader.

:func:`bench_markdown` turns runs into tables (a summary, the cheetah/quantized ratios, one per-layer
table per run), :func:`bench_plot` into a PNG (bytes per layer for the modes side by side, and the
totals split linear/non-linear with the ratio).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

import aiompc
from aiompc.errors import InputError
from aiompc.nn.fixed_point import CHEETAH_FRAC_BITS, fixed_point
from aiompc.nn.graph import FloatGraph
from aiompc.nn.ir import QGraph
from aiompc.nn.loopback import LINKS, LoopbackRun, link_wrapper, run_two_parties
from aiompc.nn.two_process import run_two_processes
from aiompc.nn.modes import MODES, STAT_SCOPES, EngineConfig, StatScope, check_output, describe_check, mode_named
from aiompc.nn.npy_files import load_npy
from aiompc.nn.prepare import WEIGHT_MEMORY
from aiompc.nn.cost_categories import category_rows, category_split, is_transformer_run
from aiompc.nn.networks import (BENCH_CONFIG, CALIBRATION_SAMPLES, DEFAULT_SEQ, NETWORKS, network_inputs, network_onnx,
                                network_spec)
from aiompc.nn.onnx_import import load_onnx
from aiompc.nn.quantize import QuantConfig, quantize
from aiompc.nn.relu_budget import apply_relu_budget
from aiompc.nn.report import format_table, layer_report
from aiompc.protocols.ot import engines as ot_engine

__all__ = ["LINKS", "MODES", "DEFAULT_MODES", "BenchModel", "engine_config", "code_version", "machine_info",
           "load_bench_model", "bench_run", "run_bench", "bench_ratios", "bench_markdown", "bench_plot",
           "add_bench_command", "cmd_bench"]

DEFAULT_MODES = ("cheetah", "quantized")
_MIB = float(1 << 20)


# --------------------------------------------------------------------------- the machine


def code_version() -> str | None:
    """``git describe --always`` of the aiompc checkout, ``-dirty`` when tracked files differ from it — except
    the benchmark results and BENCHMARKS.md, which the benchmarks themselves write (``None`` outside a git
    checkout)."""
    import subprocess

    here = Path(__file__).resolve().parent
    try:
        out = subprocess.run(["git", "describe", "--always"], cwd=here, capture_output=True, text=True,
                             timeout=10, check=False)
        if out.returncode != 0 or not out.stdout.strip():
            return None
        diff = subprocess.run(["git", "diff", "--quiet", "HEAD", "--", ":(top)",
                               ":(top,exclude)benchmarks/results", ":(top,exclude)BENCHMARKS.md"],
                              cwd=here, capture_output=True, timeout=10, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() + ("-dirty" if diff.returncode != 0 else "")


def machine_info() -> dict[str, Any]:
    """Where a run happened: logical CPUs, CPU model, memory (GiB), Python and numpy versions."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), cpu)
    except OSError:
        pass
    try:
        memory = round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / (1 << 30), 1)
    except (ValueError, OSError, AttributeError):
        memory = None
    return {"cpus": os.cpu_count(), "cpu": cpu, "memory_gib": memory, "python": platform.python_version(),
            "numpy": np.__version__}


# --------------------------------------------------------------------------- the model


@dataclass
class BenchModel:
    """One float model, the benchmark's float inputs, and the integer graphs the modes run.

    ``float_graph`` is the model; :meth:`graph` builds (once) the quantized graph (``quantizer`` maps the
    float graph to it) or the fixed-point graph (:func:`~aiompc.nn.fixed_point.fixed_point`, 12
    fractional bits), both from ``float_graph``.  ``inputs``: float ``(samples, *input_shape)``."""

    name: str
    float_graph: FloatGraph
    inputs: np.ndarray
    quantizer: Callable[[FloatGraph], QGraph]
    relu_budget: int | None = None
    seq: int | None = None
    _graphs: dict[str, QGraph] = field(default_factory=dict, repr=False)

    def graph(self, mode: str) -> QGraph:
        """The integer graph bench mode ``mode`` runs (its :attr:`~aiompc.nn.modes.Mode.program`)."""
        kind = mode_named(mode).program
        if kind not in self._graphs:
            self._graphs[kind] = fixed_point(self.float_graph) if kind == "fixed-point" else \
                self.quantizer(self.float_graph)
        return self._graphs[kind]


def load_bench_model(source: str, *, samples: int = 1, seed: int = 0, calibration: np.ndarray | None = None,
                     config: QuantConfig = BENCH_CONFIG, relu_budget: int | None = None,
                     seq: int | None = None) -> BenchModel:
    """The :class:`BenchModel` of a built-in network name or an ONNX file.

    A built-in network is :func:`aiompc.nn.networks.network_onnx` (random weights from ``seed``),
    quantized as :func:`aiompc.nn.networks.network` does (``config`` on
    :data:`~aiompc.nn.networks.CALIBRATION_SAMPLES` random inputs, seed ``seed + 1000``); an ONNX file is
    imported and quantized with ``config`` (QDQ annotations take precedence) on ``calibration`` or, by
    default, on 4 random normal inputs.  The benchmark inputs are random normal (``seed + 1``): costs do
    not depend on the values.  ``relu_budget``: keep exactly that many ReLUs per inference
    (:func:`~aiompc.nn.relu_budget.apply_relu_budget`, mask seed ``seed``; calibration runs on the
    ReLU-reduced model).  ``seq``: a built-in transformer's sequence length (default
    :data:`~aiompc.nn.networks.DEFAULT_SEQ`; the model is named ``NAME:seqS``); an error for other models."""
    if samples < 1:
        raise InputError("--samples must be at least 1")
    if source.lower() in NETWORKS:
        spec = network_spec(source)
        name = spec.label(seq)
        seq = spec.shape(seq)[0] if spec.sequence else None
        fgraph = load_onnx(network_onnx(spec.name, seed, seq=seq))
        if calibration is None:
            calibration = network_inputs(spec.name, CALIBRATION_SAMPLES, seed + 1000, seq=seq)
        inputs = network_inputs(spec.name, samples, seed + 1, seq=seq)
    else:
        if seq is not None:
            raise InputError("--seq applies to the built-in transformer networks; an ONNX file brings its own shape")
        path = Path(source)
        if not path.is_file():
            raise InputError(f"{source!r} is neither a built-in network ({', '.join(NETWORKS)}) nor an ONNX file")
        name, fgraph = path.stem, load_onnx(path)
        if calibration is None:
            calibration = np.random.default_rng(seed).normal(0.0, 1.0, (4, *fgraph.input_shape))
            print(f"NOTE: {path.name}: no --calibration given; activation scales are calibrated on 4 random normal "
                  "inputs (costs are unaffected, accuracy may be)", file=sys.stderr, flush=True)
        inputs = np.random.default_rng(seed + 1).normal(0.0, 1.0, (samples, *fgraph.input_shape))
    if relu_budget is not None:
        fgraph = apply_relu_budget(fgraph, relu_budget, seed=seed)
        name = f"{name}:relu{relu_budget}"
    data = calibration
    return BenchModel(name, fgraph, inputs, lambda g: quantize(g, data, config), relu_budget, seq)


def engine_config(mode: str, *, exact: bool = True, baseline_exact: bool = False,
                  stat_scope: StatScope | None = None) -> EngineConfig:
    """The engine settings of bench mode ``mode``: ``cheetah`` (the fixed-point graph) truncates exactly
    iff ``baseline_exact``; ``quantized`` and ``cheetah-int`` requantize exactly iff ``exact``
    (:func:`aiompc.nn.modes.engine_config`); the flooding's 40 bits cover ``stat_scope`` (``None``: the
    mode's own — per inference for ``quantized``, per result ciphertext for the Cheetah modes)."""
    return EngineConfig(mode_named(mode, exact=baseline_exact if mode == "cheetah" else exact, stat_scope=stat_scope))


# --------------------------------------------------------------------------- one run


async def bench_run(
    model: str, graph: QGraph, x_int: np.ndarray, config: EngineConfig, *, mode: str | None = None,
    link: str = "none", ot: str | None = None, progress: bool | None = None,
) -> dict[str, Any]:
    """One (mode, OT engine, link) run of ``graph`` on its integer batch ``x_int``, both parties in this
    process (:func:`~aiompc.nn.loopback.run_two_parties`); returns its JSON object (:func:`_row`).

    ``mode`` is the bench mode the row reports (default ``config.mode.name``; ``cheetah`` rows run the
    fixed-point graph, see the module docstring).  Server and client run here over loopback TCP, both
    ends wrapped by ``shape(·, link)``.  In exact mode raises :class:`ProtocolError` if the secure output
    differs from :func:`run_int` of ``graph`` at all; in approximate mode the difference is only
    recorded (``check``)."""
    ot = _check_ot(ot)
    cpu = time.process_time()
    run = await run_two_parties(graph, x_int, config, options={"ot": ot}, transport_wrapper=link_wrapper(link),
                                progress=progress, progress_label=f"{mode or config.mode.name}/{link}", prepare=True)
    cpu = time.process_time() - cpu - (run.prepare or {}).get("cpu", 0.0)
    row = _row(model, graph, x_int, config, run, mode=mode, link=link, cpu={"processes": 1, "cpu_both": round(cpu, 3)})
    row["prepare"] = {"both": run.prepare}
    return row


def bench_run_two_processes(
    model: str, graph: QGraph, x_int: np.ndarray, config: EngineConfig, *, mode: str | None = None,
    link: str = "none", ot: str | None = None, weight_memory: int = WEIGHT_MEMORY,
) -> dict[str, Any]:
    """As :func:`bench_run`, with the server party in its own process, as on two machines
    (:func:`~aiompc.nn.two_process.run_two_processes`); the row adds each party's CPU seconds."""
    ot = _check_ot(ot)
    two = run_two_processes(graph, x_int, config, options={"ot": ot}, link=link,  # type: ignore[arg-type]
                            weight_memory=weight_memory)
    row = _row(model, graph, x_int, config, two.run, mode=mode, link=link,
               cpu={"processes": 2, "cpu_server": round(two.cpu_server, 3), "cpu_client": round(two.cpu_client, 3)})
    row["prepare"] = {"server": two.prepare_server, "client": two.prepare_client}
    row["peak_rss"] = {"server": two.rss_server, "client": two.rss_client}
    return row


def _check_ot(ot: str | None) -> str:
    ot = ot or ot_engine.DEFAULT_ENGINE
    if ot not in ot_engine.engine_kinds():
        raise InputError(f"unknown OT engine {ot!r}; choose from {', '.join(ot_engine.engine_kinds())}")
    return ot


def _row(model: str, graph: QGraph, x_int: np.ndarray, config: EngineConfig, run: LoopbackRun, *,
         mode: str | None, link: str, cpu: dict[str, Any]) -> dict[str, Any]:
    """The JSON object of one run (the module docstring's layout), checked against the integer reference."""
    result, stats, seconds, engine = run.result, run.stats, run.seconds, run.options["ot"]
    report = layer_report(graph, result.layers, stats, seconds)
    sizes = {node.name: graph.tensors[node.output].size for node in graph.nodes}
    for row in report["layers"]:  # values each layer outputs (bits per element = 8 * bytes / elements)
        row["elements"] = sizes.get(row["name"], graph.tensors[graph.output].size) * len(x_int)
    check = check_output(graph, x_int, np.asarray(result.output), config)
    report["total"].update(cpu)
    report["total"]["relus_kept"] = sum(row.get("relus_kept", 0) for row in report["layers"])
    report["total"]["relus"] = sum(row.get("relus", 0) for row in report["layers"])
    report["categories"] = category_split(report)
    return {"model": model, "mode": mode or config.mode.name, "network": link, **report,
            "graph": config.mode.program, "planner": config.mode.planner.name, "ot": engine,
            "exact": config.exact, "stat_scope": config.mode.stat_scope, "samples": len(x_int), "check": check,
            "machine": machine_info(),
            "load": _load_average(), "code": code_version()}


def _load_average() -> list[float] | None:
    """The machine's 1/5/15-minute load averages when the run ended (a shared machine's seconds are only as
    good as this), or ``None`` where the platform has none."""
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except (OSError, AttributeError):
        return None


def run_bench(
    model: BenchModel, *, modes: Sequence[str] = DEFAULT_MODES, links: Sequence[str] = ("none",),
    ots: Sequence[str | None] = (None,), exact: bool = True, baseline_exact: bool = False,
    progress: bool | None = None, log: Any = None, processes: int = 1, weight_memory: int = WEIGHT_MEMORY,
    stat_scope: StatScope | None = None,
) -> list[dict[str, Any]]:
    """Every (link, OT engine, mode) combination of :func:`bench_run` (``processes=1``: both parties in this
    process) or :func:`bench_run_two_processes` (``processes=2``: as on two machines) on ``model``'s inputs,
    in this order (so the modes of one setting run back to back); one summary line per run on ``log``.  Each mode runs
    its own graph (:meth:`BenchModel.graph`) with :func:`engine_config` (``exact`` for the quantized
    graph, ``baseline_exact`` for the fixed-point one).  An OT engine of ``None`` is the library
    default (:data:`aiompc.protocols.ot.engines.DEFAULT_ENGINE`).  ``stat_scope``: what every mode's 40-bit
    flooding covers (``None``: each mode's own; ``ciphertext`` runs the quantized mode at the baseline's
    per-ciphertext level, for an equal-security ratio)."""
    if processes not in (1, 2):
        raise InputError(f"--processes must be 1 or 2, got {processes}")
    for link in links:
        link_wrapper(link)
    configs = {mode: engine_config(mode, exact=exact, baseline_exact=baseline_exact, stat_scope=stat_scope)
               for mode in modes}
    x = np.asarray(model.inputs, dtype=np.float64)
    x_int = {mode: model.graph(mode).quantize_input(x) for mode in modes}
    results = []
    for link in links:
        for ot in ots:
            for mode in modes:
                if processes == 2:
                    res = bench_run_two_processes(model.name, model.graph(mode), x_int[mode], configs[mode],
                                                  mode=mode, link=link, ot=ot, weight_memory=weight_memory)
                else:
                    res = aiompc.run(bench_run(model.name, model.graph(mode), x_int[mode], configs[mode],
                                               mode=mode, link=link, ot=ot, progress=progress))
                res["relu_budget"] = model.relu_budget
                res["seq"] = model.seq
                results.append(res)
                if log is not None:
                    t = res["total"]
                    print(f"{model.name} {mode:<11} {link:<4} ot={res['ot']:<6} planner={res['planner']} "
                          f"{_requant(res['exact'])}: "
                          f"{(t['bytes_c2s'] + t['bytes_s2c']) / _MIB:9.2f} MiB "
                          f"(linear {t['linear_bytes'] / _MIB:.2f}, non-linear {t['nonlinear_bytes'] / _MIB:.2f}, "
                          f"HE keys {t.get('key_bytes', 0) / _MIB:.2f} once per session), "
                          f"{t['seconds']:.2f} s wall, {_cpu(t)}; once per model: {_prepare_cell(res)}; "
                          f"peak RSS server / client {_rss_cell(res)} MiB", file=log, flush=True)
                    if is_transformer_run(res):
                        print("  by category (MiB): " + ", ".join(
                            f"{k} {v['bytes'] / _MIB:.2f}" for k, v in res["categories"].items()), file=log, flush=True)
    return results


# --------------------------------------------------------------------------- tables


def _cpu(total: dict[str, Any]) -> str:
    """CPU seconds of a run: each party's (two processes) or both together (one process)."""
    if "cpu_server" in total:
        return f"CPU server {total['cpu_server']:.2f} s + client {total['cpu_client']:.2f} s"
    return f"CPU {total['cpu_both']:.2f} s (both parties, one process)" if "cpu_both" in total else "CPU –"


def _cpu_cell(total: dict[str, Any]) -> str:
    """``server + client`` CPU seconds (two processes), ``both`` (one process), ``–`` (older results)."""
    if "cpu_server" in total:
        return f"{total['cpu_server']:.2f} + {total['cpu_client']:.2f}"
    return f"{total['cpu_both']:.2f} (1 process)" if "cpu_both" in total else "–"


def _prepare_cell(run: dict[str, Any]) -> str:
    """The one-time model preparation before the session: ``wall s (CPU s)`` of the server (or of both parties
    in one process), the weight plaintexts kept (MiB) and ``+k`` layers prepared per inference; ``–`` if none."""
    prep = run.get("prepare") or {}
    p = prep.get("server") or prep.get("both")
    if not p:
        return "–"
    extra = f", {p['per_inference']} per inference" if p.get("per_inference") else ""
    return f"{p['seconds']:.1f} ({p['cpu']:.1f} CPU), {p['bytes'] / _MIB:.0f} MiB kept{extra}"


def _rss_cell(run: dict[str, Any]) -> str:
    rss = run.get("peak_rss") or {}
    return f"{rss['server'] / _MIB:.0f} / {rss['client'] / _MIB:.0f}" if rss else "–"


def _total_bytes(run: dict[str, Any]) -> int:
    return int(run["total"]["bytes_c2s"] + run["total"]["bytes_s2c"])


def _setup_bytes(run: dict[str, Any]) -> int:
    """What is neither a linear nor a non-linear layer: the handshake, the HE key material (once per
    session and HE parameter set), the request and the output reveal."""
    t = run["total"]
    return max(0, _total_bytes(run) - t["linear_bytes"] - t["nonlinear_bytes"])


def _key_cells(run: dict[str, Any]) -> str:
    """``keys | after setup``: the HE key bytes (once per session and key set) and the total without them (what
    each further inference of a session costs), MiB; ``–`` for runs recorded before keys were counted."""
    keys = run["total"].get("key_bytes")
    if keys is None:
        return "– | –"
    return f"{keys / _MIB:.2f} | {(_total_bytes(run) - keys) / _MIB:.2f}"


def _ratio(a: float, b: float) -> float | None:
    return round(a / b, 3) if b else None


def bench_ratios(results: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """cheetah ÷ quantized for total, linear and non-linear bytes and for the time (``None`` where the
    quantized figure is 0), for the ``cheetah`` and ``quantized`` rows with the same model, link and OT
    engine.  Each system may use its own requantization setting (the headline: Cheetah's approximate
    truncation against exact requantization), so a ratio row carries both: ``exact`` (the quantized
    row's) and ``baseline_exact`` (the cheetah row's).  One ratio per combination of the two settings:
    rows of the same run first (``_file``, which :mod:`benchmarks.networks` sets when it merges the
    results of several files), then the first rows found."""
    by_key: dict[tuple[str, str, str], dict[str, list[dict[str, Any]]]] = {}
    for r in results:
        by_key.setdefault((r["model"], r["network"], r["ot"]), {}).setdefault(r["mode"], []).append(r)
    out = []
    for (model, link, ot), runs in by_key.items():
        pairs = sorted(((c, q) for c in runs.get("cheetah", []) for q in runs.get("quantized", [])),
                       key=lambda cq: cq[0].get("_file") != cq[1].get("_file"))  # stable: same run first
        seen: set[tuple[bool, bool]] = set()
        for c, q in pairs:
            settings = (bool(c.get("exact", True)), bool(q.get("exact", True)))
            if settings in seen:
                continue
            seen.add(settings)
            out.append({
                "model": model, "network": link, "ot": ot, "exact": settings[1], "baseline_exact": settings[0],
                "total": _ratio(_total_bytes(c), _total_bytes(q)),
                "linear": _ratio(c["total"]["linear_bytes"], q["total"]["linear_bytes"]),
                "nonlinear": _ratio(c["total"]["nonlinear_bytes"], q["total"]["nonlinear_bytes"]),
                "seconds": _ratio(c["total"]["seconds"], q["total"]["seconds"]),
            })
    return out


def _requant(exact: bool | None) -> str:
    return "exact" if exact or exact is None else "approx"


def _rescaling(run: dict[str, Any]) -> str:
    """``exact truncation`` / ``approx requantization`` …: what the row's non-linear rescaling was."""
    what = "truncation" if run.get("graph") == "fixed-point" else "requantization"
    return f"{_requant(run.get('exact'))} {what}"


def _fmt_ratio(v: float | None) -> str:
    return "–" if v is None else f"{v:.2f}×"


def _by_op(run: dict[str, Any]) -> dict[str, tuple[int, int, int]]:
    """``op -> (layers, values output, bytes both ways)`` over the layers that communicate."""
    out: dict[str, tuple[int, int, int]] = {}
    for row in run["layers"]:
        nbytes = row["bytes_c2s"] + row["bytes_s2c"]
        if nbytes:
            c, v, b = out.get(row["op"], (0, 0, 0))
            out[row["op"]] = (c + 1, v + int(row.get("elements", 0)), b + nbytes)
    return out


def bench_markdown(results: Sequence[dict[str, Any]], *, per_layer: bool = True, ops: bool = True) -> str:
    """Markdown: the summary table, the cheetah/quantized ratios, the transformer runs' bytes, rounds and
    seconds by category (:mod:`aiompc.nn.cost_categories`), (``ops``) bytes by operator and (``per_layer``)
    one table per run."""
    lines = [
        ("| model | mode | network | planner | OT | requant | MiB c→s | MiB s→c | MiB total | linear MiB "
         "| non-linear MiB | (offline OT) | setup + output MiB | (HE keys) | MiB per inference after setup "
         "| rounds | seconds | CPU s | logits vs reference | once per model: server s | peak RSS MiB server / client |"),
        "|---|---|---|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---|---|---|",
    ]
    for r in results:
        t = r["total"]
        lines.append(
            f"| {r['model']} | {r['mode']} | {r['network']} | {r['planner']} | {r['ot']} | {_requant(r.get('exact'))} "
            f"| {t['bytes_c2s'] / _MIB:.2f} "
            f"| {t['bytes_s2c'] / _MIB:.2f} | {_total_bytes(r) / _MIB:.2f} | {t['linear_bytes'] / _MIB:.2f} "
            f"| {t['nonlinear_bytes'] / _MIB:.2f} | {t['offline_bytes'] / _MIB:.2f} | {_setup_bytes(r) / _MIB:.2f} "
            f"| {_key_cells(r)} | {t['rounds']} | {t['seconds']:.2f} | {_cpu_cell(t)} | {describe_check(r.get('check', {}))} "
            f"| {_prepare_cell(r)} | {_rss_cell(r)} |"
        )
    ratios = bench_ratios(results)
    if ratios:
        lines += ["", ("cheetah ÷ quantized (how many times fewer bytes / less time the quantized mode needs; "
                       "requant: the cheetah row's truncation ÷ the quantized row's requantization):"), "",
                  "| model | network | OT | requant | total bytes | linear bytes | non-linear bytes | time |",
                  "|---|---|---|---|---:|---:|---:|---:|"]
        for q in ratios:
            lines.append(f"| {q['model']} | {q['network']} | {q['ot']} "
                         f"| {_requant(q['baseline_exact'])} ÷ {_requant(q['exact'])} "
                         f"| **{_fmt_ratio(q['total'])}** "
                         f"| {_fmt_ratio(q['linear'])} | {_fmt_ratio(q['nonlinear'])} | {_fmt_ratio(q['seconds'])} |")
    transformers = [r for r in results if is_transformer_run(r)]
    if transformers:
        lines += ["", ("Transformer runs by category (bytes both ways; offline OT and setup (handshake, keys, "
                       "request) complete the total; the output reveal is in other; rounds and seconds summed over "
                       "the category's layers):"), "",
                  *category_rows(transformers)]
    if ops:
        lines += ["", ("Bytes by operator (bits per value = 8 × bytes ÷ values the layers output; the OT engine's "
                       "offline bytes are not in these rows):"), "",
                  "| model | mode | OT | requant | op | layers | values | MiB | bits per value |",
                  "|---|---|---|---|---|---:|---:|---:|---:|"]
        seen = set()
        for r in results:
            key = (r["model"], r["mode"], r["ot"], r.get("exact"))
            if key in seen:  # the bytes do not depend on the link: one table per setting
                continue
            seen.add(key)
            for op, (count, values, nbytes) in _by_op(r).items():
                per_value = f"{8 * nbytes / values:.1f}" if values else "–"
                lines.append(f"| {r['model']} | {r['mode']} | {r['ot']} | {_requant(r.get('exact'))} | {op} | {count} "
                             f"| {values} "
                             f"| {nbytes / _MIB:.2f} | {per_value} |")
    if per_layer:
        for r in results:
            title = (f"#### {r['model']} · {r['mode']} · {r['network']} · OT {r['ot']} · "
                     f"{_rescaling(r)} · planner {r['planner']}")
            lines += ["", title,
                      "", format_table(r)]
    return "\n".join(lines)


# --------------------------------------------------------------------------- plot


def _merged_order(sequences: Sequence[Sequence[str]]) -> list[str]:
    """The names of all ``sequences`` in one list that keeps each sequence's order where they agree: a
    name missing so far goes just before the next name of its own sequence already placed (the modes'
    graphs share their HE layers' names; their non-linear layers differ)."""
    merged: list[str] = []
    for seq in sequences:
        for i, name in enumerate(seq):
            if name in merged:
                continue
            after = next((n for n in seq[i + 1:] if n in merged), None)
            merged.insert(len(merged) if after is None else merged.index(after), name)
    return merged


def _matplotlib() -> Any:
    """``matplotlib.pyplot`` on the Agg backend; :class:`InputError` if matplotlib is not installed."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise InputError("--plot needs matplotlib: pip install 'aiompc[plot]'") from None
    return plt


def bench_plot(results: Sequence[dict[str, Any]], path: str | Path) -> None:
    """A PNG at ``path``: bytes per layer (layers with traffic, in graph order) for the modes side by
    side, and each mode's total split into linear / non-linear / other with the cheetah ÷ quantized ratio.

    Uses the first (link, OT engine) setting present; needs matplotlib (``pip install 'aiompc[plot]'``)."""
    plt = _matplotlib()
    if not results:
        raise InputError("nothing to plot: no benchmark results")
    first = results[0]
    runs = [r for r in results if r["network"] == first["network"] and r["ot"] == first["ot"]]
    modes = [r["mode"] for r in runs]
    names = _merged_order([[row["name"] for row in r["layers"]] for r in runs])
    per_mode = {r["mode"]: {row["name"]: row["bytes_c2s"] + row["bytes_s2c"] for row in r["layers"]} for r in runs}
    names = [n for n in names if any(per_mode[m].get(n, 0) for m in modes)]
    colors = {"cheetah": "#d95f02", "quantized": "#1b9e77", "cheetah-int": "#e6ab02"}

    fig, (ax, axt) = plt.subplots(1, 2, figsize=(max(10.0, 4.0 + 0.12 * len(names) * len(modes)), 5.0),
                                  gridspec_kw={"width_ratios": [4, 1]})
    width = 0.8 / len(modes)
    idx = np.arange(len(names))
    for k, mode in enumerate(modes):
        ax.bar(idx + (k - (len(modes) - 1) / 2) * width, [per_mode[mode].get(n, 0) / _MIB for n in names], width,
               label=mode, color=colors.get(mode))
    ax.set_ylabel("MiB (both directions)")
    ax.set_xticks(idx)
    ax.set_xticklabels(names, rotation=90, fontsize=max(4, min(8, int(600 / max(1, len(names))))))
    ax.set_title(f"{first['model']}: bytes per layer · network {first['network']} · OT {first['ot']}")
    ax.legend()

    lin = np.array([r["total"]["linear_bytes"] for r in runs]) / _MIB
    non = np.array([r["total"]["nonlinear_bytes"] for r in runs]) / _MIB
    other = np.maximum(np.array([_total_bytes(r) for r in runs]) / _MIB - lin - non, 0.0)
    axt.bar(modes, lin, label="linear (HE)", color="#7570b3")
    axt.bar(modes, non, bottom=lin, label="non-linear (OT)", color="#e7298a")
    axt.bar(modes, other, bottom=lin + non, label="setup + output", color="#999999")
    axt.set_ylabel("MiB total")
    axt.set_ylim(0, float(np.max(lin + non + other)) * 1.3)
    ratio = next((q for q in bench_ratios(runs)), None)
    axt.set_title(f"total: {_fmt_ratio(ratio['total'])} fewer bytes" if ratio else "total")
    for i, r in enumerate(runs):
        axt.text(i, (lin[i] + non[i] + other[i]) * 1.01, f"{_total_bytes(r) / _MIB:.1f}", ha="center", va="bottom",
                 fontsize=8)
    axt.legend(fontsize=7, loc="upper right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# --------------------------------------------------------------------------- CLI


def _csv(value: str, allowed: Sequence[str], what: str) -> list[str]:
    items = [v.strip().lower() for v in value.split(",") if v.strip()]
    bad = [v for v in items if v not in allowed]
    if not items or bad:
        raise InputError(f"{what} must be a comma-separated list of {', '.join(allowed)}; got {value!r}")
    return items


def _weight_memory(gib: float) -> int:
    if not gib >= 0:
        raise InputError(f"--weight-memory must be a number of GiB >= 0, got {gib}")
    return int(gib * (1 << 30))


def cmd_bench(args: argparse.Namespace) -> int:
    modes = _csv(args.modes, list(MODES), "--modes")
    weight_memory = _weight_memory(args.weight_memory)
    links = _csv(args.network, LINKS, "--network")
    ots = _csv(args.ot or ot_engine.DEFAULT_ENGINE, ot_engine.engine_kinds(), "--ot")
    if args.plot:
        _matplotlib()  # before the work, not after it
    calibration = load_npy(args.calibration, "calibration file") if args.calibration else None
    model = load_bench_model(args.model, samples=args.samples, seed=args.seed, calibration=calibration,
                             relu_budget=args.relu_budget, seq=args.seq)
    baseline_exact = args.baseline_truncation == "exact"
    settings = [f"cheetah: fixed point ({CHEETAH_FRAC_BITS} fractional bits), {args.baseline_truncation} truncation"
                if mode == "cheetah" else f"{mode}: {'exact' if args.exact else 'approximate'} requantization"
                for mode in modes]
    print(f"aiompc bench {model.name}: {len(model.float_graph.nodes)} float layers, input "
          f"{model.float_graph.input_shape}, {args.samples} sample(s); network {','.join(links)}; "
          f"OT {','.join(ots)}; " + "; ".join(settings), file=sys.stderr, flush=True)
    results = run_bench(model, modes=modes, links=links, ots=ots, exact=args.exact, baseline_exact=baseline_exact,
                        progress=args.progress, log=sys.stderr, processes=args.processes,
                        weight_memory=weight_memory, stat_scope=args.stat_scope)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1) + "\n")
    table = bench_markdown(results, per_layer=not args.summary)
    if args.markdown:
        Path(args.markdown).write_text(table + "\n")
    print(table, flush=True)
    if args.plot:
        bench_plot(results, args.plot)
    return 0


def add_bench_command(sub: Any) -> None:
    """Register ``bench`` on an argparse sub-parser collection."""
    p = sub.add_parser("bench", help="measure a network in several protocol modes and network settings",
                       description="Run MODEL (a built-in network: " + ", ".join(NETWORKS) + "; or an ONNX file) "
                       "in each mode over loopback TCP behind the emulated link; print Markdown tables.")
    p.add_argument("model", metavar="NETWORK_OR_ONNX")
    p.add_argument("--modes", default=",".join(DEFAULT_MODES),
                   help="comma list of cheetah (the fixed-point baseline), quantized, cheetah-int (the quantized "
                   "graph on 37-bit rings); default cheetah,quantized")
    p.add_argument("--network", default="none", help="comma list of none,lan,wan (default none)")
    p.add_argument("--ot", help="comma list of OT engines: " + ", ".join(ot_engine.engine_kinds())
                   + f" (default: the library default, {ot_engine.DEFAULT_ENGINE})")
    p.add_argument("--samples", type=int, default=1, help="inferences per run (default 1)")
    p.add_argument("--seed", type=int, default=0, help="seed of the random weights and inputs (default 0)")
    p.add_argument("--seq", type=int, metavar="S",
                   help="sequence length of a built-in transformer (bert-tiny, bert-base; default "
                   f"{DEFAULT_SEQ}); its input is S token embeddings, which the client computes "
                   "locally from its own tokens")
    p.add_argument("--calibration", help=".npy calibration inputs of the quantized graph (default: random normal)")
    p.add_argument("--relu-budget", type=int, metavar="N",
                   help="keep exactly N ReLUs per inference (SNL / SENet style: a fixed-seed random mask, N spread "
                   "over the layers in proportion to their sizes), the others the identity")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--exact", dest="exact", action="store_true", default=True,
                   help="bit-exact requantization in the quantized and cheetah-int modes (default)")
    g.add_argument("--approx", dest="exact", action="store_false",
                   help="one-LSB-error requantization in the quantized and cheetah-int modes")
    p.add_argument("--baseline-truncation", choices=("approx", "exact"), default="approx",
                   help="the cheetah mode's truncation: approx (Cheetah's own, one LSB low; default) or exact")
    p.add_argument("--stat-scope", choices=STAT_SCOPES, default=None,
                   help="what the 40-bit statistical security of the flooding covers in every mode: inference (all "
                   "result ciphertexts of one inference together) or ciphertext (each on its own); default each "
                   "mode's own: inference for quantized, ciphertext for the Cheetah modes (Cheetah's parameters "
                   "hold no more)")
    p.add_argument("--json", metavar="F", help="write the runs as a JSON list to F")
    p.add_argument("--markdown", metavar="F", help="write the tables to F")
    p.add_argument("--plot", metavar="F", help="write a PNG of bytes per layer and totals to F")
    p.add_argument("--summary", action="store_true", help="summary and ratio tables only (no per-layer tables)")
    p.add_argument("--processes", type=int, choices=(1, 2), default=2,
                   help="2: the server party in its own process, as on two machines, each party's CPU seconds "
                   "reported (default); 1: both parties in this process (with a progress bar)")
    p.add_argument("--weight-memory", type=float, default=WEIGHT_MEMORY / (1 << 30), metavar="GIB",
                   help="GiB of weight plaintexts the server prepares once and keeps (two processes; the rest is "
                   f"prepared per inference; default {WEIGHT_MEMORY / (1 << 30):g})")
    p.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                   help="progress bar per layer (default: when stderr is a terminal)")
    p.set_defaults(func=cmd_bench)
