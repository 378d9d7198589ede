"""Client-side diagnostics: the actual noise of a ciphertext whose plaintext is known.

Used by tests (measured noise never exceeds :func:`~.noise.estimate`) and by benchmarks.  Both need
the secret key, so they are client-only tools and never part of a protocol.
"""

from __future__ import annotations

import numpy as np

from .bfv import Ciphertext, as_plaintext, phase
from .keys import SecretKey
from .result import ResultCiphertext, result_phase
from .rns import centered_to_float, encode_scaled, mod_sub

__all__ = ["measure_noise", "measure_result_noise"]


def measure_noise(sk: SecretKey, ct: Ciphertext, m: np.ndarray) -> np.ndarray:
    """``c0 + c1·s − q_L·m/t`` (centered, float64, ``(B, N)``) for ciphertexts that should decrypt to ``m``.

    Computed exactly as ``[phase − round(q·m/t)]_q`` (centered, via limbs) plus the encoding rounding
    ``round(q·m/t) − q·m/t``; only the final conversion to float rounds.
    """
    params = ct.params
    mm = np.broadcast_to(as_plaintext(params, m), (ct.batch, params.n))
    enc = encode_scaled(mm, params.plain_bits, ct.basis)
    diff = centered_to_float(mod_sub(phase(sk, ct), enc, ct.basis.col), ct.basis)
    # round(q·m/t) − q·m/t = ([r >= t/2]·t − r)/t with r = q·m mod t
    t_mask = np.uint64(params.t - 1)
    r = (mm * np.uint64(ct.basis.q % params.t)) & t_mask
    up = (r >> np.uint64(params.plain_bits - 1)).astype(np.float64)
    return diff + up - r.astype(np.float64) / params.t


def measure_result_noise(sk: SecretKey, res: ResultCiphertext, m: np.ndarray) -> np.ndarray:
    """``c0 + c1·s − Q·m/t`` (centered mod ``Q``, float64, ``(B, n)``) for a result that should decrypt to ``m``.

    ``m`` holds the expected plaintext at the carried positions, shape ``(B, n)`` or ``(n,)``.
    """
    params = res.params
    phi = result_phase(sk, res).astype(np.uint64)
    mm = np.broadcast_to(np.asarray(m).astype(np.uint64) & np.uint64(params.t - 1), phi.shape)
    q1, l = res.modulus, params.plain_bits
    if q1 & (q1 - 1) == 0:
        k = q1.bit_length() - 1
        v = (phi - (mm << np.uint64(k - l))) & np.uint64(q1 - 1)
        vi = v.astype(np.float64) - np.where(v >= np.uint64(q1 // 2), float(q1), 0.0)
        return vi
    scaled = mm * np.uint64(q1)  # < 2**60: a prime result modulus only carries l < 30
    rounded = (scaled + np.uint64(params.t // 2)) >> np.uint64(l)
    v = (phi + np.uint64(q1) - rounded % np.uint64(q1)) % np.uint64(q1)
    vi = v.astype(np.float64) - np.where(v > np.uint64(q1 // 2), float(q1), 0.0)
    frac = (rounded << np.uint64(l)).astype(np.int64) - scaled.astype(np.int64)  # exact, |.| <= t/2
    return vi + frac / params.t
