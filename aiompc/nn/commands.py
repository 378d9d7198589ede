"""The model commands of the ``aiompc`` CLI: ``run``, ``serve``, ``infer`` and ``demo``.

``run`` and ``demo`` start both parties in this process, connected by a real loopback connection
(TCP by default), so the reported bytes are what crossed a socket, and compare the secure result with
the plaintext integer reference of the graph that ran (:func:`aiompc.nn.modes.check_output`).

``--mode`` is one of :data:`aiompc.nn.modes.MODES`, as in ``aiompc bench``: ``quantized`` (default),
``cheetah`` (the float model in Cheetah's 37-bit fixed point, approximate truncation unless ``--exact``)
or ``cheetah-int`` (the quantized graph on 37-bit rings).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import warnings
from typing import Any, Callable, TypeVar

import numpy as np

import aiompc
from aiompc import heap
from aiompc.errors import AiompcError, InputError
from aiompc.nn import loopback
from aiompc.nn.fixed_point import CHEETAH_FRAC_BITS
from aiompc.nn.interpret import run_int
from aiompc.nn.ir import QGraph
from aiompc.nn.modes import CHEETAH_RING, MODES, EngineConfig, check_output, engine_config
from aiompc.nn.npy_files import load_npy
from aiompc.nn.quant_choices import (DATASETS, RandomCalibrationWarning, add_quant_args, format_widths,
                                     input_range_note, layer_widths, load_calibration, quant_config)
from aiompc.nn.report import format_table, layer_report
from aiompc.nn.secure import SecureResult
from aiompc.nn.serve_flags import add_infer_flags, add_serve_flags, infer_kwargs, serve_kwargs, setup_logging
from aiompc.nn.service import input_batch, load_model

__all__ = ["add_commands"]

_T = TypeVar("_T")


def _noting_random_calibration(load: Callable[[], _T]) -> _T:
    """Run ``load``; a :class:`RandomCalibrationWarning` it raises is printed loudly on stderr."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", RandomCalibrationWarning)
        result = load()
    for w in caught:
        if issubclass(w.category, RandomCalibrationWarning):
            print(f"NOTE: {w.message}", file=sys.stderr, flush=True)
        else:
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    return result


def _load(args: argparse.Namespace, config: EngineConfig) -> QGraph:
    """The integer program ``args`` ask for: the model in ``config``'s mode, quantized with the width flags on
    ``--calibration`` (a file or dataset name; random inputs, loudly, when a float model needs them)."""
    return _noting_random_calibration(lambda: load_model(
        args.model, calibration=load_calibration(args.calibration), config=quant_config(args),
        graph=config.mode.program))


def _config(args: argparse.Namespace) -> EngineConfig:
    """The session configuration, decided once here: ``--mode`` with ``--exact/--approx`` (default: the
    mode's own) and ``--output``."""
    return engine_config(args.mode, exact=args.exact, output=getattr(args, "output", "logits"))


def _describe_mode(config: EngineConfig) -> str:
    """``cheetah (fixed-point program, 12 fractional bits, approximate truncation)`` and the like."""
    text = config.mode.describe()
    if config.mode.program == "fixed-point":
        text = text.replace("fixed-point program", f"fixed-point program, {CHEETAH_FRAC_BITS} fractional bits")
    return text


def _deviation(check: dict[str, Any]) -> str:
    """A :func:`~aiompc.nn.modes.check_output` result in words."""
    diff, top = check["max_abs_diff_lsb"], check["max_abs_logit_lsb"]
    if diff == 0:
        return "bit for bit equal"
    share = f" = {100 * diff / top:.3g}% of the largest logit" if top else ""
    return f"up to {diff} LSB off{share}, same top-1 class on {check['argmax_agree']:.0%} of the samples"


async def run_two_parties(
    graph: QGraph, x_int: np.ndarray, config: EngineConfig, *, transport: str = "tcp", progress: bool | None = None,
) -> tuple[SecureResult, dict[str, Any]]:
    """Server and client in this process over loopback; returns the client's results and the cost report."""
    run = await loopback.run_two_parties(graph, x_int, config, transport=transport, progress=progress)
    return run.result, layer_report(graph, run.result.layers, run.stats, run.seconds)


def _outputs(graph: QGraph, result: SecureResult, config: EngineConfig) -> np.ndarray:
    out = np.asarray(result.output)
    return out if config.output == "argmax" else graph.dequantize_output(out)


# --------------------------------------------------------------------------- commands


