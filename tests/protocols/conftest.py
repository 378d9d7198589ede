"""Protocol-test switches shared by every protocol test directory.

``AIOMPC_TEST_OT=<kind>`` (e.g. ``silent``) runs every session that does not name its OT engine in
its options with that engine instead of the default IKNP, so a suite runs unchanged on another engine:

    AIOMPC_TEST_OT=silent python -m pytest tests/protocols/nonlinear -q
"""

from __future__ import annotations

import os

import pytest


@pytest.fixture(autouse=True)
def _default_ot_engine(monkeypatch: pytest.MonkeyPatch) -> None:
    kind = os.environ.get("AIOMPC_TEST_OT")
    if kind:
        from protocols.ot import engine

        monkeypatch.setattr(engine, "DEFAULT_ENGINE", kind)
