"""The built-in networks' benchmark: run the canonical ``aiompc bench`` commands, then regenerate the
measured tables of BENCHMARKS.md from their JSON.

    python benchmarks/networks.py run [NAME ...] [--force]   # run (skips runs whose JSON exists)
                                                            # (layer-* runs first write their ONNX model)
    python benchmarks/networks.py commands                  # print the exact commands
    python benchmarks/networks.py report                    # rewrite BENCHMARKS.md's measured section
    python benchmarks/networks.py plots                     # redraw every results/<run>.png from its JSON
    python benchmarks/networks.py lsb-errors                # plaintext: one-LSB requantization errors vs exact
    python benchmarks/networks.py layers NETWORK [--json F]  # per-layer HE bytes from the byte model (layer_table.py)

Each run is one ``aiompc bench`` process (so memory is returned between networks) writing
``benchmarks/results/<run>.json``, ``.md`` and ``.png``.  ``report`` reads every JSON there and replaces
the text between the ``<!-- measured:begin -->`` and ``<!-- measured:end -->`` markers of BENCHMARKS.md
with the machine, the summary table, the cheetah ÷ quantized ratios and links to the per-layer tables
and plots; the prose around the markers (published figures, discussion) is written by hand.
"""

from __future__ import annotations

import argparse
import functools
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
DOC = ROOT / "BENCHMARKS.md"
BEGIN, END = "<!-- measured:begin -->", "<!-- measured:end -->"
MIB = float(1 << 20)

# The headline setting: silent OT (Ferret, as Cheetah) and each system in its accurate configuration: the
# `cheetah` mode is Cheetah's 12-bit fixed-point program with Cheetah's own truncation (one LSB low at
# 2^-12, harmless there: the default `--baseline-truncation approx`), the `quantized` mode is exact (a
# dropped carry on a 4-bit activation compounds from layer to layer -- see BENCHMARKS.md -- so approximate
# requantization is a variant, not the headline).  Both modes run back to back in one process per network
# setting; the ImageNet networks run one mode per process (each takes long; the ratio pairs them across
# files).
HEADLINE = ["--ot", "silent", "--exact"]
# ResNet-18's 557,056 ReLUs (CIFAR shapes) dense and cut to the budgets SNL and SENet report
SNL_BUDGETS = {"snl-dense": [], "relu100000": ["--relu-budget", "100000"], "relu50000": ["--relu-budget", "50000"]}
BOTH = ["--modes", "cheetah,quantized", *HEADLINE]
RUNS: dict[str, tuple[str, list[str]]] = {
    "resnet18": ("resnet18", [*BOTH, "--network", "none,lan,wan"]),
    "resnet32": ("resnet32", [*BOTH, "--network", "none,lan,wan"]),
    "minionn": ("minionn", [*BOTH, "--network", "none,lan,wan"]),
    "squeezenet-cheetah": ("squeezenet", ["--modes", "cheetah", *HEADLINE, "--network", "none"]),
    "squeezenet-quantized": ("squeezenet", ["--modes", "quantized", *HEADLINE, "--network", "none"]),
    "resnet18-baseline-exact": ("resnet18", ["--modes", "cheetah,cheetah-int", "--ot", "silent", "--exact",
                                             "--baseline-truncation", "exact", "--network", "none"]),
    "resnet18-iknp": ("resnet18", ["--modes", "cheetah,quantized", "--ot", "iknp", "--exact", "--network", "none"]),
    "resnet18-approx": ("resnet18", ["--modes", "cheetah,quantized", "--ot", "silent", "--approx",
                                     "--network", "none,lan,wan"]),
    "squeezenet-wan": ("squeezenet", [*BOTH, "--network", "wan"]),
    "resnet50-cheetah": ("resnet50", ["--modes", "cheetah", *HEADLINE, "--network", "none"]),
    "resnet50-quantized": ("resnet50", ["--modes", "quantized", *HEADLINE, "--network", "none"]),
    "resnet50-wan": ("resnet50", [*BOTH, "--network", "wan"]),
    # ReLU-reduced ResNet-18 (SNL / SENet budgets; issue 24): dense and two budgets, run back to back
    **{f"resnet18-{tag}": ("resnet18", [*BOTH, *budget, "--network", "none"])
       for tag, budget in SNL_BUDGETS.items()},
    # transformers (issue 25): the cheetah mode is Iron's fixed-point program; bytes split by category
    **{f"bert-tiny-s{seq}": ("bert-tiny", [*BOTH, "--seq", str(seq), "--network", "none,lan,wan"]) for seq in (32, 128)},
    **{f"bert-base-s{seq}-{mode}": ("bert-base", ["--modes", mode, *HEADLINE, "--seq", str(seq), "--network", "none"])
       for seq in (32, 128) for mode in ("cheetah", "quantized")},
    # single layers with published per-layer figures of Cheetah's C++ (REFERENCE.md)
    "layer-conv64x56": ("benchmarks/results/layers/conv64x56.onnx", [*BOTH, "--network", "none"]),
    "layer-fc2048": ("benchmarks/results/layers/fc2048.onnx", [*BOTH, "--network", "none"]),
}


