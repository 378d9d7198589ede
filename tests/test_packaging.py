"""The installed package as a user gets it: a wheel built from this tree, installed into a fresh virtual
environment, runs ``aiompc demo`` with the model it carries as package data; the layering holds."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _run(cmd: list[str], cwd: Path, **kw: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=600, **kw)  # type: ignore[call-overload]


@pytest.mark.slow
def test_wheel_installs_and_runs_the_demo(tmp_path: Path) -> None:
    src = tmp_path / "src"  # build from a copy: a build writes build/ and *.egg-info beside the sources
    shutil.copytree(ROOT, src, ignore=shutil.ignore_patterns(".git", ".venv*", "build", "*.egg-info", "__pycache__",
                                                             "results", "tests"))
    wheels = tmp_path / "wheels"
    built = _run([sys.executable, "-m", "pip", "wheel", str(src), "--no-deps", "--no-build-isolation", "-q",
                  "-w", str(wheels)], cwd=tmp_path)
    assert built.returncode == 0, built.stderr
    (wheel,) = wheels.glob("aiompc-*.whl")

    venv = tmp_path / "venv"
    assert _run([sys.executable, "-m", "venv", "--without-pip", str(venv)], cwd=tmp_path).returncode == 0
    py = venv / "bin" / "python"
    site = Path(_run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                     cwd=tmp_path).stdout.strip())
    # the dependencies come from this test environment (no network); the package itself only from the wheel
    (site / "deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    installed = _run([sys.executable, "-m", "pip", "--python", str(py), "install", "--no-deps", "-q", str(wheel)]
                     if _pip_has_python_option() else
                     [sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(site), str(wheel)],
                     cwd=tmp_path)
    assert installed.returncode == 0, installed.stderr
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}

    where = _run([str(py), "-c", "import aiompc.nn.zoo as z; print(z.DIGITS_ONNX)"], cwd=tmp_path, env=env)
    assert where.returncode == 0, where.stderr
    assert Path(where.stdout.strip()).is_file()
    assert Path(where.stdout.strip()).is_relative_to(site), "the model must come from the installed wheel"
    shipped = _run([str(py), "-c", "import aiompc.nn.zoo as z; print(*(z.shipped_model(n).with_suffix(s) "
                    "for n in z.SHIPPED_MODELS for s in ('.onnx', '.json')), sep='\\n')"], cwd=tmp_path, env=env)
    assert shipped.returncode == 0, shipped.stderr
    files = [Path(f) for f in shipped.stdout.split()]
    assert any(f.name == "digits_vit.onnx" for f in files)  # every shipped model and card, the ViT's included
    for f in files:
        assert f.is_file() and f.is_relative_to(site), f
    page = _run([str(py), "-c", "import importlib.resources as r; d = r.files('aiompc.nn.web') / 'static'; "
                 "print(*(d / f for f in ('index.html', 'app.js', 'style.css')), sep='\\n')"], cwd=tmp_path, env=env)
    assert page.returncode == 0, page.stderr
    for f in page.stdout.split():  # the browser demo's page (aiompc demo --web) is package data too
        assert Path(f).is_file() and Path(f).is_relative_to(site), f
    for generic in ("protocols", "transports"):
        probe = _run([str(py), "-c", f"import {generic}"], cwd=tmp_path, env=env)
        assert probe.returncode != 0 and "ModuleNotFoundError" in probe.stderr, f"'import {generic}' must fail"

    script = venv / "bin" / "aiompc"
    if not script.exists():  # pip --target installs no scripts: call the same entry point
        script = None
    cmd = [str(script)] if script else [str(py), "-c", "import sys, aiompc.cli; sys.exit(aiompc.cli.main())"]
    demo = _run([*cmd, "demo", "--samples", "1"], cwd=tmp_path, env=env)
    assert demo.returncode == 0, demo.stderr
    assert "| sample | label | secure prediction |" in demo.stdout
    assert "logits equal the integer reference bit for bit: True" in demo.stdout


def _pip_has_python_option() -> bool:
    out = _run([sys.executable, "-m", "pip", "--version"], cwd=ROOT).stdout.split()
    major, minor = (int(x) for x in out[1].split(".")[:2])
    return (major, minor) >= (22, 3)


_LINT = "import sys; from importlinter.cli import lint_imports; sys.exit(lint_imports(config_filename='pyproject.toml'))"


def test_layers_contracts_hold() -> None:
    """import-linter's contracts in pyproject.toml (every layer imports only downwards).  In a subprocess:
    import-linter reconfigures logging, which would leak into other tests."""
    out = _run([sys.executable, "-c", _LINT], cwd=ROOT)
    assert out.returncode == 0, out.stdout + out.stderr


@pytest.mark.parametrize("module, upward", [
    ("aiompc/crypto/prg.py", "import aiompc.session"),          # crypto must not know the runtime
    ("aiompc/transports/tcp.py", "import aiompc.channel"),      # transports know bytes only
    ("aiompc/protocols/linear/conv.py", "import aiompc.protocols.ot"),  # HE layers never touch OT
    ("aiompc/protocols/linear/conv.py", ""),  # control: the unmodified copy passes
])
def test_an_upward_import_breaks_the_contracts(tmp_path: Path, module: str, upward: str) -> None:
    """The contracts can fail: a copy of the package with one import pointing up is rejected."""
    copy = tmp_path / "aiompc"
    shutil.copytree(ROOT / "aiompc", copy, ignore=shutil.ignore_patterns("__pycache__", "models"))
    target = copy / module.removeprefix("aiompc/")
    target.write_text(upward + "\n" + target.read_text())
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    out = _run([sys.executable, "-c", _LINT], cwd=tmp_path, env=env)
    if not upward:
        assert out.returncode == 0, out.stdout + out.stderr
        return
    assert out.returncode != 0, out.stdout
    assert "BROKEN" in out.stdout


def test_import_he_loads_no_runtime() -> None:
    """The HE math imports without the session, the channel or any transport."""
    code = ("import sys, aiompc.crypto.he; "
            "bad = sorted(m for m in sys.modules if m.startswith(('aiompc.session', 'aiompc.channel', "
            "'aiompc.party', 'aiompc.transports', 'aiompc.nn', 'aiompc.protocols'))); print(bad)")
    out = _run([sys.executable, "-c", code], cwd=ROOT)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_import_aiompc_is_cheap() -> None:
    """``import aiompc`` loads the errors and nothing of the runtime (and not numpy)."""
    code = "import sys, aiompc; print(sorted(m for m in sys.modules if m.startswith(('aiompc.', 'numpy'))))"
    out = _run([sys.executable, "-c", code], cwd=ROOT)
    assert out.stdout.strip() == "['aiompc.errors']", out.stdout + out.stderr
