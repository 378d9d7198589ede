"""XOR of 128-bit block arrays (numba, ``nogil``): ``out = a ⊕ b`` for ``(n, 2)`` uint64 arrays of any strides.

numpy's ``bitwise_xor`` on an ``(n, 2)`` view whose rows are not adjacent (every other child of a GGM tree
level, rows 32 bytes apart) runs an inner loop of length 2 per row, which costs far more than the XOR;
this kernel walks the rows once whatever the strides.
"""

from __future__ import annotations

import numpy as np

from aiompc.kernels.jit import kernel

__all__ = ["xor_blocks_into"]


@kernel()
def xor_blocks_into(a: np.ndarray, b: np.ndarray, out: np.ndarray) -> None:  # pragma: no cover - compiled
    """``out[i] = a[i] ⊕ b[i]`` for ``(n, 2)`` uint64 arrays (``out`` may alias ``a`` or ``b`` row for row)."""
    for i in range(a.shape[0]):
        out[i, 0] = a[i, 0] ^ b[i, 0]
        out[i, 1] = a[i, 1] ^ b[i, 1]
