"""Accuracy, measured: a model over a labelled test set in several modes, plaintext and secure.

:func:`evaluate` runs each requested mode on the first ``samples`` samples of a dataset
(:mod:`aiompc.nn.datasets`) and returns an :class:`EvalReport` with one :class:`ModeResult` per mode:

* top-1 accuracy against the labels;
* agreement of the top-1 class with the float model (``plaintext-float``) and with the plaintext integer
  model (``plaintext-int``, the quantized program of :func:`aiompc.nn.interpret.run_int`);
* the mean and largest absolute logit error against the float model's logits (float units);
* for a secure mode, how its outputs compare with the plaintext program it runs (the quantized graph for
  ``quantized``/``cheetah-int``, Cheetah's 12-bit fixed-point graph for ``cheetah``): the largest difference
  in output LSBs and the top-1 agreement.  Exact rescaling must give a difference of zero;
* for a secure mode, the bytes per sample (the client's channel statistics, framing, handshakes and the OT
  engine's offline bytes included, via :func:`aiompc.nn.report.layer_report`) and the seconds per sample,
  wall clock and CPU (both parties run in this process, so CPU is both parties' work).

Modes (:data:`EVAL_MODES`): ``plaintext-float``, ``plaintext-int``, ``plaintext-fixed`` (plaintext
references) and the secure modes of :mod:`aiompc.nn.modes` (``quantized``, ``cheetah``, ``cheetah-int``).
A secure mode may carry its rescaling: ``quantized:approx``, ``cheetah:exact``; otherwise ``exact``
(``None``: each mode's default, ``aiompc.nn.modes.MODES[name].exact``) applies.

Secure modes run both parties in this process over loopback TCP (:func:`aiompc.nn.loopback.run_two_parties`),
one session per batch of ``batch`` samples, with a progress bar (tqdm) per mode.
"""

from __future__ import annotations

import functools
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Coroutine, ParamSpec, Sequence, TypeVar

import numpy as np

from aiompc.errors import InputError, ProtocolError, UnsupportedModel
from aiompc.nn.datasets import Dataset, load_dataset, model_dataset
from aiompc.nn.modes import MODES, engine_config
from aiompc.nn.quantize import QuantConfig

__all__ = ["EVAL_MODES", "DEFAULT_MODES", "ModeSpec", "ModeResult", "EvalReport", "parse_modes", "evaluate",
           "evaluate_async"]

PLAINTEXT_MODES = ("plaintext-float", "plaintext-int", "plaintext-fixed")
EVAL_MODES = PLAINTEXT_MODES + tuple(MODES)
"""Every mode :func:`evaluate` knows."""

DEFAULT_MODES = ("plaintext-float", "plaintext-int", "quantized", "cheetah")
"""What ``aiompc eval`` runs unless ``--modes`` says otherwise."""

_P = ParamSpec("_P")
_R = TypeVar("_R")

_PROGRAM_OF_PLAINTEXT = {"plaintext-float": "float", "plaintext-int": "quantized", "plaintext-fixed": "fixed-point"}


@dataclass(frozen=True)
class ModeSpec:
    """One mode to evaluate: its name, whether it is secure, the program it runs, and (secure only) exact
    or approximate rescaling."""

    name: str
    secure: bool
    program: str  # "float" | "quantized" | "fixed-point"
    exact: bool | None = None

    @property
    def label(self) -> str:
        """``quantized``, ``quantized:approx`` (when the rescaling is not the mode's default) and the like."""
        if not self.secure or self.exact == MODES[self.name].exact:
            return self.name
        return f"{self.name}:{'exact' if self.exact else 'approx'}"


def parse_modes(modes: str | Sequence[str], exact: bool | None = None) -> list[ModeSpec]:
    """``"plaintext-float,quantized:approx"`` (or a list of names) to :class:`ModeSpec`s, in order.

    ``exact`` is the rescaling of secure modes without a ``:exact``/``:approx`` suffix (``None``: the
    mode's default).  Unknown names, bad suffixes and duplicates are :class:`InputError`s."""
    names = [m.strip() for m in (modes.split(",") if isinstance(modes, str) else modes) if m.strip()]
    if not names:
        raise InputError(f"no modes given; choose from {', '.join(EVAL_MODES)}")
    specs: list[ModeSpec] = []
    for item in names:
        name, _, suffix = item.partition(":")
        if name not in EVAL_MODES:
            raise InputError(f"unknown mode {name!r}; choose from {', '.join(EVAL_MODES)} (secure modes may end in "
                             ":exact or :approx)")
        if name in PLAINTEXT_MODES:
            if suffix:
                raise InputError(f"mode {item!r}: only secure modes take :exact or :approx")
            specs.append(ModeSpec(name, False, _PROGRAM_OF_PLAINTEXT[name]))
            continue
        if suffix not in ("", "exact", "approx"):
            raise InputError(f"mode {item!r}: the suffix must be :exact or :approx")
        ex = (suffix == "exact") if suffix else (MODES[name].exact if exact is None else exact)
        specs.append(ModeSpec(name, True, MODES[name].program, ex))
    labels = [s.label for s in specs]
    if len(set(labels)) != len(labels):
        raise InputError(f"mode listed twice: {', '.join(labels)}")
    return specs


