"""``aiompc bench``: a tiny network in both modes over plain and LAN-shaped loopback TCP (JSON layout, bytes
from the channel, ratios, Markdown and PNG), each mode's graph and requantization setting, the link
wiring and bad arguments (the correctness check: ``test_modes.py``)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest

from aiompc.cli import main
from aiompc.errors import InputError
from aiompc.nn.loopback import link_wrapper as _wrapper
from aiompc.nn.bench import (LINKS, _merged_order, bench_markdown, bench_ratios, engine_config,
                              load_bench_model)
from aiompc.nn.fixed_point import fixed_point
from aiompc.nn.networks import network
from aiompc.nn.modes import MODES, EngineConfig, mode_named
from aiompc.nn.node_protocols import protocol_of
from aiompc.nn.testing import random_network
from aiompc.transports.memory import memory_pair
from aiompc.transports.shaped import LAN, WAN, ShapedTransport

RUN_KEYS = {"model", "mode", "network", "layers", "total"}
LAYER_KEYS = {"name", "op", "bytes_c2s", "bytes_s2c", "rounds", "seconds"}
TOTAL_KEYS = {"bytes_c2s", "bytes_s2c", "linear_bytes", "nonlinear_bytes", "offline_bytes", "key_bytes", "rounds",
              "seconds"}


@pytest.fixture(scope="module")
def tiny_onnx(tmp_path_factory: pytest.TempPathFactory) -> Path:
    net = random_network(3, blocks=("residual", "maxpool"), input_shape=(1, 6, 6), head="gap", classes=3)
    path = tmp_path_factory.mktemp("bench") / "tiny.onnx"
    onnx.save(net.model, path)
    return path


@pytest.fixture(scope="module")
def bench_outputs(tiny_onnx: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[list[dict], str, Path]:
    out = tmp_path_factory.mktemp("out")
    rc = main(["bench", str(tiny_onnx), "--modes", "cheetah,quantized", "--network", "none,lan", "--ot", "iknp",
               "--json", str(out / "b.json"), "--markdown", str(out / "b.md"), "--plot", str(out / "b.png")])
    assert rc == 0
    return json.loads((out / "b.json").read_text()), (out / "b.md").read_text(), out / "b.png"


def test_json_layout(bench_outputs: tuple[list[dict], str, Path]) -> None:
    runs, _, _ = bench_outputs
    assert [(r["mode"], r["network"]) for r in runs] == [
        ("cheetah", "none"), ("quantized", "none"), ("cheetah", "lan"), ("quantized", "lan")]
    for r in runs:
        assert RUN_KEYS <= set(r) and r["model"] == "tiny"
        # two processes by default
        assert set(r["total"]) == TOTAL_KEYS | {"processes", "cpu_server", "cpu_client", "relus_kept", "relus"}
        assert r["ot"] == "iknp" and r["samples"] == 1
        # the headline: Cheetah's fixed point with its approximate truncation, the quantized graph exact
        want = {"cheetah": ("fixed-point", False), "quantized": ("quantized", True)}[r["mode"]]
        assert (r["graph"], r["exact"]) == want
        assert r["planner"] == MODES[r["mode"]].planner.name
        assert r["machine"]["cpus"] >= 1 and (r["code"] is None or isinstance(r["code"], str))
        assert r["load"] is None or (len(r["load"]) == 3 and all(v >= 0 for v in r["load"]))
        # exact: the secure logits are the integer reference; approximate fixed point: within 1% of the
        # largest logit (the one-LSB truncation errors at 2^-12, propagated), same top class
        check = r["check"]
        assert check["argmax_agree"] == 1.0 and check["max_abs_logit_lsb"] > 0
        assert check["max_abs_diff_lsb"] == 0 if r["exact"] else \
            0 < check["max_abs_diff_lsb"] < 0.01 * check["max_abs_logit_lsb"]
        for row in r["layers"]:
            assert LAYER_KEYS <= set(row) and row["elements"] > 0
        t = r["total"]
        assert t["bytes_c2s"] > 0 and t["bytes_s2c"] > 0 and t["linear_bytes"] > 0 and t["nonlinear_bytes"] > 0
        assert t["seconds"] > 0 and t["rounds"] > 0
        # layer rows and the linear / non-linear split come from the same channel statistics as the total
        layer_bytes = sum(row["bytes_c2s"] + row["bytes_s2c"] for row in r["layers"])
        assert layer_bytes + t["offline_bytes"] <= t["bytes_c2s"] + t["bytes_s2c"]
        assert t["linear_bytes"] + t["nonlinear_bytes"] + t["key_bytes"] <= t["bytes_c2s"] + t["bytes_s2c"]
        assert t["key_bytes"] > 0  # at least one public key (and Galois keys where a layer packs its outputs)
        assert t["linear_bytes"] == sum(row["bytes_c2s"] + row["bytes_s2c"] for row in r["layers"]
                                        if row["op"] in ("conv", "linear", "affine"))
    # the ring widths differ: the cheetah baseline runs every layer on 37 bits, the quantized mode narrower
    assert {row["ring"] for row in runs[0]["layers"]} == {37}
    assert max(row["ring"] for row in runs[1]["layers"]) < 37
    # the baseline runs Cheetah's layers: ReLU, then a truncation costing tens of bits per value (the MSB is
    # known, no clip), where the quantized graph's requantizations are fused with the ReLU
    ops = {row["op"] for row in runs[0]["layers"] if row["bytes_c2s"] + row["bytes_s2c"]}
    assert {"relu", "requantize", "conv", "linear"} <= ops
    trunc = [row for row in runs[0]["layers"] if row["name"].startswith("trunc:")]
    relu = [row for row in runs[0]["layers"] if row["op"] == "relu"]
    def bits(rows: list[dict]) -> float:
        return 8 * sum(r["bytes_c2s"] + r["bytes_s2c"] for r in rows) / sum(r["elements"] for r in rows)

    assert trunc and bits(trunc) < 0.25 * bits(relu)


def test_link_changes_time_not_traffic(bench_outputs: tuple[list[dict], str, Path]) -> None:
    """The shaped link delays messages but must not change what crosses the socket."""
    runs, _, _ = bench_outputs
    for plain, lan in ((runs[0], runs[2]), (runs[1], runs[3])):
        assert plain["total"]["bytes_c2s"] == lan["total"]["bytes_c2s"]
        assert plain["total"]["bytes_s2c"] == lan["total"]["bytes_s2c"]
        assert [row["bytes_c2s"] + row["bytes_s2c"] for row in plain["layers"]] == \
               [row["bytes_c2s"] + row["bytes_s2c"] for row in lan["layers"]]


def test_ratio_and_markdown(bench_outputs: tuple[list[dict], str, Path]) -> None:
    runs, md, png = bench_outputs
    ratios = bench_ratios(runs)
    assert [(q["network"], q["ot"]) for q in ratios] == [("none", "iknp"), ("lan", "iknp")]
    c, q = runs[0]["total"], runs[1]["total"]
    expect = (c["bytes_c2s"] + c["bytes_s2c"]) / (q["bytes_c2s"] + q["bytes_s2c"])
    assert ratios[0]["total"] == pytest.approx(expect, abs=1e-3)
    assert expect > 1.0  # the low-precision mode moves fewer bytes than the 37-bit baseline
    assert f"**{ratios[0]['total']:.2f}×**" in md
    assert md.count("#### tiny · ") == 4 and "| **total** |" in md
    assert "cheetah · none · OT iknp · approx truncation" in md
    assert "quantized · none · OT iknp · exact requantization" in md
    assert "| tiny | none | iknp | approx ÷ exact | **" in md
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000


def test_ratios_pair_modes_per_setting() -> None:
    def run(mode: str, link: str, total: int, lin: int, non: int, sec: float) -> dict:
        return {"model": "m", "mode": mode, "network": link, "ot": "silent", "planner": "p", "layers": [], "exact": False,
                "total": {"bytes_c2s": total, "bytes_s2c": 0, "linear_bytes": lin, "nonlinear_bytes": non,
                          "offline_bytes": 0, "rounds": 1, "seconds": sec}}

    runs = [run("cheetah", "wan", 800, 500, 300, 4.0), run("quantized", "wan", 200, 100, 0, 2.0),
            run("quantized", "lan", 10, 5, 5, 1.0)]  # no cheetah row on lan: no ratio
    assert bench_ratios(runs) == [{"model": "m", "network": "wan", "ot": "silent", "exact": False,
                                   "baseline_exact": False, "total": 4.0, "linear": 5.0, "nonlinear": None,
                                   "seconds": 2.0}]
    md = bench_markdown(runs, per_layer=False)
    assert "| m | wan | silent | approx ÷ approx | **4.00×** | 5.00× | – | 2.00× |" in md
    # each system in its own setting: the ratio row says which (cheetah's truncation ÷ quantized requantization)
    runs.append({**run("cheetah", "lan", 30, 15, 15, 3.0), "exact": True})
    lan = [q for q in bench_ratios(runs) if q["network"] == "lan"]
    assert [(q["baseline_exact"], q["exact"], q["total"]) for q in lan] == [(True, False, 3.0)]
    assert "| m | lan | silent | exact ÷ approx | **3.00×** |" in bench_markdown(runs, per_layer=False)
    # other modes (cheetah-int) are never paired
    runs.append({**run("cheetah-int", "lan", 60, 15, 45, 3.0)})
    assert len(bench_ratios(runs)) == 2


def test_link_wrapping() -> None:
    a, _ = memory_pair()
    assert _wrapper("none")(a) is a
    for link, profile in (("lan", LAN), ("wan", WAN)):
        t = _wrapper(link)(a)
        assert isinstance(t, ShapedTransport) and t.link == profile and t.inner is a
    assert LINKS == ("none", "lan", "wan")
    with pytest.raises(InputError, match="none, lan, wan"):
        _wrapper("5g")


def test_builtin_model_loading() -> None:
    model = load_bench_model("MiniONN", samples=2)
    assert model.name == "minionn" and model.inputs.shape == (2, 3, 32, 32)
    quantized, fixed = model.graph("quantized"), model.graph("cheetah")
    assert model.graph("cheetah-int") is quantized and model.graph("cheetah") is fixed  # built once
    # the quantized graph is the built-in network's; the fixed-point one is of the same float model
    builtin = network("minionn")
    assert [n.name for n in quantized.nodes] == [n.name for n in builtin.nodes]
    assert all(np.array_equal(a.weight, b.weight)
               for a, b in zip(quantized.nodes, builtin.nodes) if protocol_of(a).kind == "he")
    assert quantized.float_graph is fixed.float_graph is model.float_graph
    reference = fixed_point(builtin.float_graph)
    assert all(np.array_equal(a.weight, b.weight) for a, b in zip(fixed.nodes, reference.nodes) if protocol_of(a).kind == "he")
    with pytest.raises(InputError, match="neither a built-in network"):
        load_bench_model("nope.onnx")
    with pytest.raises(InputError, match="unknown mode"):
        model.graph("fast")


def test_runs_split_their_bytes_by_category(bench_outputs: tuple[list[dict], str, Path]) -> None:
    """Every run carries its category split (cost_categories), which adds up to its total; a CNN has no
    transformer operators, so its bytes are matmul (the HE layers), rescale, other and setup, and the
    Markdown has no transformer table."""
    runs, md, _ = bench_outputs
    for r in runs:
        cats = r["categories"]
        assert sum(c["bytes"] for c in cats.values()) == r["total"]["bytes_c2s"] + r["total"]["bytes_s2c"]
        assert cats["matmul"]["bytes"] == r["total"]["linear_bytes"] > 0
        assert cats["softmax"]["bytes"] == cats["gelu"]["bytes"] == cats["layernorm"]["bytes"] == 0
        assert cats["offline_ot"]["bytes"] == r["total"]["offline_bytes"]
        assert r["seq"] is None
    assert "by category" not in md


def test_seq_only_for_builtin_transformers(tiny_onnx: Path) -> None:
    with pytest.raises(InputError, match="brings its own shape"):
        load_bench_model(str(tiny_onnx), seq=8)
    with pytest.raises(InputError, match="--seq applies"):
        load_bench_model("minionn", seq=8)


def test_the_seq_argument_parses() -> None:
    from aiompc.cli import build_parser

    args = build_parser().parse_args(["bench", "bert-tiny", "--seq", "128", "--modes", "cheetah,quantized"])
    assert (args.model, args.seq, args.modes) == ("bert-tiny", 128, "cheetah,quantized")
    assert build_parser().parse_args(["bench", "bert-tiny"]).seq is None  # the network's default, 32


def test_mode_settings() -> None:
    """--exact/--approx set the quantized graph's requantization, --baseline-truncation the cheetah mode's."""
    assert engine_config("cheetah") == EngineConfig(mode_named("cheetah", exact=False))
    assert engine_config("cheetah", exact=False, baseline_exact=True) == EngineConfig(mode_named("cheetah", exact=True))
    assert engine_config("quantized", baseline_exact=False) == EngineConfig(mode_named("quantized", exact=True))
    assert engine_config("cheetah-int", exact=False) == EngineConfig(mode_named("cheetah-int", exact=False))


def test_cheetah_int_and_exact_truncation(tiny_onnx: Path, tmp_path: Path) -> None:
    out = tmp_path / "r.json"
    assert main(["bench", str(tiny_onnx), "--modes", "cheetah,cheetah-int", "--baseline-truncation", "exact",
                 "--approx", "--ot", "iknp", "--json", str(out), "--summary"]) == 0
    fixed, old = json.loads(out.read_text())
    assert (fixed["mode"], fixed["graph"], fixed["exact"], fixed["planner"]) == \
        ("cheetah", "fixed-point", True, "cheetah-baseline")
    assert fixed["check"]["max_abs_diff_lsb"] == 0  # exact truncation: bit for bit the fixed-point reference
    assert (old["mode"], old["graph"], old["exact"], old["planner"]) == \
        ("cheetah-int", "quantized", False, "cheetah-baseline")
    assert {row["ring"] for row in old["layers"]} == {37}
    # the 4-bit graph's requantizations on 37 bits cost more per value than ReLU + truncation
    non = lambda r: r["total"]["nonlinear_bytes"]  # noqa: E731
    assert non(old) > non(fixed)


def test_merged_layer_order() -> None:
    assert _merged_order([["a", "r1", "b", "r2", "c"], ["a", "q1", "b", "c", "q3"]]) == \
        ["a", "r1", "q1", "b", "r2", "c", "q3"]


@pytest.mark.parametrize("argv, message", [
    (["bench", "minionn", "--modes", "cheetah,fast"], "--modes"),
    (["bench", "minionn", "--network", "none,5g"], "--network"),
    (["bench", "minionn", "--ot", "magic"], "--ot"),
    (["bench", "vgg99"], "built-in network"),
    (["bench", "minionn", "--samples", "0"], "at least 1"),
    (["bench", "minionn", "--weight-memory", "-1"], "--weight-memory"),
    (["bench", "minionn", "--seq", "8"], "--seq applies to the transformer"),
    (["bench", "bert-tiny", "--seq", "0"], "at least 1"),
])
def test_bad_arguments(argv: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(argv) == 2
    assert message in capsys.readouterr().err


def test_ratios_one_per_setting_same_run_first() -> None:
    """Merged result files: one ratio per (baseline, quantized) setting, pairing rows of the same run first."""
    def row(mode: str, exact: bool, total: int, f: str) -> dict:
        t = {"bytes_c2s": total, "bytes_s2c": 0, "linear_bytes": total // 2, "nonlinear_bytes": total // 2,
             "seconds": 1.0}
        return {"model": "m", "network": "none", "ot": "silent", "mode": mode, "exact": exact, "total": t,
                "_file": f}

    runs = [row("cheetah", False, 400, "a"), row("quantized", True, 100, "a"),
            row("cheetah", False, 300, "b"), row("quantized", False, 200, "b")]
    got = {(r["baseline_exact"], r["exact"]): r["total"] for r in bench_ratios(runs)}
    assert got == {(False, True): 4.0, (False, False): 1.5}  # a/a and b/b, not the cross-file pairs


def test_two_processes_measure_each_party_and_move_the_same_bytes(tiny_onnx: Path) -> None:
    """The server party in its own process (as on two machines): the same program, the same bytes on the
    wire as the one-process run, each party's CPU seconds reported."""
    from aiompc.nn.bench import run_bench

    model = load_bench_model(str(tiny_onnx))
    one, = run_bench(model, modes=("quantized",), ots=("iknp",), processes=1)
    two, = run_bench(model, modes=("quantized",), ots=("iknp",), processes=2)
    assert two["check"]["max_abs_diff_lsb"] == 0 and two["check"]["argmax_agree"] == 1.0
    for key in ("bytes_c2s", "bytes_s2c", "linear_bytes", "nonlinear_bytes", "rounds"):
        assert two["total"][key] == one["total"][key], key
    assert two["total"]["processes"] == 2 and two["total"]["cpu_server"] > 0 and two["total"]["cpu_client"] > 0
    assert one["total"]["processes"] == 1 and one["total"]["cpu_both"] > 0
    # the one-time model preparation is reported apart from the session (both layouts), and each process's memory
    server, client = two["prepare"]["server"], two["prepare"]["client"]
    assert server["layers"] == client["layers"] == server["kept"] == one["prepare"]["both"]["kept"] > 0
    assert server["bytes"] > 0 and client["bytes"] == 0 and server["cpu"] > 0
    assert two["peak_rss"]["server"] > 1 << 20 and two["peak_rss"]["client"] > 1 << 20
    assert "MiB kept" in bench_markdown([two], per_layer=False)
    assert "+" in bench_markdown([two], per_layer=False)  # the CPU column: server + client
    with pytest.raises(InputError, match="processes"):
        run_bench(model, modes=("quantized",), processes=3)
