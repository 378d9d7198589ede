"""What honest sessions need of the server's limits: peak unread bytes, pending labels, largest message and
largest decode, per model and mode, measured on the server side of a real loopback TCP session.

    python benchmarks/limits_probe.py [--samples 64] [--networks minionn]

Prints a Markdown table; the defaults of :class:`aiompc.channel.Limits` and ``serve --max-message-size``
must sit well above every row (``SECURITY.md`` records the figures)."""

from __future__ import annotations

import argparse
import asyncio

import numpy as np

from aiompc import wire
from aiompc.nn.modes import engine_config
from aiompc.nn.networks import network, network_inputs
from aiompc.nn.service import client_session, serve_session
from aiompc.nn.testing import random_qgraph
from aiompc.nn.zoo import digits_data, digits_fixed_point, digits_model
from aiompc.session import connect, listen

_peak_decode = [0]
_decode = wire.decode


def _measuring_decode(data, *, max_decoded=None):  # type: ignore[no-untyped-def]
    out = _decode(data, max_decoded=max_decoded)
    stack, total = [out], 0
    while stack:
        o = stack.pop()
        if isinstance(o, np.ndarray):
            total += o.nbytes if o.base is None or isinstance(o.base, np.ndarray) else 0  # not a view on the message
        elif isinstance(o, (list, tuple)):
            stack += list(o)
        elif isinstance(o, dict):
            stack += list(o.values())
    _peak_decode[0] = max(_peak_decode[0], total)
    return out


async def probe(graph, x_int: np.ndarray, mode: str) -> dict[str, int]:  # type: ignore[no-untyped-def]
    config = engine_config(mode)
    _peak_decode[0] = 0

    async def handler(party) -> None:  # type: ignore[no-untyped-def]
        await serve_session(party, graph, config)

    async with await listen(handler, "tcp://127.0.0.1:0", options=config.to_options()) as server:
        async with connect(server.url, options=config.to_options()) as party:
            await client_session(party, graph.without_weights(), x_int, config)
        for _ in range(100):
            if server.sessions_ok + server.sessions_failed:
                break
            await asyncio.sleep(0.05)
    return {"peak_buffered": server.peak_buffered, "peak_pending_labels": server.peak_pending_labels,
            "peak_message": server.peak_message, "peak_decode": _peak_decode[0]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--samples", type=int, default=64)
    ap.add_argument("--networks", nargs="*", default=[])
    args = ap.parse_args()
    wire.decode = _measuring_decode  # type: ignore[assignment]
    data = digits_data()
    cases = []
    for mode in ("quantized", "cheetah"):
        g = digits_fixed_point() if mode == "cheetah" else digits_model()
        cases.append(("digits", mode, g, g.quantize_input(data.x_test[: args.samples])))
    rg, net = random_qgraph(1)
    cases.append(("random_qgraph(1)", "quantized", rg, rg.quantize_input(net.inputs[:4])))
    for name in args.networks:
        g = network(name)
        cases.append((name, "quantized", g, g.quantize_input(network_inputs(name, 1))))
    print("| model | mode | samples | peak unread bytes | peak pending labels | largest message | largest decode |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for name, mode, g, x in cases:
        r = asyncio.run(probe(g, x, mode))
        print(f"| {name} | {mode} | {len(x)} | {r['peak_buffered']:,} | {r['peak_pending_labels']} | "
              f"{r['peak_message']:,} | {r['peak_decode']:,} |", flush=True)


if __name__ == "__main__":
    main()
