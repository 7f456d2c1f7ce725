"""persistence exactly as `python -m callbot.persistence` runs it, plus the
service's `on_stored` hook writing each event's publish -> durable-write lag
to the file named by BENCH_LAG_FILE, one line per event:
`call_id EventClass seq lag_s` (seq: a `call.turn`'s last turn, -1 for other
events).

Started by bench/_harness.py in place of persistence (`python -m _persistence_lag`
with bench/ on PYTHONPATH). The lag is `occurred_at` (set by the publisher
just before it publishes) to the moment the write returned, on one machine's
clock.
"""

from __future__ import annotations

import os

from callbot.common.contracts import CallEvent, CallTurnRecorded, utcnow
from callbot.persistence.__main__ import main as run_persistence


def main() -> None:
    with open(os.environ["BENCH_LAG_FILE"], "a", buffering=1, encoding="utf-8") as sink:

        def record(event: CallEvent) -> None:
            seq = event.last_seq if isinstance(event, CallTurnRecorded) else -1
            lag_s = (utcnow() - event.occurred_at).total_seconds()
            sink.write(f"{event.call_id} {type(event).__name__} {seq} {lag_s:.6f}\n")

        run_persistence(on_stored=record)


if __name__ == "__main__":
    main()
