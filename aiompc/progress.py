"""A minimal progress line on stderr for long runs (no dependency; silent when stderr is not a terminal
unless forced)."""

from __future__ import annotations

import sys
import time
from typing import TextIO

__all__ = ["Progress"]


class Progress:
    """``with Progress(total, "layers") as p: ... p.advance("conv1")`` draws ``[####    ] 3/8 conv1``."""

    def __init__(self, total: int, what: str = "", *, stream: TextIO | None = None, enabled: bool | None = None) -> None:
        self.total = max(1, total)
        self.done = 0
        self.what = what
        self.stream = stream or sys.stderr
        self.enabled = self.stream.isatty() if enabled is None else enabled
        self._start = time.perf_counter()

    def advance(self, note: str = "", step: int = 1) -> None:
        self.done += step
        if not self.enabled:
            return
        width = 24
        filled = int(width * min(self.done, self.total) / self.total)
        elapsed = time.perf_counter() - self._start
        self.stream.write(f"\r[{'#' * filled}{' ' * (width - filled)}] {self.done}/{self.total} {self.what} "
                          f"{elapsed:6.1f}s {note[:30]:<30}")
        self.stream.flush()

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, *exc: object) -> None:
        if self.enabled:
            self.stream.write("\n")
            self.stream.flush()
