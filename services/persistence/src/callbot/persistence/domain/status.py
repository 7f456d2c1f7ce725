"""Call-status ordering and how a call ended. Pure: no I/O.

Twilio may deliver status callbacks late, twice or out of order; its
`SequenceNumber` orders them. A status applies only when it is newer than the
one stored, and a terminal status is never replaced by a non-terminal one, so
any delivery order converges on the same final state.
"""

from __future__ import annotations

from typing import get_args

from callbot.common.calls import TERMINAL_STATUSES, CallStatus, EndedBy

_KNOWN_STATUSES: frozenset[str] = frozenset(get_args(CallStatus))

# `ended_by` values persistence infers itself when dialog said nothing; only this
# guess may later be corrected by a `call.ending` or a machine `answered_by`.
INFERRED_HANGUP: EndedBy = "callee_hangup"

# Recording statuses after which Twilio sends nothing newer for that recording.
FINAL_RECORDING_STATUSES: frozenset[str] = frozenset({"completed", "absent", "failed"})


def parse_call_status(value: str) -> CallStatus:
    """The status as the document stores it; raises ValueError for one Twilio never sends."""
    if value not in _KNOWN_STATUSES:
        raise ValueError(
            f"unknown call status {value!r}; expected one of {sorted(_KNOWN_STATUSES)}"
        )
    return value  # type: ignore[return-value]  # membership checked just above


def is_terminal(status: str | None) -> bool:
    return status in TERMINAL_STATUSES


def status_supersedes(
    stored_status: str | None,
    stored_seq: int | None,
    new_status: str,
    new_seq: int | None,
) -> bool:
    """Whether a status callback replaces the stored status.

    Newer means a higher `SequenceNumber`; a callback without one applies only
    while no numbered callback has been stored. A terminal status is final
    against every non-terminal one, whatever its number.
    """
    if is_terminal(stored_status) and not is_terminal(new_status):
        return False
    if stored_seq is None:
        return True
    return new_seq is not None and new_seq > stored_seq


def ended_by_for_terminal_status(status: CallStatus) -> EndedBy:
    """How a call ended when only its terminal status is known: busy, no-answer,
    failed and canceled speak for themselves; a completed call nobody else
    explained was hung up by the callee."""
    if status == "completed":
        return INFERRED_HANGUP
    if status in ("busy", "no-answer", "failed", "canceled"):
        return status
    raise ValueError(f"status {status!r} is not terminal: the call has not ended")


def recording_update_applies(stored_status: str | None, new_status: str | None) -> bool:
    """A recording callback replaces the stored one unless it would move a
    finished recording back to an unfinished state (callbacks can cross)."""
    return stored_status not in FINAL_RECORDING_STATUSES or new_status in FINAL_RECORDING_STATUSES
