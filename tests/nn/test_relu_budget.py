"""ReLU budgets (``aiompc bench --relu-budget``): exactly N ReLUs kept, spread by layer size, reported per
layer in both modes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest

from aiompc.cli import main
from aiompc.errors import InputError
from aiompc.nn.onnx_import import load_onnx
from aiompc.nn.relu_budget import allocate_budget, apply_relu_budget, count_relus
from aiompc.nn.testing import random_network


@pytest.mark.parametrize("budget", [0, 1, 7, 100, 333])
def test_allocation_is_exact_and_proportional(budget: int) -> None:
    sizes = [200, 64, 64, 5]
    shares = allocate_budget(sizes, budget)
    assert sum(shares) == budget and all(0 <= s <= n for s, n in zip(shares, sizes))
    for s, n in zip(shares, sizes):
        assert abs(s - budget * n / sum(sizes)) < 1
    with pytest.raises(InputError, match="outside"):
        allocate_budget(sizes, sum(sizes) + 1)


def test_budget_keeps_exactly_n() -> None:
    g = load_onnx(random_network(1, blocks=("residual", "concat")).model)
    total = count_relus(g)
    reduced = apply_relu_budget(g, total // 3, seed=5)
    assert count_relus(reduced) == total // 3 and count_relus(g) == total  # the original is untouched
    assert {n.op for n in reduced.nodes} >= {"partial_relu"} and "relu" not in {n.op for n in reduced.nodes}
    again = apply_relu_budget(g, total // 3, seed=5)
    assert all(np.array_equal(a.params.get("mask", 0), b.params.get("mask", 0))
               for a, b in zip(reduced.nodes, again.nodes))  # a fixed seed gives the same masks


def test_bench_json_carries_the_kept_relus(tmp_path: Path) -> None:
    net = random_network(3, blocks=("residual",), input_shape=(1, 6, 6), head="gap", classes=3)
    model = tmp_path / "tiny.onnx"
    onnx.save(net.model, model)
    budget = 50
    out = tmp_path / "b.json"
    assert main(["bench", str(model), "--relu-budget", str(budget), "--modes", "cheetah,quantized", "--network",
                 "none", "--processes", "1", "--ot", "iknp", "--json", str(out), "--summary"]) == 0
    runs = json.loads(out.read_text())
    assert [r["mode"] for r in runs] == ["cheetah", "quantized"]
    for r in runs:
        assert r["relu_budget"] == budget and r["model"] == f"tiny:relu{budget}"
        rows = [row for row in r["layers"] if "relus" in row]
        assert rows and sum(row["relus_kept"] for row in rows) == budget == r["total"]["relus_kept"]
        assert all(row["relus_kept"] < row["relus"] for row in rows)
        assert r["check"]["max_abs_diff_lsb"] == 0 or not r["exact"]


def test_the_two_halves_of_a_partial_requantization_count_their_rounds_once() -> None:
    from aiompc.channel import LabelStats, Stats
    from aiompc.nn.report import _rounds

    halves = {"L/relu/cmp": LabelStats(msgs_sent=1, rounds=3), "L/id/cmp": LabelStats(msgs_sent=1, rounds=5)}
    assert _rounds(Stats(dict(halves)), "L") == 5  # concurrent: the longer one
    assert _rounds(Stats({**halves, "L/other": LabelStats(msgs_sent=1, rounds=2)}), "L") == 10  # not only halves
