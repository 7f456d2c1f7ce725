"""Replaying the dead-letter queue, once whatever made those messages fail is fixed.

    python -m callbot.common.messaging.replay --dry-run   # list the dead letters, change nothing
    python -m callbot.common.messaging.replay             # send every dead letter back
    python -m callbot.common.messaging.replay --queue callbot.persistence.events --limit 10

Each dead letter goes back to the queue it died in (the broker's `x-death`
header names it; an RPC server's copy carries `x-callbot-dead-letter-queue`),
with its body and properties as they were and the death headers dropped, so
the queue's delivery limit counts afresh. It is published with a broker
confirm and taken off the dead-letter queue only then. A dead letter whose
queue is gone (a dialog replica's own queue dies with the replica) stays where
it is. Reads `RABBITMQ_URL` and `RABBITMQ_NAMESPACE` as the services do.

Exit status: 0 when every selected dead letter was replayed (or listed, with
`--dry-run`), 1 when some stayed, 2 when there is no dead-letter queue.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import aio_pika
from aio_pika.abc import AbstractIncomingMessage

from callbot.common.messaging.connection import connect_once
from callbot.common.messaging.topology import (
    DEAD_LETTER_QUEUE_HEADER,
    DEAD_LETTER_REASON_HEADER,
    Topology,
)
from callbot.common.settings import Settings, load_settings

# Headers about the message's deaths and deliveries: a replay starts afresh.
_DEATH_HEADERS: tuple[str, ...] = (
    "x-death",
    "x-first-death-",
    "x-last-death-",
    "x-delivery-count",
    DEAD_LETTER_QUEUE_HEADER,
    DEAD_LETTER_REASON_HEADER,
)


@dataclass(frozen=True)
class DeadLetter:
    """What the dead-letter queue knows about one message."""

    queue: str | None  # where it died, and where a replay sends it
    reason: str
    deaths: int
    routing_key: str
    message_id: str | None
    message_type: str | None
    call_id: str | None

    def describe(self) -> str:
        return (
            f"queue={self.queue} reason={self.reason!r} deaths={self.deaths} "
            f"routing_key={self.routing_key} type={self.message_type} "
            f"call_id={self.call_id} message_id={self.message_id}"
        )


@dataclass
class ReplayOutcome:
    replayed: list[DeadLetter] = field(default_factory=list)
    kept: list[tuple[DeadLetter, str]] = field(default_factory=list)  # and why
    listed: list[DeadLetter] = field(default_factory=list)  # --dry-run

    @property
    def complete(self) -> bool:
        """Every selected dead letter was replayed (none was kept for a failure)."""
        return not any(why != "not selected" for _, why in self.kept)


def _text(value: object) -> str | None:
    if isinstance(value, bytes):
        return value.decode(errors="replace")
    return None if value is None else str(value)


def dead_letter_of(message: AbstractIncomingMessage) -> DeadLetter:
    headers: Mapping[str, Any] = message.headers or {}
    deaths = headers.get("x-death")
    if isinstance(deaths, list) and deaths and isinstance(deaths[0], Mapping):
        latest = deaths[0]  # the broker puts the latest death first
        queue = _text(latest.get("queue"))
        reason = _text(latest.get("reason")) or "unknown"
        count = latest.get("count")
        times = count if isinstance(count, int) else 1
    else:
        queue = _text(headers.get(DEAD_LETTER_QUEUE_HEADER))
        reason = _text(headers.get(DEAD_LETTER_REASON_HEADER)) or "unknown"
        times = 1
    return DeadLetter(
        queue=queue,
        reason=reason,
        deaths=times,
        routing_key=message.routing_key or "",
        message_id=message.message_id,
        message_type=message.type,
        call_id=_text(headers.get("call_id")),
    )


def replayed_copy(message: AbstractIncomingMessage) -> aio_pika.Message:
    headers = {
        name: value
        for name, value in (message.headers or {}).items()
        if not name.startswith(_DEATH_HEADERS)
    }
    return aio_pika.Message(
        message.body,
        headers=headers,
        content_type=message.content_type,
        content_encoding=message.content_encoding,
        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
        message_id=message.message_id,
        type=message.type,
        app_id=message.app_id,
        timestamp=message.timestamp,
    )


class NoDeadLetterQueue(LookupError):
    """The namespace has no dead-letter queue on this broker."""


async def replay_dead_letters(
    settings: Settings,
    *,
    queue: str | None = None,
    limit: int | None = None,
    dry_run: bool = False,
    report: Callable[[str], None] = print,
) -> ReplayOutcome:
    """One pass over the dead letters there are now: replay those selected
    (`queue`, at most `limit`), keep the others where they are."""
    topology = Topology(settings.rabbitmq_namespace)
    outcome = ReplayOutcome()
    connection = await connect_once(settings, "callbot-dlq-replay")
    async with connection:
        source = await connection.channel()
        try:
            dlq = await source.declare_queue(topology.dead_letter_queue, passive=True)
        except aio_pika.exceptions.ChannelClosed as exc:
            raise NoDeadLetterQueue(
                f"no queue {topology.dead_letter_queue!r} on this broker: "
                "is RABBITMQ_NAMESPACE (or --namespace) the services' namespace?"
            ) from exc
        present = dlq.declaration_result.message_count or 0
        # A returned (unroutable) publish raises: the queue it died in is gone.
        target = await connection.channel(publisher_confirms=True, on_return_raises=True)
        held: list[AbstractIncomingMessage] = []
        for _ in range(present):
            message = await dlq.get(no_ack=False, fail=False)
            if message is None:
                break
            letter = dead_letter_of(message)
            why = _why_not_replayed(letter, queue, limit, len(outcome.replayed), dry_run)
            if why is None:
                why = await _send_back(target, message, letter)
            if why is None:
                await message.ack()
                outcome.replayed.append(letter)
                report(f"replayed  {letter.describe()}")
                continue
            held.append(message)
            if why == "dry run":
                outcome.listed.append(letter)
                report(f"dead      {letter.describe()}")
            else:
                outcome.kept.append((letter, why))
                if why != "not selected":
                    report(f"kept      {letter.describe()}: {why}")
        for message in held:  # back in the dead-letter queue, untouched
            await message.nack(requeue=True)
    return outcome


def _why_not_replayed(
    letter: DeadLetter, queue: str | None, limit: int | None, replayed: int, dry_run: bool
) -> str | None:
    if (queue is not None and letter.queue != queue) or (limit is not None and replayed >= limit):
        return "not selected"
    if dry_run:
        return "dry run"
    if letter.queue is None:
        return "no header names the queue it died in"
    return None


async def _send_back(
    target: aio_pika.abc.AbstractChannel, message: AbstractIncomingMessage, letter: DeadLetter
) -> str | None:
    assert letter.queue is not None
    try:
        await target.default_exchange.publish(
            replayed_copy(message), routing_key=letter.queue, mandatory=True, timeout=10
        )
    except aio_pika.exceptions.DeliveryError:
        return f"queue {letter.queue!r} does not exist any more"
    except (aio_pika.exceptions.AMQPError, TimeoutError) as exc:
        return f"not confirmed by the broker: {exc!r}"
    return None


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m callbot.common.messaging.replay",
        description="Send the dead letters of a callbot namespace back to the queues they "
        "died in (RABBITMQ_URL, RABBITMQ_NAMESPACE).",
    )
    parser.add_argument("--namespace", help="default: $RABBITMQ_NAMESPACE, else 'callbot'")
    parser.add_argument("--queue", help="only the dead letters of this queue")
    parser.add_argument("--limit", type=int, help="replay at most this many")
    parser.add_argument("--dry-run", action="store_true", help="list them, change nothing")
    args = parser.parse_args(argv)
    settings = load_settings()
    if args.namespace:
        settings = settings.model_copy(update={"rabbitmq_namespace": args.namespace})
    try:
        outcome = asyncio.run(
            replay_dead_letters(settings, queue=args.queue, limit=args.limit, dry_run=args.dry_run)
        )
    except NoDeadLetterQueue as exc:
        print(exc, file=sys.stderr)
        return 2
    failed = [why for _, why in outcome.kept if why != "not selected"]
    print(
        f"{len(outcome.replayed)} replayed, {len(failed)} kept after a failure, "
        f"{len(outcome.listed)} listed, "
        f"{len(outcome.kept) - len(failed)} not selected"
    )
    return 0 if outcome.complete else 1


if __name__ == "__main__":
    sys.exit(main())