@dataclass
class ModeResult:
    """The measurements of one mode over ``samples`` samples (see the module docstring)."""

    mode: str
    program: str
    secure: bool
    exact: bool | None
    samples: int
    accuracy: float
    agree_float: float
    agree_int: float | None
    logit_err_mean: float
    logit_err_max: float
    program_check: dict[str, Any] | None  # secure: {"max_abs_diff_lsb", "max_abs_logit_lsb", "argmax_agree"}
    bytes_per_sample: float
    seconds_per_sample: float
    cpu_seconds_per_sample: float
    median_seconds_per_sample: float  # secure: the median over sessions of (session wall time / its samples)
    predictions: np.ndarray = field(repr=False)
    totals: dict[str, Any] = field(default_factory=dict, repr=False)  # secure: summed layer_report totals

    def to_dict(self) -> dict[str, Any]:
        """JSON-able (predictions as a list)."""
        d = {k: getattr(self, k) for k in ("mode", "program", "secure", "exact", "samples", "accuracy", "agree_float",
                                           "agree_int", "logit_err_mean", "logit_err_max", "program_check",
                                           "bytes_per_sample", "seconds_per_sample", "cpu_seconds_per_sample",
                                           "median_seconds_per_sample",
                                           "totals")}
        d["predictions"] = self.predictions.tolist()
        return d


@dataclass
class EvalReport:
    """All modes' results on one model and dataset."""

    model: str
    dataset: str
    samples: int
    dataset_size: int
    batch: int
    transport: str
    rows: list[ModeResult]
    labels: np.ndarray = field(repr=False)

    def __getitem__(self, mode: str) -> ModeResult:
        for r in self.rows:
            if r.mode == mode:
                return r
        raise KeyError(mode)

    def mismatches(self) -> list[str]:
        """Secure modes with exact rescaling whose outputs differ from their plaintext program (a bug)."""
        return [r.mode for r in self.rows if r.secure and r.exact and r.program_check
                and r.program_check["max_abs_diff_lsb"] != 0]

    def check(self) -> None:
        """:class:`ProtocolError` if an exact secure mode differs from its plaintext program at all."""
        bad = self.mismatches()
        if bad:
            raise ProtocolError(f"exact secure inference differs from the plaintext integer program in mode(s) "
                                f"{', '.join(bad)} (see the table); this is a bug, please report it")

    def to_dict(self) -> dict[str, Any]:
        """JSON-able report: the settings, the labels and one object per mode."""
        return {"model": self.model, "dataset": self.dataset, "samples": self.samples,
                "dataset_size": self.dataset_size, "batch": self.batch, "transport": self.transport,
                "labels": self.labels.tolist(), "modes": [r.to_dict() for r in self.rows]}

    def markdown(self) -> str:
        """A Markdown table, one row per mode (see :func:`aiompc.nn.eval_report.eval_markdown`)."""
        from aiompc.nn.eval_report import eval_markdown

        return eval_markdown(self)


# --------------------------------------------------------------------------- programs


def _sidecar_config(model: Path) -> QuantConfig | None:
    """The quantization settings a shipped model records in its JSON card (``model.json`` beside it)."""
    import json

    card = model.resolve().with_suffix(".json")
    if not card.is_file():
        return None
    try:
        q = json.loads(card.read_text()).get("quantization")
    except (ValueError, AttributeError):
        return None
    return QuantConfig(**q) if isinstance(q, dict) else None