def make_layer_models() -> None:
    """Write the single-layer ONNX models of the ``layer-*`` runs (seeded; regenerated, not versioned):
    conv 64x56x56 -> 64, 3x3, pad 1 (ResNet-50 stage 1) and fc 2048 -> 1001 (Cheetah's ResNet-50 head)."""
    import numpy as np
    import onnx

    from aiompc.nn.onnx_build import OnnxBuilder

    out = RESULTS / "layers"
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    b = OnnxBuilder((64, 56, 56), graph_name="conv64x56")
    onnx.save(b.build(b.conv(b.input, rng.normal(0.0, 0.06, (64, 64, 3, 3)), None, 1, 1)), out / "conv64x56.onnx")
    b = OnnxBuilder((2048,), graph_name="fc2048")
    onnx.save(b.build(b.gemm(b.input, rng.normal(0.0, 0.02, (1001, 2048)), rng.normal(0.0, 0.1, 1001))),
              out / "fc2048.onnx")


def command(run: str) -> list[str]:
    """The ``aiompc bench`` command line of ``run`` (paths relative to the repository root)."""
    model, flags = RUNS[run]
    out = f"benchmarks/results/{run}"
    return ["aiompc", "bench", model, *flags, "--json", f"{out}.json", "--markdown", f"{out}.md",
            "--plot", f"{out}.png"]


def cmd_run(names: list[str], force: bool) -> int:
    RESULTS.mkdir(parents=True, exist_ok=True)
    for run in names or list(RUNS):
        if run not in RUNS:
            print(f"unknown run {run!r}; known: {', '.join(RUNS)}", file=sys.stderr)
            return 2
        if (RESULTS / f"{run}.json").exists() and not force:
            print(f"{run}: results exist, skipped (--force to re-run)", file=sys.stderr)
            continue
        if run.startswith("layer-"):
            make_layer_models()
        argv = command(run)
        print(f"$ {' '.join(argv)}", file=sys.stderr, flush=True)
        start = time.perf_counter()
        # --progress only draws the per-layer bar on stderr (for watching a log); it changes no result
        rc = subprocess.call([sys.executable, "-m", "aiompc.cli", *argv[1:], "--progress"], cwd=ROOT)
        print(f"{run}: exit {rc} after {time.perf_counter() - start:.0f} s", file=sys.stderr, flush=True)
        if rc:
            return rc
    return 0


def load_results() -> list[dict]:
    """Every run of every JSON file in ``benchmarks/results``, in :data:`RUNS` order, then the others."""
    order = {name: i for i, name in enumerate(RUNS)}
    files = sorted(RESULTS.glob("*.json"), key=lambda p: (order.get(p.stem, len(order)), p.stem))
    runs = []
    for path in files:
        data = json.loads(path.read_text())
        if not isinstance(data, list):  # not bench runs (e.g. the accuracy-*.json of `aiompc eval`)
            continue
        for r in data:
            if isinstance(r, dict) and "layers" in r:
                r["_file"] = path.stem
                runs.append(r)
    return runs


