"""Labelled test sets for :func:`aiompc.nn.evaluate.evaluate`: what the project can ship or read offline.

* ``digits`` — scikit-learn's bundled 8x8 digits (no download), the test split of
  :func:`aiompc.nn.zoo.digits_data` (450 images ``(1, 8, 8)`` in [0, 1]); its calibration batch is the
  first training images (:attr:`aiompc.nn.zoo.DigitsData.calibration`), never test images.
* a path to a ``.npz`` file with the inputs under ``x`` (or ``inputs``) and integer labels under ``y``
  (or ``labels``), optionally a ``calibration`` batch for quantizing a float model;
* a model's own test set (:func:`model_dataset`): ``MODEL.npz`` beside ``MODEL.onnx``, else the dataset
  its JSON card names (the shipped models: ``digits``).

Named datasets are looked up in the explicit table :data:`DATASETS`; anything else must be an existing
``.npz`` file.  Every problem (unknown name, missing file or key, shapes that do not fit) is an
:class:`~aiompc.errors.InputError` that says what to do.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from aiompc.errors import InputError

__all__ = ["Dataset", "DATASETS", "load_dataset", "model_dataset"]


@dataclass(frozen=True)
class Dataset:
    """A labelled test set: float inputs ``x`` ``(N, *input_shape)``, int64 labels ``y`` ``(N,)`` and an
    optional calibration batch (float, same sample shape) for quantizing float models."""

    name: str
    x: np.ndarray
    y: np.ndarray
    calibration: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.y)

    def head(self, n: int) -> "Dataset":
        """The first ``n`` samples (all of them if ``n`` is larger); the calibration batch is kept."""
        return Dataset(self.name, self.x[:n], self.y[:n], self.calibration)

    def check_shape(self, input_shape: tuple[int, ...]) -> None:
        """:class:`InputError` unless the samples (and the calibration batch) have shape ``input_shape``."""
        for what, arr in (("inputs", self.x), ("calibration inputs", self.calibration)):
            if arr is not None and tuple(arr.shape[1:]) != tuple(input_shape):
                raise InputError(f"dataset {self.name!r} has {what} of shape {tuple(arr.shape[1:])}; the model expects "
                                 f"{tuple(input_shape)} per sample: pick a dataset made for this model")


def _digits() -> Dataset:
    from aiompc.nn.zoo import digits_data

    d = digits_data()
    return Dataset("digits", d.x_test, d.y_test, d.calibration)


DATASETS: dict[str, Callable[[], Dataset]] = {"digits": _digits}
"""The named datasets (name -> loader of its test split)."""


def _pick(npz: np.lib.npyio.NpzFile, keys: tuple[str, ...], path: Path) -> np.ndarray:
    for k in keys:
        if k in npz.files:
            return np.asarray(npz[k])
    raise InputError(f"{path}: no array named {' or '.join(repr(k) for k in keys)} (found: {', '.join(npz.files) or 'none'}); "
                     "save the inputs as x and the labels as y: numpy.savez(F, x=inputs, y=labels)")


def _load_npz(path: Path) -> Dataset:
    try:
        with np.load(path, allow_pickle=False) as npz:
            x = _pick(npz, ("x", "inputs"), path)
            y = _pick(npz, ("y", "labels"), path)
            calibration = np.asarray(npz["calibration"], dtype=np.float64) if "calibration" in npz.files else None
    except (OSError, ValueError) as exc:
        raise InputError(f"{path}: not a readable .npz file ({exc}); write one with numpy.savez(F, x=inputs, y=labels)") from None
    if x.dtype.kind not in "fiu" or x.ndim < 2:
        raise InputError(f"{path}: x must be numeric inputs of shape (N, *input_shape), got {x.dtype} {x.shape}")
    if y.dtype.kind not in "iu" or y.ndim != 1 or len(y) != len(x):
        raise InputError(f"{path}: y must be {len(x)} integer class labels (one per input), got {y.dtype} {y.shape}")
    if len(x) == 0:
        raise InputError(f"{path}: the dataset is empty")
    return Dataset(path.name, x.astype(np.float64), y.astype(np.int64), calibration)


def load_dataset(spec: str | os.PathLike[str] | Dataset) -> Dataset:
    """The dataset ``spec``: a :class:`Dataset`, a name in :data:`DATASETS`, or a ``.npz`` file path."""
    if isinstance(spec, Dataset):
        return spec
    name = str(spec)
    if name in DATASETS:
        return DATASETS[name]()
    path = Path(name)
    if path.suffix != ".npz":
        raise InputError(f"unknown dataset {name!r}: use one of {', '.join(DATASETS)} or a .npz file of inputs x "
                         "and labels y")
    if not path.is_file():
        raise InputError(f"dataset file {name!r} not found")
    return _load_npz(path)


def model_dataset(model: str | os.PathLike[str]) -> str:
    """The test set a model brings: ``<model>.npz`` beside the ONNX file, else the dataset named in its
    JSON card (``"dataset"``, or the ``split`` of the shipped digits models); :class:`InputError` if neither."""
    import json

    path = Path(model)
    own = path.with_suffix(".npz")
    if own.is_file():
        return str(own)
    card = path.resolve().with_suffix(".json")
    try:
        info = json.loads(card.read_text()) if card.is_file() else {}
    except ValueError:
        info = {}
    name = info.get("dataset") if isinstance(info, dict) else None
    if name is None and isinstance(info, dict) and isinstance(info.get("split"), dict):
        name = {"sklearn.datasets.load_digits": "digits"}.get(info["split"].get("dataset"))
    if name in DATASETS:
        return str(name)
    raise InputError(f"{path.name} brings no test set ({own.name} beside it, or a JSON card naming a dataset); "
                     f"pass a dataset: {', '.join(DATASETS)} or a .npz file of inputs x and labels y")
