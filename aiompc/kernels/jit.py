"""The one decorator of the compiled kernels: ``numba.njit(nogil=True, cache=True)``, robust to a read-only install.

``cache=True`` writes the machine code next to the module (``__pycache__``) or, if that is read-only, in
the user's cache directory, so a second process loads it instead of compiling again.  When neither is
writable (a read-only package and ``HOME``, e.g. in a locked-down container) numba refuses ``cache=True``
at import time; the kernels are then compiled once per process instead of failing to import.
``NUMBA_CACHE_DIR`` chooses the cache directory explicitly.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from numba import njit, vectorize

__all__ = ["kernel", "ufunc_kernel"]


def kernel(**options: Any) -> Callable[[Callable[..., Any]], Any]:
    """Decorator: ``njit(nogil=True, cache=True, **options)``, without ``cache`` if no cache location is writable."""

    def wrap(fn: Callable[..., Any]) -> Any:
        try:
            return njit(nogil=True, cache=True, **options)(fn)
        except RuntimeError as exc:  # numba: "cannot cache function ...: no locator available"
            if "cannot cache" not in str(exc):
                raise
            return njit(nogil=True, **options)(fn)

    return wrap


def ufunc_kernel(signatures: list[str]) -> Callable[[Callable[..., Any]], Any]:
    """Decorator: a compiled numpy ufunc (``numba.vectorize``, broadcasting like any ufunc; numpy runs its
    loop without the GIL), cached like :func:`kernel` and with the same fallback."""

    def wrap(fn: Callable[..., Any]) -> Any:
        try:
            return vectorize(signatures, nopython=True, cache=True)(fn)
        except RuntimeError as exc:
            if "cannot cache" not in str(exc):
                raise
            return vectorize(signatures, nopython=True)(fn)

    return wrap
