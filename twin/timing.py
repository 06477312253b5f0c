"""Timing the stages of a command, for its JSON summary and its progress bar."""

from __future__ import annotations

import time
from collections.abc import Callable


class StageTimer:
    """Seconds per named stage; each :meth:`lap` also reports the stage to ``step`` (a progress bar)."""

    def __init__(self, step: Callable[[str], None] = lambda _: None, *, digits: int = 4) -> None:
        self.timings: dict[str, float] = {}
        self._step = step
        self._digits = digits
        self._clock = time.perf_counter()

    def lap(self, name: str) -> None:
        now = time.perf_counter()
        self.timings[name] = round(now - self._clock, self._digits)
        self._clock = now
        self._step(name)