def _headline(r: dict) -> bool:
    """The headline setting: no link emulation, silent OT, the fixed-point baseline with Cheetah's own
    (approximate) truncation, the quantized mode exact."""
    exact = bool(r.get("exact", True))
    return (r["network"] == "none" and r["ot"] == "silent"
            and (exact if r["mode"] == "quantized" else not exact if r["mode"] == "cheetah" else True))


def _find(runs: list[dict], model: str, mode: str) -> dict | None:
    """The headline run of ``model`` in ``mode``."""
    return next((r for r in runs if r["model"] == model and r["mode"] == mode and _headline(r)), None)


def _layers(run: dict, names: set[str]) -> list[dict]:
    return [row for row in run["layers"] if row["name"] in names]


def _mib_pair(rows: list[dict]) -> str:
    if not rows:
        return "–"
    n = len(rows)
    c2s = sum(r["bytes_c2s"] for r in rows) / n / MIB
    s2c = sum(r["bytes_s2c"] for r in rows) / n / MIB
    sec = sum(r["seconds"] for r in rows) / n
    return f"{c2s:.2f} / {s2c:.2f} MiB, {sec:.2f} s"


def _op_mib(run: dict | None, ops: set[str]) -> str:
    if run is None:
        return NOT_MEASURED
    return f"{sum(r['bytes_c2s'] + r['bytes_s2c'] for r in run['layers'] if r['op'] in ops) / MIB:.1f} MiB"


def _bits_per_value(run: dict, op: str) -> tuple[float, int] | None:
    """(online bits per output value of the layers of ``op``, their number of output values)."""
    rows = [r for r in run["layers"] if r["op"] == op]
    values = sum(r.get("elements", 0) for r in rows)
    if not values:
        return None
    return 8 * sum(r["bytes_c2s"] + r["bytes_s2c"] for r in rows) / values, values


def _activation_bits(run: dict | None) -> str:
    """Per activation: ReLU + truncation (fixed point) or the fused requantization (quantized), online,
    plus the run's offline OT bytes spread over the activations."""
    if run is None:
        return NOT_MEASURED
    relu, requant = _bits_per_value(run, "relu"), _bits_per_value(run, "requantize")
    if requant is None:
        return "–"
    if run.get("graph") == "fixed-point" and relu is not None:
        offline = 8 * run["total"]["offline_bytes"] / relu[1]
        return (f"ReLU {relu[0]:.0f} + truncation {requant[0]:.0f} bits online ({relu[1]:,} ReLUs, "
                f"{requant[1]:,} truncated values) + {offline:.0f} offline OT per ReLU")
    offline = 8 * run["total"]["offline_bytes"] / requant[1]
    return f"{requant[0]:.0f} bits online + {offline:.0f} offline OT"


NOT_MEASURED = "not measured†"


