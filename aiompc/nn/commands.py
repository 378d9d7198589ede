"""The model commands of the ``aiompc`` CLI: ``run``, ``serve``, ``infer`` and ``demo``.

``run`` and ``demo`` start both parties in this process, connected by a real loopback connection
(TCP by default), so the reported bytes are what crossed a socket.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from typing import Any

import numpy as np

import aiompc
from aiompc.errors import AiompcError
from aiompc.nn import loopback
from aiompc.nn.interpret import run_int
from aiompc.nn.ir import QGraph
from aiompc.nn.report import format_table, layer_report
from aiompc.nn.secure import EngineConfig, SecureResult
from aiompc.nn.service import load_model

__all__ = ["add_commands"]


def _config(args: argparse.Namespace) -> EngineConfig:
    return EngineConfig(mode=args.mode, exact=not args.approx, output=getattr(args, "output", "logits"))


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
    graph = load_model(args.model, calibration=np.load(args.calibration) if args.calibration else None)
    x = np.load(args.input)
    from aiompc.nn.service import _batch

    xq, single = _batch(graph, x)
    config = _config(args)
    result, report = aiompc.run(run_two_parties(graph, xq, config, transport=args.transport,
                                                progress=False if args.json else None))
    secure = _outputs(graph, result, config)
    ref_int = run_int(graph, xq)
    reference = graph.dequantize_output(ref_int)
    if config.output == "argmax":
        reference = np.argmax(reference.reshape(len(reference), -1), axis=1)
    if args.json:
        print(json.dumps({"secure": secure.tolist(), "reference": reference.tolist(), **report}))
        return 0
    print(f"model {args.model}: mode {config.mode}, {'exact' if config.exact else 'approximate'}, {len(xq)} sample(s)")
    print(f"secure:    {np.round(secure, 4).tolist()}")
    print(f"reference: {np.round(reference, 4).tolist()}")
    if config.exact and config.output == "logits":
        same = np.array_equal(np.asarray(result.output), ref_int)
        print("secure == integer reference bit for bit" if same else "MISMATCH with the integer reference")
    print()
    print(format_table(report))
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    async def main() -> None:
        server = await aiompc.serve(args.model, args.listen, config=_config(args),
                                    calibration=np.load(args.calibration) if args.calibration else None)
        print(f"serving {args.model} at {server.url} (mode {args.mode}); Ctrl-C to stop", flush=True)
        try:
            await asyncio.Event().wait()
        finally:
            await server.close()

    aiompc.run(main())
    return 0


def cmd_infer(args: argparse.Namespace) -> int:
    x = np.load(args.input)
    y = aiompc.run(aiompc.infer(x, args.connect))
    y = np.asarray(y)
    if args.json:
        print(json.dumps({"output": y.tolist()}))
    else:
        print(np.round(y, 4).tolist())
        if y.ndim >= 1 and y.dtype.kind == "f":
            print("predicted class:", np.argmax(y.reshape(-1, y.shape[-1]), axis=1).tolist())
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from aiompc.nn.interpret import predict
    from aiompc.nn.zoo import digits_data, digits_model, digits_report

    graph = digits_model()
    data = digits_data()
    x, labels = data.x_test[: args.samples], data.y_test[: args.samples]
    xq = graph.quantize_input(x)
    config = EngineConfig(mode=args.mode)
    print(f"aiompc demo: a {len(graph.nodes)}-layer CNN on scikit-learn's 8x8 digits, w4a4 body, 8-bit first/last layer")
    print(f"server holds the model, client holds {len(x)} test image(s); both run here over loopback {args.transport.upper()}\n")
    result, report = aiompc.run(run_two_parties(graph, xq, config, transport=args.transport))
    secure_pred = np.argmax(_outputs(graph, result, config).reshape(len(x), -1), axis=1)
    ref_pred = predict(graph, x)
    exact = np.array_equal(np.asarray(result.output), run_int(graph, xq))
    print("| sample | label | secure prediction | plaintext quantized prediction |")
    print("|---:|---:|---:|---:|")
    for i in range(len(x)):
        print(f"| {i} | {labels[i]} | {secure_pred[i]} | {ref_pred[i]} |")
    acc = float(np.mean(secure_pred == labels))
    print(f"\nsecure accuracy on these {len(x)} samples: {acc:.1%}; "
          f"logits equal the integer reference bit for bit: {exact}")
    rep = digits_report()
    print(f"(model card: float accuracy {rep['float_accuracy']:.2%}, quantized {rep['quantized_accuracy']:.2%} "
          f"on the full {rep.get('test_samples', 'held-out')}-image test split)\n")
    print(f"communication ({config.mode} mode, all {len(x)} samples, counted on the client's socket):")
    print(format_table(report))
    return 0 if exact and np.array_equal(secure_pred, ref_pred) else 1


def add_commands(sub: Any) -> None:
    """Register ``run``, ``serve``, ``infer`` and ``demo`` on an argparse sub-parser collection."""

    def engine_opts(p: argparse.ArgumentParser) -> None:
        p.add_argument("--mode", choices=("quantized", "cheetah"), default="quantized")
        g = p.add_mutually_exclusive_group()
        g.add_argument("--exact", action="store_true", default=True, help="bit-exact (default)")
        g.add_argument("--approx", action="store_true", help="allow one-LSB requantization errors")

    p = sub.add_parser("run", help="both parties in this process on MODEL with INPUT; print secure and reference results")
    p.add_argument("model")
    p.add_argument("--input", required=True, help=".npy file, (n, *input_shape) or one sample, float")
    p.add_argument("--calibration", help=".npy calibration inputs for a float model")
    p.add_argument("--transport", choices=("tcp", "ws"), default="tcp")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    engine_opts(p)
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("serve", help="serve MODEL at --listen URL")
    p.add_argument("model")
    p.add_argument("--listen", required=True, help="tcp://host:port or ws://host:port/path")
    p.add_argument("--calibration", help=".npy calibration inputs for a float model")
    p.add_argument("--output", choices=("logits", "argmax"), default="logits")
    engine_opts(p)
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("infer", help="private prediction of INPUT from the server at --connect URL")
    p.add_argument("input", help=".npy file, float")
    p.add_argument("--connect", required=True)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_infer)

    p = sub.add_parser("demo", help="the demo: digits CNN, both parties over loopback")
    p.add_argument("--samples", type=int, default=8)
    p.add_argument("--mode", choices=("quantized", "cheetah"), default="quantized")
    p.add_argument("--transport", choices=("tcp", "ws"), default="tcp")
    p.set_defaults(func=cmd_demo)


def run_cli(func: Any, args: argparse.Namespace) -> int:
    try:
        return int(func(args))
    except AiompcError as exc:
        print(f"aiompc: error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 2