def cmd_run(args: argparse.Namespace) -> int:
    """Both parties on ``args.model`` in ``args.mode``; the secure result against ``run_int`` of the graph
    that ran (a difference is an error in exact mode, a reported deviation in approximate mode)."""
    x = load_npy(args.input, "--input file")
    config = _config(args)
    graph = _load(args, config)
    xq, _ = input_batch(graph, x)
    note = input_range_note(graph, x)
    if note:
        print(f"WARNING: {note}", file=sys.stderr, flush=True)
    result, report = aiompc.run(run_two_parties(graph, xq, config, transport=args.transport,
                                                progress=False if args.json else None))
    secure = _outputs(graph, result, config)
    ref_int = run_int(graph, xq)
    check = check_output(graph, xq, np.asarray(result.output), config, reference=ref_int)
    reference = graph.dequantize_output(ref_int)
    if config.output == "argmax":
        reference = np.argmax(reference.reshape(len(reference), -1), axis=1)
    if args.json:
        print(json.dumps({"secure": secure.tolist(), "reference": reference.tolist(), "mode": config.mode.name,
                          "graph": config.mode.program, "exact": config.exact, "check": check,
                          "widths": layer_widths(graph), **report}))
        return 0
    print(f"model {args.model}: mode {_describe_mode(config)}, {len(xq)} sample(s)")
    print(format_widths(layer_widths(graph)) + "\n")
    print(f"secure:    {np.round(secure, 4).tolist()}")
    print(f"reference: {np.round(reference, 4).tolist()}")
    if check["max_abs_diff_lsb"] == 0:
        print("secure == integer reference bit for bit")
    else:  # approximate mode (exact mode raised)
        print(f"secure vs integer reference: {_deviation(check)} (approximate rescaling: each may be one LSB low)")
    print()
    print(format_table(report))
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    setup_logging(args)
    heap.bound_growth()  # a serving process: resident size near live memory during sessions (aiompc.heap)

    async def main() -> None:
        config = _config(args)
        graph = _load(args, config)
        server = await aiompc.serve(graph, args.listen, mode=config.mode, output=config.output, **serve_kwargs(args))
        print(f"serving {args.model} at {server.url} (mode {_describe_mode(config)}); Ctrl-C to stop",
              flush=True)
        print(format_widths(layer_widths(graph)), flush=True)
        try:
            await asyncio.Event().wait()
        finally:
            await server.close()

    aiompc.run(main())
    return 0


def cmd_infer(args: argparse.Namespace) -> int:
    x = load_npy(args.input, "input file")
    y = aiompc.run(aiompc.infer(x, args.connect, mode=args.mode, **infer_kwargs(args)))
    y = np.asarray(y)
    if args.json:
        print(json.dumps({"output": y.tolist()}))
    else:
        print(np.round(y, 4).tolist())
        if y.ndim >= 1 and y.dtype.kind == "f":
            print("predicted class:", np.argmax(y.reshape(-1, y.shape[-1]), axis=1).tolist())
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    """The digits CNN in ``args.mode``: secure predictions against the plaintext integer program that ran.
    ``--web``: the browser demo instead (:mod:`aiompc.nn.web`)."""
    if args.web:
        from aiompc.nn.web.command import run_web_demo

        return run_web_demo(args.port, args.server, _config(args).mode)
    if args.port is not None or args.server is not None:
        raise InputError("--port and --server belong to the browser demo: add --web")
    from aiompc.nn.interpret import predict
    from aiompc.nn.zoo import digits_data, digits_fixed_point, digits_model, digits_report

    config = _config(args)
    kind = config.mode.program
    graph = digits_fixed_point() if kind == "fixed-point" else digits_model()
    data = digits_data()
    x, labels = data.x_test[: args.samples], data.y_test[: args.samples]
    xq = graph.quantize_input(x)
    what = "its float weights" if kind == "fixed-point" else "w4a4 body, 8-bit first/last layer"
    print(f"aiompc demo: a {len(graph.nodes)}-layer CNN on scikit-learn's 8x8 digits, {what}; "
          f"mode {_describe_mode(config)}")
    print(f"server holds the model, client holds {len(x)} test image(s); both run here over loopback {args.transport.upper()}\n")
    result, report = aiompc.run(run_two_parties(graph, xq, config, transport=args.transport))
    secure_pred = np.argmax(_outputs(graph, result, config).reshape(len(x), -1), axis=1)
    ref_int = run_int(graph, xq)
    check = check_output(graph, xq, np.asarray(result.output), config, reference=ref_int)  # raises if exact and wrong
    ref_pred = np.argmax(graph.dequantize_output(ref_int).reshape(len(x), -1), axis=1)
    print(f"| sample | label | secure prediction | plaintext {kind} prediction |")
    print("|---:|---:|---:|---:|")
    for i in range(len(x)):
        print(f"| {i} | {labels[i]} | {secure_pred[i]} | {ref_pred[i]} |")
    acc = float(np.mean(secure_pred == labels))
    same = check["max_abs_diff_lsb"] == 0
    deviation = "" if same else f" ({_deviation(check)}: approximate rescaling)"
    print(f"\nsecure accuracy on these {len(x)} samples: {acc:.1%}; "
          f"logits equal the integer reference bit for bit: {same}{deviation}")
    rep = digits_report()
    card = f"float accuracy {rep['float_accuracy']:.2%}, quantized {rep['quantized_accuracy']:.2%}"
    if kind == "fixed-point":
        fixed_acc = float(np.mean(predict(graph, data.x_test) == data.y_test))
        card += f", fixed point {fixed_acc:.2%} (plaintext, computed now)"
    print(f"(model card: {card} on the full {len(data.x_test)}-image test split)\n")
    print(f"communication ({args.mode} mode, all {len(x)} samples, counted on the client's socket):")
    print(format_table(report))
    return 0


