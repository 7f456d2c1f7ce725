"""Failed console sign-ins, counted per client address and overall.

Past `limit` failures within `window_s`, an address is refused (gateway
answers 429 with `Retry-After`) until its oldest failure in the window ages
out; a successful sign-in clears its count. The address is the one uvicorn
reports, taken from `X-Forwarded-For` (gateway trusts its proxy), which a
client can forge: so past `OVERALL_FACTOR` x `limit` failures within the
window from all addresses together, every address waits. API keys are long
random strings, so this is defence in depth: guessing becomes a few tries per
window, and loud in the logs.

Each gateway process counts its own failures (replicas behind a balancer each
allow as many), in memory bounded to `max_addresses` (the address that failed
longest ago is forgotten first). Pure: the clock is given.
"""

from __future__ import annotations

import time
from collections import OrderedDict, deque
from collections.abc import Callable

MAX_ADDRESSES = 10_000
OVERALL_FACTOR = 10


class SignInThrottle:
    def __init__(
        self,
        limit: int,
        window_s: float,
        *,
        max_addresses: int = MAX_ADDRESSES,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._limit = limit
        self._window_s = window_s
        self._max_addresses = max_addresses
        self._clock = clock
        self._by_address: OrderedDict[str, deque[float]] = OrderedDict()
        self._overall: deque[float] = deque()

    def retry_after_s(self, address: str) -> float:
        """Seconds until `address` may try again; 0 when it may now."""
        return max(
            self._wait(self._recent(self._by_address.get(address, deque())), self._limit),
            self._wait(self._recent(self._overall), self._limit * OVERALL_FACTOR),
        )

    def failed(self, address: str) -> None:
        now = self._clock()
        failures = self._recent(self._by_address.get(address, deque()))
        failures.append(now)
        self._by_address[address] = failures
        self._by_address.move_to_end(address)
        while len(self._by_address) > self._max_addresses:
            self._by_address.popitem(last=False)
        self._recent(self._overall).append(now)

    def succeeded(self, address: str) -> None:
        self._by_address.pop(address, None)

    def _wait(self, failures: deque[float], limit: int) -> float:
        if len(failures) < limit:
            return 0.0
        return failures[-limit] + self._window_s - self._clock()

    def _recent(self, failures: deque[float]) -> deque[float]:
        """`failures` without those older than the window (in place)."""
        cutoff = self._clock() - self._window_s
        while failures and failures[0] <= cutoff:
            failures.popleft()
        return failures
