"""When a recipient may be called: the campaign's schedule, in the recipient's
own time zone(s), never outside the legal 08:00-21:00.

- The zones come from an explicit `timezone` column, else from the number
  (phonenumbers' time-zone data). A number that maps to several zones (a US
  toll-free number, North Dakota's 701) is called only when the schedule holds
  in every one of them.
- Times are compared as local wall-clock times through `zoneinfo`, so a
  daylight-saving change moves the window with the clocks: 09:00 is 09:00 on
  the day of the change too.
- The legal bound is checked on every decision, not only when a campaign is
  created: a schedule read back from storage cannot widen it.

Pure: no I/O; `now` is always given.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import phonenumbers
from phonenumbers import timezone as number_timezones

from callbot.common.campaigns import LEGAL_EARLIEST, LEGAL_LATEST, WEEKDAYS, Schedule

# phonenumbers' answer when it cannot place a number.
_UNKNOWN_ZONE = "Etc/Unknown"
# How far ahead `next_allowed` looks before it says "never".
SEARCH_DAYS = 15


class UnknownTimezone(ValueError):
    """A `timezone` value that is not an IANA zone name."""


def zones_for(to: str, timezone: str | None) -> tuple[ZoneInfo, ...]:
    """The zones a recipient may be in: the explicit one, else the number's.
    Empty when neither says (the caller skips the recipient). Raises
    `UnknownTimezone` for an explicit value that is not a zone name."""
    if timezone:
        try:
            return (ZoneInfo(timezone),)
        except (ZoneInfoNotFoundError, ValueError):
            raise UnknownTimezone(
                f"{timezone!r} is not an IANA time zone name (e.g. America/New_York)"
            ) from None
    try:
        number = phonenumbers.parse(to, None)
    except phonenumbers.NumberParseException:
        return ()
    names = number_timezones.time_zones_for_number(number)
    return tuple(ZoneInfo(name) for name in sorted(set(names)) if name != _UNKNOWN_ZONE)


@dataclass(frozen=True)
class CallingHours:
    """A campaign's schedule, asked about one recipient's zones at a time."""

    schedule: Schedule

    @property
    def _earliest(self) -> time:
        return max(self.schedule.window.start, LEGAL_EARLIEST)

    @property
    def _latest(self) -> time:
        return min(self.schedule.window.end, LEGAL_LATEST)

    def allowed_in(self, zone: ZoneInfo, now: datetime) -> bool:
        local = now.astimezone(zone)
        return self._day_allowed(local.date()) and self._earliest <= local.time() < self._latest

    def allowed(self, zones: Iterable[ZoneInfo], now: datetime) -> bool:
        """Calling now is inside the schedule in every zone (and zones were known)."""
        zones = tuple(zones)
        return bool(zones) and all(self.allowed_in(zone, now) for zone in zones)

    def next_allowed(self, zones: Iterable[ZoneInfo], now: datetime) -> datetime | None:
        """The first moment at or after `now` when `allowed` holds, in UTC; None
        when none comes within the schedule's dates (or SEARCH_DAYS after `now`,
        or after the start date when that is later)."""
        zones = tuple(zones)
        if not zones:
            return None
        candidate = now
        start_date = self.schedule.start_date
        if start_date is not None:
            # A campaign that starts later: search from the day before its
            # first day (UTC), so the horizon counts from there, not from now.
            first = datetime.combine(start_date - timedelta(days=1), time(0), tzinfo=UTC)
            candidate = max(now, first)
        horizon = candidate + timedelta(days=SEARCH_DAYS)
        while candidate <= horizon:
            closed = [zone for zone in zones if not self.allowed_in(zone, candidate)]
            if not closed:
                return candidate.astimezone(UTC)
            # Nothing can open before the latest of the closed zones' next openings.
            openings = [self._next_opening(zone, candidate) for zone in closed]
            if any(opening is None for opening in openings):
                return None
            candidate = max(opening for opening in openings if opening is not None)
        return None

    def _day_allowed(self, day: date) -> bool:
        schedule = self.schedule
        if schedule.start_date is not None and day < schedule.start_date:
            return False
        if schedule.end_date is not None and day > schedule.end_date:
            return False
        return WEEKDAYS[day.weekday()] in schedule.days

    def _next_opening(self, zone: ZoneInfo, after: datetime) -> datetime | None:
        """The next local start of the window in `zone`, strictly after `after`."""
        local_day = after.astimezone(zone).date()
        for offset in range(SEARCH_DAYS + 1):
            day = local_day + timedelta(days=offset)
            if self.schedule.end_date is not None and day > self.schedule.end_date:
                return None
            if not self._day_allowed(day):
                continue
            opening = _wall_clock(day, self._earliest, zone)
            if opening > after:
                return opening
        return None


def _wall_clock(day: date, at: time, zone: ZoneInfo) -> datetime:
    """`day` at local `at` in `zone`, as an aware UTC time. A wall time the
    clocks skip (spring forward) maps, with fold=0, to an instant just after
    the gap: never one before the window opens."""
    return datetime.combine(day, at, tzinfo=zone).astimezone(UTC)
