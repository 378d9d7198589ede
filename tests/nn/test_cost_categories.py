"""The transformer cost split: every IR op of a transformer program has its category, the categories' bytes add
up to the run's total, and the Markdown table shows them."""

from __future__ import annotations

from typing import Any

import pytest

from aiompc.nn.cost_categories import (CATEGORIES, LAYER_CATEGORIES, category_of, category_rows, category_split,
                                       is_transformer_run)
from aiompc.nn.ir import NODE_TYPES
from aiompc.nn.node_categories import NODE_CATEGORIES


def _run(rows: list[tuple[str, int, int, int, float]], *, setup: int = 0, offline: int = 0) -> dict[str, Any]:
    layers = [{"name": f"n{i}", "op": op, "bytes_c2s": c2s, "bytes_s2c": s2c, "rounds": r, "seconds": s}
              for i, (op, c2s, s2c, r, s) in enumerate(rows)]
    total = sum(c + s for _, c, s, _, _ in rows) + setup + offline
    return {"model": "m", "mode": "quantized", "network": "none", "ot": "silent", "layers": layers,
            "total": {"bytes_c2s": total - 7, "bytes_s2c": 7, "offline_bytes": offline, "rounds": 9, "seconds": 1.5}}


def test_rows_carry_their_category_or_get_their_node_types() -> None:
    """A row's own category wins (the engine records NODE_CATEGORIES'); a row without one (older results)
    gets its op's node type's; the output row and unknown ops are other."""
    want = {"matmul": "matmul", "matmul_shared": "matmul", "linear": "matmul", "conv": "matmul",
            "softmax_q": "softmax", "softmax_fx": "softmax", "lookup": "gelu", "gelu_fx": "gelu",
            "layernorm_q": "layernorm", "layernorm_fx": "layernorm", "feature_affine": "layernorm",
            "requantize": "rescale", "relu": "other", "maxpool": "other", "transpose": "other", "reveal": "other",
            "no_such_op": "other"}
    assert {op: category_of({"op": op}) for op in want} == want
    assert {NODE_CATEGORIES[NODE_TYPES[op]] for op in want if op in NODE_TYPES} <= set(LAYER_CATEGORIES)
    assert category_of({"op": "lookup", "category": "softmax"}) == "softmax"
    assert category_of({"op": "argmax", "category": "output"}) == "other"


def test_the_split_adds_up_to_the_total() -> None:
    run = _run([("matmul", 100, 50, 2, 0.5), ("requantize", 10, 20, 3, 0.1), ("softmax_q", 7, 8, 4, 0.2),
                ("lookup", 1, 2, 2, 0.05), ("layernorm_q", 30, 3, 6, 0.3), ("feature_affine", 4, 4, 2, 0.1),
                ("matmul_shared", 60, 60, 2, 0.4), ("transpose", 0, 0, 0, 0.0), ("relu", 5, 5, 1, 0.01)],
               setup=1000, offline=333)
    split = category_split(run)
    assert list(split) == list(CATEGORIES)
    assert sum(c["bytes"] for c in split.values()) == run["total"]["bytes_c2s"] + run["total"]["bytes_s2c"]
    assert split["matmul"] == {"bytes": 270, "rounds": 4, "seconds": 0.9, "layers": 2}
    assert split["layernorm"]["bytes"] == 41 and split["layernorm"]["layers"] == 2
    assert (split["softmax"]["bytes"], split["gelu"]["bytes"], split["rescale"]["bytes"]) == (15, 3, 30)
    assert split["other"] == {"bytes": 10, "rounds": 1, "seconds": 0.01, "layers": 1}  # the transpose sends nothing
    assert split["offline_ot"] == {"bytes": 333} and split["setup"] == {"bytes": 1000}
    assert is_transformer_run(run)
    assert not is_transformer_run(_run([("conv", 1, 1, 1, 0.1), ("relu", 1, 1, 1, 0.1)]))


@pytest.mark.parametrize("mode", ["quantized", "cheetah"])
def test_the_markdown_rows(mode: str) -> None:
    run = _run([("matmul", 1 << 20, 1 << 20, 2, 0.5), ("softmax_fx", 1 << 19, 0, 4, 0.25)], setup=1 << 19)
    run["mode"] = mode
    head, rule, row = category_rows([run])
    assert head.count("|") == rule.count("|") == row.count("|")
    cells = [c.strip() for c in row.split("|")[1:-1]]
    assert cells[:4] == ["m", mode, "none", "silent"]
    assert cells[4:4 + len(CATEGORIES)] == ["2.00", "0.50", "0.00", "0.00", "0.00", "0.00", "0.00", "0.50"]
    assert cells[4 + len(CATEGORIES)] == "3.00" and cells[-3] == "2 / 4 / 0 / 0 / 0 / 0" and cells[-1] == "1.50"
