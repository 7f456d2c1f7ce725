"""A monotonic clock the test moves by hand (for code that takes `clock=`)."""

from __future__ import annotations


class Ticks:
    """Seconds, as `time.monotonic` gives them; set `now` to move on."""

    def __init__(self, now: float = 0.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now