def comparison_section(runs: list[dict]) -> str:
    """Published figures (REFERENCE.md) beside the measured headline runs; every number in the right-hand
    columns is read from the JSON results ("not measured†" where the run is missing)."""
    from aiompc.nn.bench import bench_ratios
    from aiompc.nn.ir import Conv, Linear
    from aiompc.nn.networks import network

    g = network("resnet50")
    conv = {n.name for n in g.nodes if isinstance(n, Conv) and n.kernel == (3, 3)
            and g.tensors[n.inputs[0]].shape == (64, 56, 56) and n.out_channels == 64}
    fc = {n.name for n in g.nodes if isinstance(n, Linear)}
    r50 = [_find(runs, "resnet50", m) for m in ("cheetah", "quantized")]
    sq = [_find(runs, "squeezenet", m) for m in ("cheetah", "quantized")]
    r18 = [_find(runs, "resnet18", m) for m in ("cheetah", "quantized")]
    cxx = "Cheetah's C++ (l = 37), 2 cores, loopback"
    def layer(model: str, names: set[str], op: str) -> list[str]:
        """Per mode: the layer inside ResNet-50 if measured there, else the single-layer run."""
        cells = []
        for mode, net in zip(("cheetah", "quantized"), r50):
            single = _find(runs, model, mode)
            if net is not None:
                cells.append(_mib_pair(_layers(net, names)) + " (in ResNet-50)")
            elif single is not None:
                cells.append(_mib_pair([r for r in single["layers"] if r["op"] == op]) + " (single layer)")
            else:
                cells.append(NOT_MEASURED)
        return cells

    rows = [
        ("conv 64×56×56 → 64, 3×3, pad 1 (ResNet-50 stage 1): c→s / s→c, time", "3.81 / 3.10 MiB, 0.45 s", cxx,
         *layer("conv64x56", conv, "conv")),
        ("fc 2048 → 1001 (here 1000 in ResNet-50): c→s / s→c, time", "1.19 / 0.76 MiB, 0.16 s", cxx,
         *layer("fc2048", fc, "linear")),
        ("ResNet-50 total communication, one inference", "2.3 GB", "Cheetah paper",
         *(f"{(r['total']['bytes_c2s'] + r['total']['bytes_s2c']) / 1e9:.2f} GB" if r else NOT_MEASURED
           for r in r50)),
        ("ResNet-50 end-to-end time", "< 2.5 min (WAN)", "Cheetah paper (multi-threaded C++)",
         *(f"{r['total']['seconds'] / 60:.1f} min (no link emulation)" if r else NOT_MEASURED for r in r50)),
        ("SqueezeNet ReLU + truncation (quantized mode: the fused requantizations, 4-bit clip included)",
         "50 + 5 MiB", "SecONNds' measurement of Cheetah, l = 32", *(_op_mib(r, {"requantize", "relu"}) for r in sq)),
        ("SqueezeNet max-pool", "135 MiB", "SecONNds' measurement of Cheetah, l = 32",
         *(_op_mib(r, {"maxpool"}) for r in sq)),
        (("per activation, ResNet-18: ReLU + truncation (quantized mode: the exact requantization, ReLU and "
          "4-bit clip fused)"), ("exact ReLU ≈ 480 bits + truncation by 12 bits: ≈ 20 bits (MSB known, "
                                 "one-LSB error) or ≈ 458 bits (exact)"), cxx,
         *(_activation_bits(r) for r in r18)),
    ]
    from aiompc.nn.networks import NETWORKS

    ratios = [q for q in bench_ratios(runs) if q["network"] == "none" and q["ot"] == "silent" and q["exact"]
              and not q["baseline_exact"] and q["model"] in NETWORKS]
    rows.append(("total communication, cheetah ÷ quantized", "3.5–23.4×", "HEQuant vs CrypTFlow2 / Cheetah / Iron",
                 ", ".join(f"{q['model']} {q['total']:.2f}×" for q in ratios) or NOT_MEASURED, ""))
    out = [("| quantity | published | source of the published figure | measured here: cheetah mode "
            "| measured here: quantized mode |"), "|---|---:|---|---:|---:|"]
    out += [f"| {' | '.join(row)} |" for row in rows]
    out += ["", "† not measured: see the discussion below." if not all(r50) else ""]
    return "\n".join(out)


# Cheetah's C++ (OpenCheetah, l = 37, one thread per party, loopback, unloaded 2-core machine like ours):
# ../shared/REFERENCE.md, "The reference C++ implementation measured on a machine like ours" and "Speed anchors".
CXX_SECONDS = {"resnet50": 123.5, "squeezenet": 40.7, "conv64x56": 0.45, "fc2048": 0.16}


def _wall_cell(run: dict | None) -> str:
    if run is None:
        return NOT_MEASURED
    t = run["total"]
    cpu = (f" ({t['cpu_server']:.1f} + {t['cpu_client']:.1f} CPU s)"
           if t.get("cpu_server") is not None and t.get("cpu_client") is not None else "")
    return f"{t['seconds']:.2f} s{cpu}"


