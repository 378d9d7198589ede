"""``benchmarks/networks.py report``: the time table against Cheetah's C++ is read from the results, not written."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parents[1]


def _networks() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_networks", ROOT / "benchmarks" / "networks.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    return mod


def _run(model: str, mode: str, seconds: float, network: str = "none", load: list[float] | None = None) -> dict:
    return {"model": model, "mode": mode, "network": network, "ot": "silent", "exact": mode == "quantized",
            "layers": [], "load": load,
            "total": {"seconds": seconds, "cpu_server": seconds * 0.9, "cpu_client": seconds * 0.2}}


def test_speed_section_rows_and_ratios() -> None:
    nets = _networks()
    runs = [_run("resnet50", "cheetah", 247.0, load=[1.5, 1.0, 1.0]), _run("resnet50", "quantized", 185.25),
            _run("resnet18", "quantized", 11.0), _run("resnet18", "quantized", 99.0, network="wan"),
            _run("resnet18:relu50000", "quantized", 7.0)]
    text = nets.speed_section(runs)
    lines = text.splitlines()
    r50 = next(line for line in lines if line.startswith("| resnet50 "))
    assert "247.00 s (222.3 + 49.4 CPU s)" in r50 and "185.25 s" in r50
    assert "123.5 s" in r50 and f"{185.25 / 123.5:.2f}×" in r50 and "cheetah 1.5" in r50
    r18 = next(line for line in lines if line.startswith("| resnet18 "))
    # no C++ figure, the cheetah run missing, the WAN run not taken for the headline
    assert "no figure" in r18 and nets.NOT_MEASURED in r18 and "11.00 s" in r18 and "99.00" not in r18
    assert "relu50000" not in text  # budget variants have their own table
    assert nets.speed_section([]) == ""