def add_commands(sub: Any) -> None:
    """Register ``run``, ``serve``, ``infer`` and ``demo`` on an argparse sub-parser collection."""

    def engine_opts(p: argparse.ArgumentParser) -> None:
        p.add_argument("--mode", choices=list(MODES), default="quantized",
                       help="quantized: the low-precision graph (default); cheetah: Cheetah's baseline, the float "
                       f"model in {CHEETAH_RING}-bit fixed point ({CHEETAH_FRAC_BITS} fractional bits); cheetah-int: the "
                       f"quantized graph on Cheetah's {CHEETAH_RING}-bit rings")
        g = p.add_mutually_exclusive_group()
        g.add_argument("--exact", dest="exact", action="store_const", const=True, default=None,
                       help="bit-exact truncation/requantization (default, except in cheetah mode)")
        g.add_argument("--approx", dest="exact", action="store_const", const=False,
                       help="approximate rescaling: each truncated/requantized value may be one LSB low and the "
                       "errors add up through later layers (the report says by how much); saves a comparison per "
                       "value (default in cheetah mode: Cheetah's own truncation)")

    calibration_help = ("calibration inputs of a float model in the quantized modes: a .npy file (N, *input_shape) "
                        f"or a dataset name ({', '.join(DATASETS)}); default: random inputs, with a note")
    p = sub.add_parser("run", help="both parties in this process on MODEL with INPUT; print secure and reference results")
    p.add_argument("model")
    p.add_argument("--input", required=True, help=".npy file, (n, *input_shape) or one sample, float")
    p.add_argument("--calibration", help=calibration_help)
    p.add_argument("--transport", choices=("tcp", "ws"), default="tcp")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    engine_opts(p)
    add_quant_args(p)
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("serve", help="serve MODEL at --listen URL")
    p.add_argument("model")
    p.add_argument("--listen", required=True, help="tcp://host:port or ws://host:port/path")
    p.add_argument("--calibration", help=calibration_help)
    p.add_argument("--output", choices=("logits", "argmax"), default="logits")
    engine_opts(p)
    add_quant_args(p)
    add_serve_flags(p)
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("infer", help="private prediction of INPUT from the server at --connect URL")
    p.add_argument("input", help=".npy file, float")
    p.add_argument("--connect", required=True)
    p.add_argument("--mode", choices=list(MODES), help="insist on this mode (default: whatever the server runs)")
    p.add_argument("--json", action="store_true")
    add_infer_flags(p)
    p.set_defaults(func=cmd_infer)

    p = sub.add_parser("demo", help="the demo: digits CNN, both parties over loopback")
    p.add_argument("--samples", type=int, default=8)
    p.add_argument("--transport", choices=("tcp", "ws"), default="tcp")
    p.add_argument("--web", action="store_true", help="the browser demo: draw a digit in a page served on "
                   "127.0.0.1:--port, classified privately (--mode quantized or cheetah-int for the in-process server; "
                   "a --server runs its own mode)")
    p.add_argument("--port", type=int, help="--web: the page's port (default 8021; 0: any free port)")
    p.add_argument("--server", help="--web: the model server's ws:// URL (default: one started in-process)")
    engine_opts(p)
    p.set_defaults(func=cmd_demo)


def run_cli(func: Any, args: argparse.Namespace) -> int:
    try:
        return int(func(args))
    except AiompcError as exc:
        print(f"aiompc: error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 2
