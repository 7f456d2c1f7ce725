"""Checking the rows of a campaign's list before anyone is called.

Each row ends either dialable (a normalised E.164 number and the zones it
rings in) or skipped with one reason. Duplicates are found by the caller
(across upload chunks, by a unique index); suppression and opt-outs by
looking the numbers up. This module decides what a single row is.

Pure: no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass
from zoneinfo import ZoneInfo

import phonenumbers

from callbot.campaigns.domain.calling_hours import UnknownTimezone, zones_for
from callbot.common.campaigns import RecipientRow, SkipReason


@dataclass(frozen=True)
class CheckedRow:
    row: RecipientRow
    to: str  # E.164 when valid; as given otherwise
    zones: tuple[ZoneInfo, ...]
    skip: SkipReason | None
    problem: str = ""  # for a skip: what was wrong, for the attempts listing


def check_row(row: RecipientRow) -> CheckedRow:
    to = row.to.strip()
    try:
        number = phonenumbers.parse(to, None)
    except phonenumbers.NumberParseException as exc:
        return CheckedRow(row, to, (), "invalid_number", f"not a phone number: {exc}")
    e164 = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
    if e164 != to or not phonenumbers.is_valid_number(number):
        return CheckedRow(
            row, to, (), "invalid_number", "not a valid number in E.164 form (+ and digits)"
        )
    try:
        zones = zones_for(e164, row.timezone)
    except UnknownTimezone as exc:
        return CheckedRow(row, e164, (), "unknown_timezone", str(exc))
    if not zones:
        return CheckedRow(
            row, e164, (), "unknown_timezone", "the number gives no time zone; add a timezone"
        )
    return CheckedRow(row, e164, zones, None)


def skip_reason(checked: CheckedRow, *, suppressed: bool, opted_out: bool) -> SkipReason | None:
    """The reason a checked row is not dialed, the row's own problem first."""
    if checked.skip is not None:
        return checked.skip
    if opted_out:
        return "opted_out"
    if suppressed:
        return "suppressed"
    return None