def speed_section(runs: list[dict]) -> str:
    """Wall time of one inference per network and mode (headline runs; CPU seconds of the server and the client
    processes beside it) against Cheetah's C++ on the same kind of machine where REFERENCE.md has a figure.
    Model preparation (once per model, cached across inferences) is not in these seconds: each JSON's
    ``prepare`` has it."""
    # whole networks and single layers; the ReLU-budget variants (``resnet18:relu50000``) have their own table
    models = list(dict.fromkeys(r["model"] for r in runs if _headline(r) and ":" not in r["model"]))
    out = ["| network | cheetah mode: wall (CPU srv + cli) | quantized mode: wall (CPU srv + cli) "
           "| Cheetah's C++, one thread per party | quantized ÷ C++ | load average at the end of the run |",
           "|---|---:|---:|---:|---:|---|"]
    for model in models:
        ch, qu = _find(runs, model, "cheetah"), _find(runs, model, "quantized")
        if ch is None and qu is None:
            continue
        cxx = CXX_SECONDS.get(model)
        ratio = f"{qu['total']['seconds'] / cxx:.2f}×" if cxx and qu else "–"
        loads = [f"{r['mode']} {r['load'][0]:.1f}" for r in (ch, qu) if r and r.get("load")]
        out.append(f"| {model} | {_wall_cell(ch)} | {_wall_cell(qu)} | {f'{cxx} s' if cxx else 'no figure'} "
                   f"| {ratio} | {', '.join(loads) or '–'} |")
    return "\n".join(out) if len(out) > 2 else ""


HE_OPS = ("conv", "linear", "batchnorm")
"""Operators of the HE layers (the ``linear`` bytes): their shares are what the raw-bits floor counts."""


@functools.lru_cache(maxsize=None)
def _input_sizes(model: str) -> dict[str, int] | None:
    """Input values (one sample) of every node of ``model`` by name, from its float graph (a built-in network,
    or ``benchmarks/results/layers/<model>.onnx``); ``None`` when the model cannot be found."""
    sys.path.insert(0, str(ROOT))
    from aiompc.nn.networks import NETWORKS, network_onnx
    from aiompc.nn.onnx_import import load_onnx

    path = RESULTS / "layers" / f"{model}.onnx"
    if model in NETWORKS:
        graph = load_onnx(network_onnx(model, 0))
    elif path.is_file():
        graph = load_onnx(path)
    else:
        return None
    sizes: dict[str, int] = {}
    for node in graph.nodes:
        if node.inputs:
            shape = graph.shapes[node.inputs[0]]
            sizes[node.name] = int(functools.reduce(lambda a, b: a * b, shape, 1))
    return sizes


def raw_share_bits(run: dict) -> tuple[int, int, float] | None:
    """``(input values, output values, raw bytes)`` of a run's HE layers: every share that enters or leaves
    one, at the layer's ring width (the physical floor of the linear bytes); ``None`` if unknown."""
    sizes = _input_sizes(run["model"])
    if sizes is None:
        return None
    ins = outs = 0
    bits = 0
    for layer in run["layers"]:
        if layer["op"] not in HE_OPS or layer["name"] not in sizes:
            continue
        n_in = sizes[layer["name"]] * layer.get("samples", 1)
        ins, outs = ins + n_in, outs + layer["elements"]
        bits += (n_in + layer["elements"]) * layer["ring"]
    return (ins, outs, bits / 8) if bits else None


def raw_bits_table(runs: list[dict]) -> str:
    """One row per results file, model and mode of the headline runs: the linear bytes against the raw share
    bits (the bytes do not depend on the link, so one row per setting)."""
    lines = ["| run | model | mode | HE layers' input values | output values | raw share MiB | linear MiB "
             "| linear bytes ÷ raw share bits |", "|---|---|---|---:|---:|---:|---:|---:|"]
    seen = set()
    for r in runs:
        key = (r["_file"], r["model"], r["mode"])
        if key in seen or not _headline(r):
            continue
        raw = raw_share_bits(r)
        if raw is None:
            continue
        seen.add(key)
        ins, outs, nbytes = raw
        linear = r["total"]["linear_bytes"]
        lines.append(f"| {r['_file']} | {r['model']} | {r['mode']} | {ins} | {outs} | {nbytes / MIB:.2f} | {linear / MIB:.2f} "
                     f"| **{linear / nbytes:.1f}×** |")
    return "\n".join(lines) if seen else ""