class _Programs:
    """The model's float graph and, lazily, its quantized and fixed-point integer programs."""

    def __init__(self, model: Path, calibration: np.ndarray | None, config: QuantConfig | None) -> None:
        from aiompc.nn.onnx_import import load_onnx

        if not model.is_file():
            raise InputError(f"model file {str(model)!r} not found")
        self.model = model
        self.float = load_onnx(model)
        self._calibration = calibration
        self._config = config
        self._graphs: dict[str, Any] = {}

    def graph(self, program: str) -> Any:
        if program not in self._graphs:
            from aiompc.nn.service import load_model

            if program == "quantized":
                # without calibration inputs only a model that brings its own (the demo model) can be quantized
                config = self._config if self._config is not None or self._calibration is None else \
                    _sidecar_config(self.model)
                self._graphs[program] = load_model(self.model, calibration=self._calibration, config=config)
            else:
                self._graphs[program] = load_model(self.model, graph="fixed-point")
        return self._graphs[program]


def _top1(logits: np.ndarray) -> np.ndarray:
    return np.argmax(logits.reshape(len(logits), -1), axis=1)


def _program_check(secure: np.ndarray, reference: np.ndarray) -> dict[str, Any]:
    """Secure integer outputs against the plaintext program's (the fields of :func:`aiompc.nn.modes.check_output`,
    without raising)."""
    diff = int(np.max(np.abs(secure.astype(np.int64) - reference.astype(np.int64)), initial=0))
    return {"max_abs_diff_lsb": diff, "max_abs_logit_lsb": int(np.max(np.abs(reference), initial=0)),
            "argmax_agree": float(np.mean(_top1(secure) == _top1(reference)))}


async def _run_secure_mode(graph: Any, xq: np.ndarray, spec: ModeSpec, batch: int, transport: str,
                           progress: bool | None, warmup: bool) -> tuple[np.ndarray, dict[str, Any], float, float]:
    """The secure outputs of ``xq`` in ``spec``'s mode, one loopback session per batch; returns the integer
    outputs, the summed report totals (plus ``session_seconds_per_sample``: each session's wall time per
    sample), wall seconds and CPU seconds.  With ``warmup`` an untimed,
    uncounted one-sample session runs first (compilation and per-model caches are not charged to the
    first mode measured)."""
    from tqdm.auto import tqdm

    from aiompc.nn import loopback
    from aiompc.nn.report import layer_report

    config = engine_config(spec.name, exact=spec.exact)
    outputs: list[np.ndarray] = []
    totals: dict[str, Any] = {}
    wall = cpu = 0.0
    per_session: list[float] = []
    if warmup:
        await loopback.run_two_parties(graph, xq[:1], config, transport=transport, progress=False)
    with tqdm(total=len(xq), desc=spec.label, unit="sample", disable=None if progress is None else not progress,
              leave=True, dynamic_ncols=True) as bar:
        for lo in range(0, len(xq), batch):
            chunk = xq[lo:lo + batch]
            w0, c0 = time.perf_counter(), time.process_time()
            run = await loopback.run_two_parties(graph, chunk, config, transport=transport, progress=False)
            dt = time.perf_counter() - w0
            wall += dt
            cpu += time.process_time() - c0
            per_session.append(dt / len(chunk))
            outputs.append(np.asarray(run.result.output))
            for k, v in layer_report(graph, run.result.layers, run.stats, run.seconds)["total"].items():
                totals[k] = totals.get(k, 0) + v
            bar.update(len(chunk))
    totals["session_seconds_per_sample"] = [round(t, 6) for t in per_session]
    return np.concatenate(outputs), totals, wall, cpu


# --------------------------------------------------------------------------- evaluate


