"""NTT form of sparse polynomials as a sum of monomial transforms, in one compiled pass (numba, ``nogil``).

A weight polynomial with coefficients ``c_e`` at a public exponent set ``E`` has the NTT form
``sum_e c_e · NTT(X^e)`` (mod ``p``).  :func:`monomial_combine_into` computes, for each polynomial ``b``,

    ``out[b, k] = (sum_e c[b, e] · mono[e, k]) mod p``

with ``c`` signed integers held in float64 and ``mono`` residues below ``p < 2**30`` held in float64; the caller
guarantees ``sum_e |c[b, e]| · (p − 1) < 2**53`` so every partial sum is an exact float64 integer.  The sum is
reduced once, ``r − ⌊r/p⌋·p`` (the float quotient is off by at most one: two corrections), and stored as
``uint32``.  One pass per output element, no temporaries: replaces a BLAS product followed by five numpy
passes (and, unlike BLAS, runs on as many threads as call it).  Zero coefficients are skipped (quantized
weights have many).  Work: ``nnz(c) · N`` fused multiply-adds plus ``B · N`` reductions.
"""

from __future__ import annotations

import numpy as np

from aiompc.kernels.jit import kernel

__all__ = ["monomial_combine_into"]


@kernel()
def monomial_combine_into(c: np.ndarray, mono: np.ndarray, p: np.float64, out: np.ndarray) -> None:  # pragma: no cover
    """``out[b, :] = (c[b] @ mono) mod p`` as ``uint32`` (see the module docstring for the exactness condition).

    ``c``: ``(B, E)`` float64 integers; ``mono``: ``(E, N)`` float64 residues; ``p``: the prime (float64);
    ``out``: ``(B, N)`` uint32 (may be a strided view, e.g. one prime of a ``(B, L, N)`` array).
    """
    n_b, n_e = c.shape
    n = mono.shape[1]
    acc = np.empty(n, dtype=np.float64)
    pinv = 1.0 / p
    for b in range(n_b):
        acc[:] = 0.0
        for e in range(n_e):
            v = c[b, e]
            if v != 0.0:
                row = mono[e]
                for k in range(n):
                    acc[k] += v * row[k]
        dst = out[b]
        for k in range(n):
            r = acc[k]
            r -= np.floor(r * pinv) * p
            if r < 0.0:
                r += p
            elif r >= p:
                r -= p
            dst[k] = np.uint32(r)
