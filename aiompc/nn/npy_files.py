"""Arrays from ``.npy`` files named on the command line, with one-line errors naming the file and what was
expected (instead of a traceback, or numpy's "contains pickled (object) data" for a file of another kind)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from aiompc.errors import InputError

__all__ = ["load_npy"]


def load_npy(path: str | Path, what: str, expected: str = "float inputs (N, *input_shape) or one sample") -> np.ndarray:
    """The numeric array saved in ``path`` (``numpy.save``), as float64.  Raises :class:`InputError` when the
    file is missing, not a ``.npy`` array, or not numbers; ``what`` names it (``"--input file"``)."""
    p = Path(path)
    if not p.is_file():
        raise InputError(f"{what} {str(p)!r} not found; expected a .npy file of {expected}")
    try:
        x = np.load(p, allow_pickle=False)
    except (ValueError, OSError, EOFError):  # numpy reads a non-.npy file as a pickle and says so
        raise InputError(f"{what} {str(p)!r} is not a numpy .npy array; expected {expected}, "
                         "written with numpy.save") from None
    if not isinstance(x, np.ndarray) or x.dtype.kind not in "fiub" or x.size == 0:
        kind = f"{x.dtype} of shape {x.shape}" if isinstance(x, np.ndarray) else type(x).__name__
        raise InputError(f"{what} {str(p)!r} holds {kind}; expected {expected}")
    return x.astype(np.float64)