def snl_section(runs: list[dict]) -> str:
    """ResNet-18 dense and ReLU-reduced (SNL / SENet budgets) in both modes, from the ``resnet18-snl-dense`` /
    ``resnet18-relu*`` runs: bytes split linear / non-linear, rounds, time, and HEQuant's claim beside the
    measured ratios ("" when the runs are missing)."""
    from aiompc.nn.bench import _cpu_cell, _total_bytes
    from aiompc.nn.modes import describe_check

    found = {}
    for tag in SNL_BUDGETS:
        for mode in ("cheetah", "quantized"):
            r = next((r for r in runs if r["_file"] == f"resnet18-{tag}" and r["mode"] == mode), None)
            if r is not None:
                found[tag, mode] = r
    if not found:
        return ""
    label = {"snl-dense": "dense", "relu100000": "100k ReLUs", "relu50000": "50k ReLUs"}
    out = ["| ResNet-18 (CIFAR-100 shapes) | mode | ReLUs kept | MiB total | linear MiB | non-linear MiB "
           "| non-linear ÷ dense | rounds (layers) | wall s | CPU s (server + client) | logits vs reference |",
           "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    for (tag, mode), r in found.items():
        t = r["total"]
        dense = found.get(("snl-dense", mode))
        share = f"{t['nonlinear_bytes'] / dense['total']['nonlinear_bytes']:.2f}" if dense else "–"
        out.append(f"| {label[tag]} | {mode} | {t.get('relus_kept', 0):,} / {t.get('relus', 0):,} "
                   f"| {_total_bytes(r) / MIB:.1f} | {t['linear_bytes'] / MIB:.1f} | {t['nonlinear_bytes'] / MIB:.1f} "
                   f"| {share} | {sum(row['rounds'] for row in r['layers'])} | {t['seconds']:.1f} | {_cpu_cell(t)} "
                   f"| {describe_check(r['check'])} |")
    dense_q = found.get(("snl-dense", "quantized"))
    out += ["", "| budget | cheetah at N ÷ dense quantized | cheetah at N ÷ quantized at N | HEQuant's claim |",
            "|---|---:|---:|---|"]
    for tag in SNL_BUDGETS:
        c, q = found.get((tag, "cheetah")), found.get((tag, "quantized"))
        if c is None:
            continue
        vs_dense = f"{_total_bytes(c) / _total_bytes(dense_q):.2f}×" if dense_q else "–"
        vs_same = f"{_total_bytes(c) / _total_bytes(q):.2f}×" if q else "–"
        out.append(f"| {label[tag]} | {vs_dense} | {vs_same} | 3.1–3.6× less communication than SNL / SENet |")
    return "\n".join(out)


def measured_section(runs: list[dict]) -> str:
    sys.path.insert(0, str(ROOT))
    from aiompc.nn.bench import bench_markdown, machine_info

    machines = {json.dumps(r.get("machine"), sort_keys=True) for r in runs if r.get("machine")}
    m = json.loads(min(machines)) if machines else machine_info()
    machine = (f"Machine: {m['cpus']} logical CPUs ({m['cpu']}), {m['memory_gib']} GiB memory, "
               f"Python {m['python']}, numpy {m['numpy']}; shared with other jobs while measuring, so seconds "
               "are an upper bound.")
    lines = [machine, ""]
    if len(machines) > 1:
        lines += ["(Runs from more than one machine: see each JSON file's `machine`.)", ""]
    lines += [bench_markdown(runs, per_layer=False), ""]
    sections = [  # (heading, table or "" when the runs have nothing for it)
        ("Distance to the floor (headline runs; raw share bits: every input and output share of the HE "
         "layers at its ring width, one inference):", raw_bits_table(runs)),
        ("Time of one inference against Cheetah's C++ (headline runs, two processes, no link emulation; "
         "this machine is shared, so each row is one run and an upper bound — medians of paired runs are "
         "in the sections above):", speed_section(runs)),
        ("Published figures beside the measured ones (left: published, from ../shared/REFERENCE.md; "
         "right: measured here, from the JSON results):", comparison_section(runs)),
        ("ReLU-reduced ResNet-18 (SNL / SENet budgets, issue 24; `--relu-budget N`: a fixed-seed random "
         "mask keeping N ReLUs, spread by layer size; the three runs back to back):", snl_section(runs)),
    ]
    for heading, table in sections:
        if table:
            lines += [heading, "", table, ""]
    lines += ["Per-layer tables and plots of each run:", ""]
    for stem in dict.fromkeys(r["_file"] for r in runs):
        cmd = " ".join(command(stem)) if stem in RUNS else "(not a canonical run)"
        codes = sorted({str(r.get("code")) for r in runs if r["_file"] == stem})
        lines.append(f"* `{stem}` (code {', '.join(codes)}): [tables](benchmarks/results/{stem}.md) · "
                     f"[plot](benchmarks/results/{stem}.png) · [JSON](benchmarks/results/{stem}.json) — `{cmd}`")
    return "\n".join(lines)


def cmd_report() -> int:
    runs = load_results()
    if not runs:
        print("no results in benchmarks/results; run `python benchmarks/networks.py run` first", file=sys.stderr)
        return 2
    text = DOC.read_text()
    if BEGIN not in text or END not in text:
        print(f"{DOC.name} lacks the {BEGIN} / {END} markers", file=sys.stderr)
        return 2
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    DOC.write_text(f"{head}{BEGIN}\n{measured_section(runs)}\n{END}{tail}")
    print(f"{DOC.name}: measured section rewritten from {len(runs)} runs", file=sys.stderr)
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run", help="run the canonical benchmarks (all, or the named ones)")
    r.add_argument("names", nargs="*", help=f"runs: {', '.join(RUNS)}")
    r.add_argument("--force", action="store_true", help="re-run even if the JSON exists")
    sub.add_parser("commands", help="print the exact aiompc bench commands")
    sub.add_parser("report", help="rewrite the measured section of BENCHMARKS.md")
    sub.add_parser("plots", help="redraw the PNG of every JSON in benchmarks/results")
    sub.add_parser("lsb-errors", help="plaintext effect of one-LSB requantization errors on the logits")
    lay = sub.add_parser("layers", help="per-layer HE bytes from the byte model (benchmarks/layer_table.py)")
    lay.add_argument("rest", nargs=argparse.REMAINDER, help="NETWORK [--mode M] [--json F] [--markdown F]")
    args = p.parse_args(argv)
    if args.cmd == "layers":
        sys.path.insert(0, str(ROOT / "benchmarks"))
        import layer_table

        return layer_table.main(args.rest)
    if args.cmd == "run":
        return cmd_run(args.names, args.force)
    if args.cmd == "commands":
        for run in RUNS:
            print(" ".join(command(run)))
        return 0
    if args.cmd == "plots":
        return cmd_plots()
    if args.cmd == "lsb-errors":
        return cmd_lsb_errors()
    return cmd_report()


def cmd_lsb_errors(samples: int = 16) -> int:
    """In the clear: how far the logits move when every requantized value may be one LSB low (what the
    approximate secure mode allows, e uniform in {-1, 0}), on the built-in CIFAR networks.  Prints a
    Markdown table; test data from ``numpy.random`` (seeded)."""
    import numpy as np

    from aiompc.nn import interpret
    from aiompc.nn.networks import network, network_inputs

    rng = np.random.default_rng(0)
    exact = interpret._requantize

    def one_lsb_low(node, x):  # type: ignore[no-untyped-def]
        y = exact(node, x)
        return np.maximum(y - rng.integers(0, 2, y.shape), node.lo)

    print("| network | samples | max deviation / max logit | mean deviation / max logit | top-1 agreement |")
    print("|---|---:|---:|---:|---:|")
    for name in ("minionn", "resnet32", "resnet18"):
        g = network(name)
        x = g.quantize_input(network_inputs(name, samples, 1))
        ref = interpret.run_int(g, x)
        interpret._requantize = one_lsb_low
        try:
            approx = interpret.run_int(g, x)
        finally:
            interpret._requantize = exact
        top = float(np.abs(ref).max())
        dev = np.abs(approx - ref)
        agree = float(np.mean(approx.argmax(1) == ref.argmax(1)))
        print(f"| {name} | {samples} | {dev.max() / top:.0%} | {dev.mean() / top:.0%} | {agree:.0%} |")
    return 0


def cmd_plots() -> int:
    from aiompc.nn.bench import bench_plot

    for path in sorted(RESULTS.glob("*.json")):
        bench_plot(json.loads(path.read_text()), path.with_suffix(".png"))
        print(f"{path.with_suffix('.png').relative_to(ROOT)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
