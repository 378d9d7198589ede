"""``aiompc linearize`` without the training extra, its argument checks and the shipped linearized model (no torch
needed here)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from aiompc.cli import main
from aiompc.errors import InputError
from aiompc.nn.interpret import run_float
from aiompc.nn.linearize import TRAIN_EXTRA, parse_budget, require_torch, training_split
from aiompc.nn.zoo import DIGITS_ONNX, digits_data


@pytest.mark.parametrize("missing", ["torch", "onnxscript"])
def test_without_torch_the_command_exits_2_and_says_what_to_install(missing, monkeypatch, capsys, tmp_path) -> None:
    monkeypatch.setitem(sys.modules, missing, None)  # makes "import torch" raise ImportError
    with pytest.raises(InputError, match=r"pip install 'aiompc\[train\]'"):
        require_torch()
    out = tmp_path / "out.onnx"
    assert main(["linearize", str(DIGITS_ONNX), "--budget", "192", "--dataset", "digits", "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert "InputError" in err and TRAIN_EXTRA in err and missing in err
    assert not out.exists()


def test_budget_is_a_count_or_a_share_within_the_relu_count() -> None:
    assert parse_budget("192", 768) == 192
    assert parse_budget(0, 768) == 0
    assert parse_budget("25%", 768) == 192
    assert parse_budget("100%", 768) == 768
    for bad in ("769", "-1", "101%", "many", "1.5"):
        with pytest.raises(InputError, match="--budget"):
            parse_budget(bad, 768)


def test_training_split_of_digits_is_disjoint_from_its_test_split() -> None:
    from aiompc.nn.datasets import load_dataset

    train, test = training_split("digits"), load_dataset("digits")
    assert (len(train), len(test)) == (1347, 450)
    flat = {row.tobytes() for row in test.x.reshape(len(test), -1)}
    assert sum(row.tobytes() in flat for row in train.x.reshape(len(train), -1)) < 5  # digits has a few duplicates


def test_a_npz_dataset_needs_training_data(tmp_path: Path) -> None:
    x = np.zeros((4, 1, 8, 8))
    y = np.arange(4)
    only_test = tmp_path / "test.npz"
    np.savez(only_test, x=x, y=y)
    with pytest.raises(InputError, match="x_train and y_train"):
        training_split(only_test)
    both = tmp_path / "both.npz"
    np.savez(both, x=x, y=y, x_train=x[:3] + 1, y_train=y[:3])
    train = training_split(both)
    assert train.x.shape == (3, 1, 8, 8) and train.y.tolist() == [0, 1, 2]
    bad = tmp_path / "bad.npz"
    np.savez(bad, x=x, y=y, x_train=x, y_train=y[:2])
    with pytest.raises(InputError, match="y_train"):
        training_split(bad)


def test_the_shipped_linearized_model_keeps_a_quarter_of_the_demo_relus() -> None:
    """digits_cnn_snl (examples/linearize_digits.py): 192 of the demo CNN's 768 ReLUs, per the card and the
    model as aiompc imports it; the accuracies of its card are recomputed by test_shipped_models."""
    import json

    from aiompc.nn.onnx_import import load_onnx
    from aiompc.nn.zoo import shipped_model

    path = shipped_model("digits_cnn_snl")
    card = json.loads(path.with_suffix(".json").read_text())
    graph = load_onnx(path)
    masks = [n.params["mask"] for n in graph.nodes if n.op == "partial_relu"]
    kept = [int(np.broadcast_to(m != 0, graph.shapes[n.output]).sum())
            for n, m in zip([n for n in graph.nodes if n.op == "partial_relu"], masks)]
    assert not any(n.op == "relu" for n in graph.nodes)
    assert kept == [layer["kept"] for layer in card["layers"]] and sum(kept) == card["kept_relus"] == 192
    assert card["total_relus"] == 768 == 4 * card["budget"]
    dense = load_onnx(DIGITS_ONNX)
    assert card["dense"]["float_accuracy"] == pytest.approx(
        np.mean(run_float(dense, digits_data().x_test).argmax(1) == digits_data().y_test))


def test_settings_out_of_range_are_input_errors(capsys, tmp_path) -> None:
    from aiompc.nn.linearize import SnlSettings

    for bad in ({"max_epochs": -1}, {"batch": 0}, {"lam": -0.5}, {"anneal": 0.9}, {"threshold": 1.0}):
        with pytest.raises(InputError, match="out of range"):
            SnlSettings(**bad)
    assert main(["linearize", str(DIGITS_ONNX), "--budget", "10", "-o", str(tmp_path / "o.onnx"), "--batch", "0"]) == 2
    assert "--batch" in capsys.readouterr().err
