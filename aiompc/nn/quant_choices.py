"""The quantization a user chooses and sees: widths from the command line, calibration inputs from a
file or a named dataset (or, loudly, random ones), and the widths each layer got.

* :func:`add_quant_args` / :func:`quant_config`: ``--weight-bits``, ``--act-bits``, ``--first-last-bits``
  (``none``: no wider first/last layers) over :class:`~aiompc.nn.quantize.QuantConfig`'s HEQuant defaults
  (w4a4, 8-bit first and last layers, 8-bit input);
* :func:`load_calibration`: ``--calibration FILE.npy`` or ``--calibration digits`` (scikit-learn's bundled
  8x8 digits, the demo model's calibration batch);
* :func:`random_calibration`: what :func:`aiompc.nn.service.load_model` falls back to for a float model
  without calibration inputs, always with a :class:`RandomCalibrationWarning` (the CLI prints it as a
  ``NOTE``: scales calibrated on noise can cost accuracy);
* :func:`input_range_note`: inputs outside the range the model's input is quantized to (clipped: usually
  inputs scaled differently from the calibration data);
* :func:`layer_widths` / :func:`format_widths`: per layer, the weight width and the input and output
  activation widths of the integer program that runs (``run``/``serve`` print them; ``run --json`` carries
  them as ``"widths"``).
"""

from __future__ import annotations

import argparse
from typing import Any, Callable

import numpy as np

from aiompc.errors import InputError
from aiompc.nn.ir import QGraph, WeightedNode
from aiompc.nn.npy_files import load_npy

__all__ = ["DATASETS", "RANDOM_CALIBRATION_SAMPLES", "RandomCalibrationWarning", "add_quant_args", "quant_config",
           "load_calibration", "random_calibration", "layer_widths", "format_widths", "input_range_note"]

RANDOM_CALIBRATION_SAMPLES = 64


class RandomCalibrationWarning(UserWarning):
    """A float model was quantized on random inputs because no calibration inputs were given."""


def _digits() -> np.ndarray:
    from aiompc.nn.zoo import digits_data

    return digits_data().calibration


DATASETS: dict[str, Callable[[], np.ndarray]] = {"digits": _digits}
"""Named calibration sets: name -> a batch of typical float inputs."""


def _bits(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of bits") from None
    if not 2 <= v <= 16:
        raise argparse.ArgumentTypeError(f"{v} bits: choose 2..16")
    return v


def _bits_or_none(text: str) -> int | None:
    return None if text.lower() == "none" else _bits(text)


def add_quant_args(p: argparse.ArgumentParser) -> None:
    """``--weight-bits``, ``--act-bits``, ``--first-last-bits`` (quantized modes, float models)."""
    g = p.add_argument_group("quantization of a float model (QDQ models keep their own widths)")
    g.add_argument("--weight-bits", type=_bits, help="weight width of the inner layers (default 4)")
    g.add_argument("--act-bits", type=_bits, help="activation width (default 4)")
    g.add_argument("--first-last-bits", type=_bits_or_none, default=argparse.SUPPRESS,
                   help="weight and input width of the first and last layers (default 8; 'none': no exception)")


def quant_config(args: argparse.Namespace) -> Any:
    """The :class:`~aiompc.nn.quantize.QuantConfig` the flags ask for, or None when none was given (the
    model's own defaults then apply, e.g. the demo model's)."""
    from aiompc.nn.quantize import QuantConfig

    given = vars(args)
    kw: dict[str, Any] = {k: given[k] for k in ("weight_bits", "act_bits") if given.get(k) is not None}
    if "first_last_bits" in given:  # absent unless given (None: "none")
        kw["first_last_bits"] = given["first_last_bits"]
    return QuantConfig(**kw) if kw else None


def load_calibration(spec: str | None) -> np.ndarray | None:
    """Calibration inputs from ``--calibration``: a ``.npy`` file of float inputs ``(N, *input_shape)``, or
    the name of a dataset in :data:`DATASETS`; None for None.  Raises :class:`InputError` (one line, naming
    the file and what was expected)."""
    if spec is None:
        return None
    if spec in DATASETS:
        return DATASETS[spec]()
    x = load_npy(spec, "calibration file", "typical float inputs (N, *input_shape), or a dataset name "
                 f"({', '.join(DATASETS)})")
    if x.ndim < 2:
        raise InputError(f"calibration file {spec!r} holds shape {x.shape}; expected a batch (N, *input_shape)")
    return x


def random_calibration(input_shape: tuple[int, ...], samples: int = RANDOM_CALIBRATION_SAMPLES,
                       seed: int = 0) -> np.ndarray:
    """``samples`` standard normal inputs of ``input_shape`` (test data, not a secret: numpy's generator)."""
    return np.random.default_rng(seed).normal(0.0, 1.0, (samples, *input_shape))


def layer_widths(graph: QGraph) -> list[dict[str, Any]]:
    """Per HE layer of ``graph``: ``{"layer", "op", "weight_bits", "input_bits", "output_bits"}`` — the
    weight width, the width of the activation it reads and of its accumulator; and per requantization the
    activation width it produces (``weight_bits`` None)."""
    rows = []
    for n in graph.nodes:
        if isinstance(n, WeightedNode):
            x, y = graph.tensors[n.inputs[0]], graph.tensors[n.output]
            rows.append({"layer": n.name, "op": n.op, "weight_bits": n.weight_bits,
                         "input_bits": f"{'s' if x.signed else 'u'}{x.bits}",
                         "output_bits": f"{'s' if y.signed else 'u'}{y.bits}"})
        elif n.op == "requantize":
            x, y = graph.tensors[n.inputs[0]], graph.tensors[n.output]
            rows.append({"layer": n.name, "op": n.op, "weight_bits": None,
                         "input_bits": f"{'s' if x.signed else 'u'}{x.bits}",
                         "output_bits": f"{'s' if y.signed else 'u'}{y.bits}"})
    return rows


def format_widths(rows: list[dict[str, Any]]) -> str:
    """A Markdown table of :func:`layer_widths`."""
    lines = ["| layer | op | weight bits | input | output |", "|---|---|---:|---:|---:|"]
    for r in rows:
        w = "" if r["weight_bits"] is None else str(r["weight_bits"])
        lines.append(f"| {r['layer']} | {r['op']} | {w} | {r['input_bits']} | {r['output_bits']} |")
    return "\n".join(lines)


def input_range_note(graph: QGraph, x: np.ndarray) -> str | None:
    """A warning when float inputs ``x`` fall outside ``[lo * s, hi * s]``, the range the graph's input is
    quantized to (calibrated or from a QDQ annotation); None when all are inside."""
    spec = graph.input_spec
    if spec.scale is None or not spec.per_tensor:
        return None
    s = spec.scale[0]
    lo, hi = (spec.lo - 0.5) * s, (spec.hi + 0.5) * s  # rounding to the end values is not clipping
    x = np.asarray(x, dtype=np.float64)
    outside = int(np.count_nonzero((x < lo) | (x > hi)))
    if not outside:
        return None
    return (f"{outside} of {x.size} input values lie outside [{spec.lo * s:.4g}, {spec.hi * s:.4g}], the range "
            f"the model's input is quantized to (seen {x.min():.4g}..{x.max():.4g}); they are clipped. Are the inputs "
            "scaled like the calibration data?")
