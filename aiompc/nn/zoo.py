"""The demo model: a small CNN on scikit-learn's bundled 8x8 digits (no download).

``examples/train_digits.py`` trains it and writes ``aiompc/models/digits_cnn.onnx`` and
``aiompc/models/digits_cnn.json`` (package data, so an installed wheel carries them); this module holds what the script, the tests and the CLI demo must agree
on: the data split, the calibration batch and the quantization settings, and the two integer programs
of the model (:func:`digits_model`, quantized; :func:`digits_fixed_point`, Cheetah's fixed point).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from aiompc.nn.fixed_point import fixed_point
from aiompc.nn.ir import QGraph
from aiompc.nn.onnx_import import load_onnx
from aiompc.nn.quantize import QuantConfig, quantize

__all__ = ["DigitsData", "digits_data", "digits_model", "digits_fixed_point", "DIGITS_ONNX", "DIGITS_JSON",
           "SHIPPED_MODELS", "shipped_model", "model_file",
           "DIGITS_CONFIG", "VIT_CONFIG", "SPLIT_SEED", "TEST_FRACTION", "CALIBRATION_SAMPLES"]

MODELS = Path(__file__).resolve().parents[1] / "models"
DIGITS_ONNX = MODELS / "digits_cnn.onnx"
DIGITS_JSON = MODELS / "digits_cnn.json"
SPLIT_SEED = 2024
TEST_FRACTION = 0.25
CALIBRATION_SAMPLES = 256
DIGITS_CONFIG = QuantConfig(weight_bits=4, act_bits=4, input_bits=8, first_last_bits=8)
VIT_CONFIG = QuantConfig(weight_bits=8, act_bits=8, input_bits=8, first_last_bits=8)
"""The quantization of the shipped tiny ViT (``digits_vit``, ``examples/train_digits_vit.py``): 8-bit weights
and activations, so every Softmax, GELU and LayerNorm input is at most 8 bits wide (one table look-up by a
1-out-of-256 OT evaluates it exactly)."""


@dataclass(frozen=True)
class DigitsData:
    """The fixed split: float images ``(N, 1, 8, 8)`` in [0, 1] and int labels."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray

    @property
    def calibration(self) -> np.ndarray:
        """The first :data:`CALIBRATION_SAMPLES` training images: the quantizer's calibration batch."""
        return self.x_train[:CALIBRATION_SAMPLES]


def digits_data(seed: int = SPLIT_SEED, test_fraction: float = TEST_FRACTION) -> DigitsData:
    """scikit-learn's digits (1,797 images, pixel values 0..16 scaled to [0, 1]) split by a seeded,
    stratified shuffle."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    d = load_digits()
    x = (d.images / 16.0).astype(np.float64)[:, None, :, :]
    xtr, xte, ytr, yte = train_test_split(x, d.target, test_size=test_fraction, random_state=seed,
                                          stratify=d.target)
    return DigitsData(xtr, ytr.astype(np.int64), xte, yte.astype(np.int64))


def digits_model(path: str | os.PathLike[str] = DIGITS_ONNX, config: QuantConfig = DIGITS_CONFIG,
                 data: DigitsData | None = None) -> QGraph:
    """The quantized demo model: import the ONNX file and quantize it on the fixed calibration batch."""
    data = data or digits_data()
    return quantize(load_onnx(path), data.calibration, config)


def digits_fixed_point(path: str | os.PathLike[str] = DIGITS_ONNX) -> QGraph:
    """The demo model as Cheetah runs it: the float ONNX model in 37-bit fixed point with 12 fractional
    bits (:func:`~aiompc.nn.fixed_point.fixed_point`; no calibration involved)."""
    return fixed_point(load_onnx(path))


def digits_report(path: str | os.PathLike[str] = DIGITS_JSON) -> dict[str, Any]:
    """The accuracies and settings the training script recorded."""
    return json.loads(Path(path).read_text())


SHIPPED_MODELS = ("digits_cnn", "digits_resnet", "digits_resnet_qat", "digits_resnet_qat_low", "digits_maxpool",
                  "digits_cnn_snl", "digits_vit")
"""The trained models the package ships (``aiompc/models/<name>.onnx`` with its JSON card): the demo CNN
(``examples/train_digits.py``), a ResNet-style network and a max-pool CNN (``examples/train_digits_torch.py``,
float ONNX quantized by PTQ), and the ResNet after quantization-aware fine-tuning
(``examples/qat_digits_torch.py``, QDQ ONNX), plain and with one-LSB-low requantization errors injected
(``--inject-lsb 0.5 --inject-low``: tuned for approximate requantization), and the demo CNN with a quarter
of its ReLUs kept by a learned per-pixel mask (``examples/linearize_digits.py``, ``aiompc linearize``), and a
tiny vision transformer (2x2 patches, two pre-LN encoder layers of width 32, ``examples/train_digits_vit.py``,
exported by ``torch.onnx.export``; quantized with :data:`VIT_CONFIG`), all on the digits split of
:func:`digits_data`."""


def model_file(model: str | os.PathLike[str]) -> Path:
    """``model`` as a path: an existing file as given, else the ONNX file of the shipped model of that name
    (``aiompc eval digits_vit``); a name that is neither stays as given (the caller reports it missing)."""
    path = Path(model)
    if not path.is_file() and str(model) in SHIPPED_MODELS:
        return shipped_model(str(model))
    return path


def shipped_model(name: str) -> Path:
    """The ONNX file of the shipped model ``name`` (one of :data:`SHIPPED_MODELS`)."""
    if name not in SHIPPED_MODELS:
        from aiompc.errors import InputError

        raise InputError(f"unknown shipped model {name!r}; choose from {', '.join(SHIPPED_MODELS)}")
    return MODELS / f"{name}.onnx"
