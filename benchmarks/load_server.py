"""Load test of ``aiompc serve`` under honest and hostile clients at once (issue 23).

    python benchmarks/load_server.py [--honest 50] [--killed 10] [--idle 200] [--max-sessions 8]

Starts ``aiompc serve`` on the digits model in a subprocess (TCP, 127.0.0.1), warms it up with one session,
and records its RSS (warm-up: ``--warmup`` rounds of ``--max-sessions`` concurrent sessions; RSS read
:data:`SETTLE` s after the last round, once the server has returned freed memory to the OS).  Then, concurrently: ``--honest`` clients each ask for one prediction (a client told
"server busy" waits 0.5–1.5 s and tries again, as the message says); ``--killed`` ``aiompc infer``
subprocesses are SIGKILLed at random moments; ``--idle`` raw connections are opened and never speak.
Reports: honest results correct, busy answers seen, idle connections dropped and how fast, and the server's
RSS after warm-up, at its peak and after the load (target: back within 10 % of the warm-up level).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

import aiompc
from aiompc.errors import ServerBusy
from aiompc.nn.interpret import predict
from aiompc.nn.zoo import DIGITS_ONNX, digits_data, digits_model

ROOT = Path(__file__).resolve().parents[1]
SETTLE = 3.0
"""Seconds after a round before RSS is read: the server returns freed memory to the OS at most every 2 s
after sessions end (``ServerPolicy.release_memory``), so both the warm-up level and the level after the
load are read once that has happened."""


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


async def honest(url: str, x: np.ndarray, stats: dict[str, int]) -> np.ndarray:
    while True:
        try:
            return await aiompc.infer(x, url)
        except ServerBusy:
            stats["busy"] += 1
            await asyncio.sleep(random.uniform(0.5, 1.5))


async def idle(port: int, drops: list[float]) -> None:
    start = time.monotonic()
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
    except OSError:
        drops.append(0.0)
        return
    try:
        await asyncio.wait_for(reader.read(), 120)  # EOF when the server drops us
        drops.append(time.monotonic() - start)
    except (OSError, asyncio.TimeoutError):
        drops.append(float("inf") if not reader.at_eof() else time.monotonic() - start)
    finally:
        writer.close()


async def killed(url: str, xfile: str, rng: random.Random) -> None:
    proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "aiompc.cli", "infer", xfile, "--connect", url,
                                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=ROOT)
    await asyncio.sleep(rng.uniform(0.5, 8.0))
    if proc.returncode is None:
        proc.send_signal(signal.SIGKILL)
    await proc.wait()


async def main(args: argparse.Namespace) -> int:
    rng = random.Random(args.seed)
    server = subprocess.Popen([sys.executable, "-m", "aiompc.cli", "serve", str(DIGITS_ONNX), "--listen",
                               "tcp://127.0.0.1:0", "--max-sessions", str(args.max_sessions), "--idle-timeout", "10",
                               "--log-level", "error"], stdout=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        assert server.stdout is not None
        url = server.stdout.readline().split(" at ", 1)[1].split(" ", 1)[0]
        port = int(url.rsplit(":", 1)[1])
        data = digits_data()
        xs = [data.x_test[i % len(data.x_test)][None] for i in range(args.honest)]
        want = predict(digits_model(), np.concatenate(xs)).tolist()
        rounds = []
        for _ in range(args.warmup):  # warm-up: rounds of as many concurrent sessions as the server runs at once
            await asyncio.gather(*(honest(url, x, {"busy": 0}) for x in xs[: args.max_sessions]))
            rounds.append(rss_mib(server.pid))
            await asyncio.sleep(SETTLE)
            rounds.append(rss_mib(server.pid))
        print(f"RSS after each warm-up round and {SETTLE:g} s later (MiB):",
              " ".join(f"{a:.0f}/{b:.0f}" for a, b in zip(rounds[::2], rounds[1::2])), file=sys.stderr)
        warm = rss_mib(server.pid)
        stats = {"busy": 0}
        drops: list[float] = []
        peak = [warm]

        async def sample() -> None:
            while True:
                peak[0] = max(peak[0], rss_mib(server.pid))
                await asyncio.sleep(0.2)

        sampler = asyncio.create_task(sample())
        with tempfile.TemporaryDirectory() as tmp:
            xfile = os.path.join(tmp, "x.npy")
            np.save(xfile, data.x_test[:4])
            start = time.monotonic()
            results = await asyncio.gather(
                *(honest(url, x, stats) for x in xs),
                *(killed(url, xfile, rng) for _ in range(args.killed)),
                *(idle(port, drops) for _ in range(args.idle)),
            )
            seconds = time.monotonic() - start
        sampler.cancel()
        later = []
        for wait in (2, 10, 20):
            await asyncio.sleep(wait - (0 if not later else [2, 10, 20][len(later) - 1]))
            later.append(rss_mib(server.pid))
        print("RSS 2/10/20 s after the load (MiB):", " ".join(f"{r:.0f}" for r in later), file=sys.stderr)
        after = later[-1]
        got = [int(np.argmax(y)) for y in results[: args.honest]]
        correct = sum(g == w for g, w in zip(got, want))
        dropped = [d for d in drops if d != float("inf")]
        print("| honest correct | busy answers (retried) | killed clients | idle dropped | idle dropped after (max) | "
              "server alive | RSS warm-up | RSS peak | RSS after | after / warm-up | seconds |")
        print("|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|---:|")
        print(f"| {correct}/{args.honest} | {stats['busy']} | {args.killed} | {len(dropped)}/{args.idle} | "
              f"{max(dropped, default=0):.1f} s | {server.poll() is None} | {warm:.0f} MiB | {peak[0]:.0f} MiB | "
              f"{after:.0f} MiB | {after / warm:.2f} | {seconds:.0f} |")
        return 0 if correct == args.honest and len(dropped) == args.idle and server.poll() is None else 1
    finally:
        server.terminate()
        server.wait(timeout=30)


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--honest", type=int, default=50)
    ap.add_argument("--killed", type=int, default=10)
    ap.add_argument("--idle", type=int, default=200)
    ap.add_argument("--max-sessions", type=int, default=8)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--warmup", type=int, default=6, help="warm-up rounds (RSS plateaus after 4-6 rounds of 8)")
    sys.exit(asyncio.run(main(ap.parse_args())))
