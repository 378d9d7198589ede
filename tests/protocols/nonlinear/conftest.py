"""Fixtures of the non-linear protocol tests (helpers live in nonlinear_helpers.py).

Every coroutine test here runs once per OT engine of :data:`ENGINES` (test ids get ``silent`` /
``iknp``): the non-linear protocols must give the same results whichever engine produced their
correlated OTs.  ``AIOMPC_TEST_OT=<kind>`` pins one engine instead
(``AIOMPC_TEST_OT=iknp pytest tests/protocols/nonlinear``).
"""

from __future__ import annotations

import inspect
import os

import numpy as np
import pytest

ENGINES = ("silent", "iknp")
"""The OT engines the suite runs on (the library default first)."""
PINNED = os.environ.get("AIOMPC_TEST_OT") or None


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Coroutine tests (they run sessions) once per engine; pure tests (plans, tables) once."""
    if inspect.iscoroutinefunction(metafunc.function):
        metafunc.parametrize("_default_ot_engine", (PINNED,) if PINNED else ENGINES, indirect=True)


@pytest.fixture(autouse=True)
def _default_ot_engine(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str | None:
    """The default OT engine of this test's sessions (overrides tests/protocols/conftest.py's fixture)."""
    kind: str | None = getattr(request, "param", PINNED)
    if kind:
        from aiompc.protocols.ot import engines

        monkeypatch.setattr(engines, "DEFAULT_ENGINE", kind)
    return kind


@pytest.fixture
def ot_kind(_default_ot_engine: str | None) -> str:
    """The OT engine this run of the test uses (coroutine tests only)."""
    assert _default_ot_engine is not None, "ot_kind is only parametrised for coroutine tests"
    return _default_ot_engine


@pytest.fixture
def gen() -> np.random.Generator:
    """Test data only (protocol secrets come from aiompc.crypto.prg.PRG)."""
    return np.random.default_rng(20240611)
