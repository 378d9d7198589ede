"""The kernels import and run when numba has nowhere to write its cache (read-only install and HOME)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

_PROBE = """
import numpy as np
from aiompc.crypto.he.ntt import get_ntt
from aiompc.crypto.ferret.lpn import LocalLinearCode
ntt = get_ntt(1024, (12289,))
a = np.arange(1024, dtype=np.uint64).reshape(1, 1024)
assert np.array_equal(ntt.inverse(ntt.forward(a)), a)
out = np.zeros((3, 2), np.uint64)
LocalLinearCode(bytes(16), 5, 3).encode_into(np.ones((5, 2), np.uint64), out)
from aiompc.crypto.he.rns import mod_mul  # the compiled ufuncs too
assert int(mod_mul(np.uint64(3), np.uint64(5), np.uint64(12289))) == 15
print("ok")
"""


@pytest.mark.slow
def test_kernels_work_without_a_writable_cache() -> None:
    # the only locator left (IPython's) finds no cache location outside IPython: numba would refuse cache=True
    env = dict(os.environ, NUMBA_CACHE_LOCATOR_CLASSES="IPythonCacheLocator")
    env.pop("NUMBA_CACHE_DIR", None)
    res = subprocess.run([sys.executable, "-c", _PROBE], env=env, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "ok"
