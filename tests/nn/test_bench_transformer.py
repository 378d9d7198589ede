"""End to end on the transformers: ``aiompc bench bert-tiny`` runs Iron's fixed-point baseline and the quantized
program in one run and splits their bytes by category; the shipped ViT's secure predictions equal its plaintext
integer program's (``aiompc eval``)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from aiompc.cli import main
from aiompc.nn.cost_categories import CATEGORIES
from aiompc.nn.evaluate import evaluate
from aiompc.nn.zoo import shipped_model


@pytest.mark.slow
def test_bench_bert_tiny_runs_both_modes_and_splits_the_bytes(tmp_path: Path) -> None:
    out, md = tmp_path / "b.json", tmp_path / "b.md"
    assert main(["bench", "bert-tiny", "--seq", "2", "--modes", "cheetah,quantized", "--network", "none",
                 "--json", str(out), "--markdown", str(md), "--summary"]) == 0
    runs = json.loads(out.read_text())
    assert [(r["model"], r["mode"], r["seq"]) for r in runs] == [("bert-tiny:seq2", "cheetah", 2),
                                                                 ("bert-tiny:seq2", "quantized", 2)]
    for r in runs:
        cats = r["categories"]
        assert list(cats) == list(CATEGORIES)
        assert sum(c["bytes"] for c in cats.values()) == r["total"]["bytes_c2s"] + r["total"]["bytes_s2c"]
        # every transformer function communicates, in both programs
        assert all(cats[c]["bytes"] > 0 and cats[c]["rounds"] > 0 for c in ("matmul", "softmax", "gelu", "layernorm"))
        assert r["check"]["argmax_agree"] == 1.0
    fixed, quantized = runs
    assert fixed["graph"] == "fixed-point" and quantized["graph"] == "quantized"
    assert quantized["check"]["max_abs_diff_lsb"] == 0  # exact: bit for bit the integer program
    text = md.read_text()
    assert "Transformer runs by category" in text and "| bert-tiny:seq2 | quantized |" in text


@pytest.mark.slow
def test_the_vit_secure_predictions_equal_its_integer_program() -> None:
    report = evaluate(shipped_model("digits_vit"), "digits", samples=3, modes="plaintext-int,quantized",
                      progress=False, warmup=False)
    plain, secure = report["plaintext-int"], report["quantized"]
    assert secure.program_check["max_abs_diff_lsb"] == 0
    assert np.array_equal(secure.predictions, plain.predictions)