async def evaluate_async(
    model: str | os.PathLike[str],
    dataset: str | os.PathLike[str] | Dataset | None = None,
    *,
    samples: int | None = None,
    modes: str | Sequence[str] = DEFAULT_MODES,
    exact: bool | None = None,
    batch: int = 64,
    calibration: np.ndarray | None = None,
    config: QuantConfig | None = None,
    transport: str = "tcp",
    progress: bool | None = None,
    strict: bool = True,
    warmup: bool = True,
) -> EvalReport:
    """:func:`evaluate` inside a running event loop."""
    specs = parse_modes(modes, exact)
    if batch < 1:
        raise InputError(f"batch must be at least 1, got {batch}")
    if samples is not None and samples < 1:
        raise InputError(f"samples must be at least 1, got {samples}")
    if transport not in ("tcp", "ws"):
        raise InputError(f"transport must be 'tcp' or 'ws', got {transport!r}")
    if not Path(model).is_file():
        raise InputError(f"model file {str(model)!r} not found")
    data = load_dataset(model_dataset(model) if dataset is None else dataset)
    progs = _Programs(Path(model), calibration if calibration is not None else data.calibration, config)
    data.check_shape(progs.float.input_shape)
    size = len(data)
    data = data.head(samples or size)
    n = len(data)

    from aiompc.nn.interpret import run_float, run_int

    t0, c0 = time.perf_counter(), time.process_time()
    float_logits = run_float(progs.float, data.x).reshape(n, -1)
    float_times = (time.perf_counter() - t0, time.process_time() - c0)
    float_pred = _top1(float_logits)
    plain: dict[str, tuple[np.ndarray, float, float]] = {}  # program -> (integer outputs, wall, cpu)

    def plaintext(program: str) -> np.ndarray:
        if program not in plain:
            graph = progs.graph(program)
            w, c = time.perf_counter(), time.process_time()
            out = run_int(graph, graph.quantize_input(data.x))
            plain[program] = (out, time.perf_counter() - w, time.process_time() - c)
        return plain[program][0]

    int_pred: np.ndarray | None = None
    try:
        int_pred = _top1(progs.graph("quantized").dequantize_output(plaintext("quantized")))
    except UnsupportedModel:  # a float model without calibration inputs: only needed if a mode runs it
        if any(s.program == "quantized" for s in specs):
            raise

    rows: list[ModeResult] = []
    for spec in specs:
        check, totals = None, {}
        if spec.program == "float":
            logits, wall, cpu = float_logits, *float_times
        else:
            graph = progs.graph(spec.program)
            reference = plaintext(spec.program)
            if spec.secure:
                out, totals, wall, cpu = await _run_secure_mode(graph, graph.quantize_input(data.x), spec, batch,
                                                                transport, progress, warmup)
                check = _program_check(out, reference)
            else:
                out, wall, cpu = plain[spec.program]
            logits = graph.dequantize_output(out).reshape(n, -1)
        pred = _top1(logits)
        err = np.abs(logits - float_logits)
        nbytes = totals.get("bytes_c2s", 0) + totals.get("bytes_s2c", 0)
        rows.append(ModeResult(
            mode=spec.label, program=spec.program, secure=spec.secure, exact=spec.exact, samples=n,
            accuracy=float(np.mean(pred == data.y)), agree_float=float(np.mean(pred == float_pred)),
            agree_int=None if int_pred is None else float(np.mean(pred == int_pred)),
            logit_err_mean=float(err.mean()), logit_err_max=float(err.max()), program_check=check,
            bytes_per_sample=nbytes / n, seconds_per_sample=wall / n, cpu_seconds_per_sample=cpu / n,
            median_seconds_per_sample=float(np.median(totals.get("session_seconds_per_sample", [wall / n]))),
            predictions=pred, totals=totals))
    report = EvalReport(str(model), data.name, n, size, batch, transport, rows, data.y)
    if strict:
        report.check()
    return report


def _blocking(fn: Callable[_P, Coroutine[Any, Any, _R]], doc: str) -> Callable[_P, _R]:
    """``fn`` (an ``*_async`` coroutine function) as a function with its parameters that runs it to completion on
    its own event loop (:func:`aiompc.run`), named without ``_async`` and documented by ``doc``."""

    @functools.wraps(fn)
    def run(*args: _P.args, **kwargs: _P.kwargs) -> _R:
        import aiompc

        return aiompc.run(fn(*args, **kwargs))

    run.__name__ = run.__qualname__ = fn.__name__.removesuffix("_async")
    run.__doc__ = doc
    return run


evaluate = _blocking(evaluate_async, """Accuracy and cost of ``model`` (an ONNX file) on ``dataset`` in each of ``modes``.

    ``dataset``: a name in :data:`aiompc.nn.datasets.DATASETS` (``"digits"``), a ``.npz`` file (``x``,
    ``y``, optional ``calibration``), a :class:`~aiompc.nn.datasets.Dataset`, or ``None`` for the model's
    own test set (:func:`~aiompc.nn.datasets.model_dataset`); the first ``samples``
    samples are used (all if ``None``).  ``modes``: see :func:`parse_modes`; ``exact`` the default
    rescaling of the secure modes.  The quantized program is calibrated on ``calibration``, else on the
    dataset's calibration batch, with ``config``, else the settings in the model's JSON card, else
    :class:`~aiompc.nn.quantize.QuantConfig`'s defaults.  Secure modes run in sessions of ``batch``
    samples over loopback ``transport`` (``"tcp"``/``"ws"``) with a progress bar (``progress=None``: only
    on a terminal), after an untimed one-sample session unless ``warmup=False``.  With ``strict`` an
    exact secure mode that differs from its plaintext program raises
    :class:`~aiompc.errors.ProtocolError` (else see :meth:`EvalReport.mismatches`).

    Runs its own event loop; from async code await :func:`evaluate_async` instead (same parameters).""")
