"""Fixtures of the non-linear protocol tests (helpers live in nonlinear_helpers.py)."""

from __future__ import annotations

import numpy as np
import pytest


@pytest.fixture
def gen() -> np.random.Generator:
    """Test data only (protocol secrets come from aiompc.crypto.prg.PRG)."""
    return np.random.default_rng(20240611)
