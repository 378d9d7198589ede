"""Shared fixtures: deterministic test-data generators and local two-party runs."""

from __future__ import annotations

import numpy as np
import pytest


@pytest.fixture
def nprng() -> np.random.Generator:
    """Test-data generator (never used for secrets: protocols use aiompc.crypto.prg.PRG)."""
    return np.random.default_rng(12345)
