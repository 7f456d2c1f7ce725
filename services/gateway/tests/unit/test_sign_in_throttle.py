"""Failed console sign-ins: per address, overall, and forgotten in time."""

from __future__ import annotations

from callbot.gateway.console.sign_in_throttle import OVERALL_FACTOR, SignInThrottle
from callbot.testkit.clocks import Ticks


def test_an_address_waits_once_it_failed_limit_times_within_the_window() -> None:
    clock = Ticks(1000.0)
    throttle = SignInThrottle(3, 60, clock=clock)
    for _ in range(3):
        assert throttle.retry_after_s("10.0.0.1") == 0
        throttle.failed("10.0.0.1")
        clock.now += 10
    # Failures at 1000, 1010, 1020; now 1030: the first ages out at 1060.
    assert throttle.retry_after_s("10.0.0.1") == 30
    assert throttle.retry_after_s("10.0.0.2") == 0  # another address is not held
    clock.now = 1060
    assert throttle.retry_after_s("10.0.0.1") == 0


def test_a_success_clears_the_address_count() -> None:
    throttle = SignInThrottle(2, 60, clock=Ticks(1000.0))
    throttle.failed("10.0.0.1")
    throttle.succeeded("10.0.0.1")
    throttle.failed("10.0.0.1")
    assert throttle.retry_after_s("10.0.0.1") == 0


def test_failures_from_many_addresses_hold_everyone() -> None:
    # Addresses come from X-Forwarded-For and can be forged: the overall cap holds.
    clock = Ticks(1000.0)
    throttle = SignInThrottle(2, 60, clock=clock)
    for n in range(2 * OVERALL_FACTOR):
        throttle.failed(f"forged-{n}")
    assert throttle.retry_after_s("10.9.9.9") == 60
    clock.now += 60
    assert throttle.retry_after_s("10.9.9.9") == 0


def test_memory_is_bounded_forgetting_the_address_that_failed_longest_ago() -> None:
    throttle = SignInThrottle(1, 60, max_addresses=2, clock=Ticks(1000.0))
    for address in ("a", "b", "c"):
        throttle.failed(address)
    assert throttle.retry_after_s("a") == 0  # forgotten
    assert throttle.retry_after_s("b") > 0
    assert throttle.retry_after_s("c") > 0
