"""Presenting an :class:`~aiompc.nn.evaluate.EvalReport`: a Markdown table and a PNG plot."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from aiompc.errors import InputError

if TYPE_CHECKING:  # pragma: no cover - types only
    from aiompc.nn.evaluate import EvalReport, ModeResult

__all__ = ["eval_markdown", "eval_plot"]


def _pct(v: float | None) -> str:
    return "–" if v is None else f"{100 * v:.2f}%"


def _versus(check: dict[str, Any] | None) -> str:
    """``equal``, or the largest deviation (in LSBs and relative to the largest logit) and the top-1 agreement."""
    if not check:
        return "–"
    diff, top, agree = check["max_abs_diff_lsb"], check["max_abs_logit_lsb"], check["argmax_agree"]
    if diff == 0:
        return "equal"
    rel = f" = {100 * diff / top:.3g}% of max" if top else ""
    return f"±{diff} LSB{rel}, top-1 {_pct(agree)}"


def _rescaling(r: ModeResult) -> str:
    if not r.secure:
        return "–"
    return ("exact" if r.exact else "approx") + (" truncation" if r.program == "fixed-point" else " requant")


def _program(r: ModeResult) -> str:
    return {"float": "float64", "quantized": "quantized int", "fixed-point": "fixed point (12 frac. bits)"}[r.program]


def eval_markdown(report: EvalReport) -> str:
    """The report as a heading line, a Markdown table (one row per mode) and a legend."""
    head = (f"model {Path(report.model).name} · dataset {report.dataset}: {report.samples} of {report.dataset_size} "
            f"test samples · secure modes in sessions of up to {report.batch} samples over loopback "
            f"{report.transport.upper()}")
    rows = [head, "",
            "| mode | program | rescaling | top-1 | = float | = int | logit err mean | logit err max | "
            "vs its program | KiB/sample | s/sample | median s/sample | CPU s/sample |",
            "|---|---|---|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|"]
    for r in report.rows:
        vs = _versus(r.program_check)
        kib = f"{r.bytes_per_sample / 1024:.1f}" if r.secure else "–"
        rows.append(f"| {r.mode} | {_program(r)} | {_rescaling(r)} | {_pct(r.accuracy)} | {_pct(r.agree_float)} | "
                    f"{_pct(r.agree_int)} | {r.logit_err_mean:.4g} | {r.logit_err_max:.4g} | {vs} | {kib} | "
                    f"{r.seconds_per_sample:.4f} | {r.median_seconds_per_sample:.4f} | {r.cpu_seconds_per_sample:.4f} |")
    rows += ["",
             "top-1: accuracy on the labels; = float / = int: same top-1 class as the float model / the plaintext "
             "integer (quantized) model; logit err: |logits − float logits| (float units); vs its program: the "
             "secure outputs against the plaintext program the mode runs (exact rescaling must be equal); "
             "KiB/sample: both directions from the client's channel statistics (handshakes and offline OT "
             "included); s/sample: wall clock over all sessions / samples, the median over sessions, and the CPU "
             "time of both parties (one process)."]
    return "\n".join(rows)


def eval_plot(report: EvalReport, path: str | Path) -> None:
    """A PNG: top-1 accuracy per mode, and bytes per sample of the secure modes.  Needs matplotlib
    (``pip install 'aiompc[plot]'``)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:  # pragma: no cover - depends on the environment
        raise InputError("--plot needs matplotlib: pip install 'aiompc[plot]'") from None
    names = [r.mode for r in report.rows]
    fig, (ax, axb) = plt.subplots(1, 2, figsize=(max(9.0, 2.2 * len(names)), 4.5))
    acc = [100 * r.accuracy for r in report.rows]
    bars = ax.bar(names, acc, color=["#888888" if not r.secure else "#3b75af" for r in report.rows])
    ax.bar_label(bars, labels=[f"{a:.1f}" for a in acc], fontsize=8)
    ax.set_ylim(max(0.0, min(acc) - 10), 100.5)
    ax.set_ylabel("top-1 accuracy (%)")
    ax.set_title(f"{Path(report.model).name} on {report.dataset} ({report.samples} samples)")
    secure = [r for r in report.rows if r.secure]
    if secure:
        kib = [r.bytes_per_sample / 1024 for r in secure]
        b = axb.bar([r.mode for r in secure], kib, color="#3b75af")
        axb.bar_label(b, labels=[f"{k:.0f}" for k in kib], fontsize=8)
    axb.set_ylabel("KiB per sample (both directions)")
    axb.set_title("communication of the secure modes")
    for a in (ax, axb):
        a.tick_params(axis="x", labelrotation=20)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
