"""aiompc.nn.eval_report: the Markdown table and the PNG plot of an EvalReport built by hand (every cell format:
percentages, missing values, the comparison with the mode's own program, rescaling, KiB only for secure modes)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from aiompc.nn.eval_report import eval_markdown, eval_plot
from aiompc.nn.evaluate import EvalReport, ModeResult


def _row(mode: str, program: str, secure: bool, exact: bool | None, check: dict[str, Any] | None, **kw: Any) -> ModeResult:
    base = dict(samples=4, accuracy=0.75, agree_float=1.0, agree_int=None if program == "float" else 0.5,
                logit_err_mean=0.012345, logit_err_max=1.5, bytes_per_sample=3 * 1024 if secure else 0.0,
                seconds_per_sample=0.25, cpu_seconds_per_sample=0.5, median_seconds_per_sample=0.2,
                predictions=np.zeros(4, dtype=np.int64))
    base.update(kw)
    return ModeResult(mode=mode, program=program, secure=secure, exact=exact, program_check=check, **base)


def _report() -> EvalReport:
    rows = [
        _row("plaintext-float", "float", False, None, None),
        _row("plaintext-int", "quantized", False, None, None),
        _row("quantized", "quantized", True, True, {"max_abs_diff_lsb": 0, "max_abs_logit_lsb": 90, "argmax_agree": 1.0}),
        _row("quantized:approx", "quantized", True, False,
             {"max_abs_diff_lsb": 3, "max_abs_logit_lsb": 90, "argmax_agree": 0.75}),
        _row("cheetah", "fixed-point", True, False, {"max_abs_diff_lsb": 2, "max_abs_logit_lsb": 0, "argmax_agree": 1.0},
             bytes_per_sample=1536.0),
        _row("cheetah:exact", "fixed-point", True, True, None, accuracy=1 / 3),
    ]
    return EvalReport(model="/some/dir/lenet.onnx", dataset="digits", samples=4, dataset_size=360, batch=2,
                      transport="tcp", rows=rows, labels=np.arange(4))


def _cells(table: str, mode: str) -> list[str]:
    (line,) = [ln for ln in table.splitlines() if ln.startswith(f"| {mode} |")]
    return [c.strip() for c in line.strip("|").split("|")]


def test_heading_and_one_row_per_mode() -> None:
    table = eval_markdown(_report())
    lines = table.splitlines()
    assert lines[0] == ("model lenet.onnx · dataset digits: 4 of 360 test samples · secure modes in sessions of up "
                        "to 2 samples over loopback TCP")
    header = [c.strip() for c in lines[2].strip("|").split("|")]
    assert header[0] == "mode" and len(header) == 13
    assert lines[3].count("|") == 14
    assert sum(ln.startswith("| ") for ln in lines) == 1 + 6  # header + a row per mode
    for r in _report().rows:
        assert len(_cells(table, r.mode)) == 13
    assert "exact rescaling must be equal" in lines[-1]


def test_cells_of_each_kind_of_mode() -> None:
    table = eval_markdown(_report())
    f = _cells(table, "plaintext-float")
    assert f[1:6] == ["float64", "–", "75.00%", "100.00%", "–"]
    assert f[6:9] == ["0.01235", "1.5", "–"] and f[9] == "–"  # 4 significant digits; no program check; no bytes
    assert f[10:] == ["0.2500", "0.2000", "0.5000"]
    i = _cells(table, "plaintext-int")
    assert i[1:3] == ["quantized int", "–"] and i[5] == "50.00%"
    q = _cells(table, "quantized")
    assert q[1:3] == ["quantized int", "exact requant"] and q[8] == "equal" and q[9] == "3.0"
    a = _cells(table, "quantized:approx")
    assert a[2] == "approx requant" and a[8] == "±3 LSB = 3.33% of max, top-1 75.00%"
    c = _cells(table, "cheetah")
    assert c[1:3] == ["fixed point (12 frac. bits)", "approx truncation"] and c[9] == "1.5"
    assert c[8] == "±2 LSB, top-1 100.00%"  # no relative part when the largest logit is 0
    e = _cells(table, "cheetah:exact")
    assert e[2] == "exact truncation" and e[3] == "33.33%" and e[8] == "–"


@pytest.mark.parametrize("secure_rows", [True, False])
def test_plot_writes_a_png(secure_rows: bool, tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    rep = _report()
    if not secure_rows:
        rep.rows = [r for r in rep.rows if not r.secure]
    out = tmp_path / "eval.png"
    eval_plot(rep, out)
    data = out.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000
    width = int.from_bytes(data[16:20], "big")
    assert width == int(max(9.0, 2.2 * len(rep.rows)) * 120)  # figsize x dpi
