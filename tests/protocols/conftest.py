"""Protocol-test switches shared by every protocol test directory.

Sessions that do not name their OT engine in their options use ``aiompc.protocols.ot.engines.DEFAULT_ENGINE``.
``AIOMPC_TEST_OT=<kind>`` (e.g. ``iknp``) pins that default for every protocol test, so a suite runs
unchanged on one chosen engine:

    AIOMPC_TEST_OT=iknp python -m pytest tests/protocols -q

(``tests/protocols/nonlinear`` overrides this fixture: it runs on every engine unless the variable pins one.)
"""

from __future__ import annotations

import os

import pytest


@pytest.fixture(autouse=True)
def _default_ot_engine(monkeypatch: pytest.MonkeyPatch) -> None:
    kind = os.environ.get("AIOMPC_TEST_OT")
    if kind:
        from aiompc.protocols.ot import engines

        monkeypatch.setattr(engines, "DEFAULT_ENGINE", kind)
