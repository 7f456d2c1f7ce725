"""Pacing: how fast a campaign may place calls, shared by every replica.

A campaign has one slot schedule, `next_dial_at`, on its stored document: a
replica may place a call only when `now >= next_dial_at`, and takes the slot
by moving `next_dial_at` forward in the same atomic update. That is a token
bucket of depth one, so the rate holds across replicas without coordination
beyond MongoDB.

The spacing is `1 / calls_per_second` plus a guard (`PACING_GUARD`, 25%): the
rate is counted where the call arrives (Twilio's 1-second windows), after a
request whose latency varies (a MongoDB claim, gateway, its Twilio client);
without a guard, placements a few milliseconds closer than they left would
put one call too many into a window, and Twilio queues the excess. The guard
tolerates 250 ms of latency jitter in any second; at 10% the suite saw 9
calls in one second at a setting of 8 on a loaded 2-core machine. The number
of calls live at once is checked separately (`may_start_call`).

Pure: no I/O.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from callbot.common.campaigns import Pacing

PACING_GUARD = 0.25


def dial_spacing(pacing: Pacing) -> timedelta:
    """Time between two placements of one campaign."""
    return timedelta(seconds=(1.0 + PACING_GUARD) / pacing.calls_per_second)


def next_slot(pacing: Pacing, now: datetime) -> datetime:
    """Where `next_dial_at` moves when a replica takes the slot at `now`."""
    return now + dial_spacing(pacing)


def may_start_call(pacing: Pacing, live_calls: int) -> bool:
    """Another call may start with `live_calls` already dialing or in progress."""
    return live_calls < pacing.max_concurrent


def backoff_after(previous_s: float, retry_after_s: float | None) -> float:
    """Seconds the campaign waits after Twilio or gateway said "too many"
    (429 / 20429 / 503): what the answer asked for, else double the last wait,
    between 1 s and 60 s."""
    if retry_after_s is not None and retry_after_s > 0:
        return min(max(retry_after_s, 1.0), 60.0)
    return min(max(previous_s * 2, 1.0), 60.0)
