"""The page's input: 8×8 pixels in [0, 1], as the digits model expects (:mod:`aiompc.nn.zoo`).

The page downsamples a drawing the way scikit-learn's digits were made (a 32×32 bitmap counted in 4×4
blocks: 0..16 ink pixels per cell, divided by 16), so every value it sends is a multiple of 1/16; a
picked sample is sent as it is in the data set.  The app accepts any value in [0, 1].
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from aiompc.errors import InputError
from aiompc.nn.zoo import DigitsData

__all__ = ["SIDE", "parse_pixels", "sample_digits"]

SIDE = 8
"""The model's input is ``(1, SIDE, SIDE)``."""


def parse_pixels(value: Any) -> np.ndarray:
    """The batch ``(1, 1, 8, 8)`` (float64) of the page's pixels: 64 numbers, row by row, or 8 rows of 8.

    Raises :class:`InputError` for anything else: a wrong count, a non-number, a value outside [0, 1],
    or an empty canvas (every pixel 0: there is nothing to classify).
    """
    if isinstance(value, list) and len(value) == SIDE and all(isinstance(row, list) for row in value):
        value = [v for row in value for v in row]
    if not isinstance(value, list) or len(value) != SIDE * SIDE:
        raise InputError(f"expected {SIDE * SIDE} pixel values (an {SIDE}x{SIDE} image), got "
                         f"{len(value) if isinstance(value, list) else type(value).__name__}")
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in value):
        raise InputError("every pixel must be a finite number")
    x = np.asarray(value, dtype=np.float64).reshape(1, 1, SIDE, SIDE)
    if x.min() < 0.0 or x.max() > 1.0:
        raise InputError(f"pixel values must lie in [0, 1], got [{x.min():g}, {x.max():g}]")
    if not x.any():
        raise InputError("the canvas is empty: draw a digit or pick a sample first")
    return x


def sample_digits(data: DigitsData, classes: int = 10) -> list[dict[str, Any]]:
    """The first test image of each class ``0..classes-1``: ``{"label", "index", "pixels"}`` (64 floats).

    Test images, so the model never saw them in training."""
    out = []
    for label in range(classes):
        hits = np.flatnonzero(data.y_test == label)
        if len(hits):
            i = int(hits[0])
            out.append({"label": label, "index": i, "pixels": data.x_test[i].reshape(-1).tolist()})
    return out
