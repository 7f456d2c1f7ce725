"""Calling hours with a fake clock: New York, Los Angeles and Honolulu, a DST
change day, a number that rings in two zones, the legal bound."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from pydantic import ValidationError

from callbot.campaigns.domain.calling_hours import CallingHours, UnknownTimezone, zones_for
from callbot.common.campaigns import WEEKDAYS, CallingWindow, Schedule

NEW_YORK = "+12125550100"
LOS_ANGELES = "+13105550100"
HONOLULU = "+18085550100"
NORTH_DAKOTA = "+17015550100"  # area code 701: Mountain and Central time
EVERY_DAY = WEEKDAYS


def hours(start: time = time(9), end: time = time(20), **schedule: object) -> CallingHours:
    return CallingHours(
        Schedule.model_validate(
            {"window": CallingWindow(start=start, end=end), "days": EVERY_DAY, **schedule}
        )
    )


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


def test_zones_come_from_the_number() -> None:
    assert zones_for(NEW_YORK, None) == (ZoneInfo("America/New_York"),)
    assert zones_for(LOS_ANGELES, None) == (ZoneInfo("America/Los_Angeles"),)
    assert zones_for(HONOLULU, None) == (ZoneInfo("Pacific/Honolulu"),)
    assert zones_for(NORTH_DAKOTA, None) == (
        ZoneInfo("America/Denver"),
        ZoneInfo("America/North_Dakota/Center"),
    )


def test_an_explicit_timezone_wins_over_the_number() -> None:
    assert zones_for(NEW_YORK, "Europe/Paris") == (ZoneInfo("Europe/Paris"),)
    with pytest.raises(UnknownTimezone, match="not an IANA time zone"):
        zones_for(NEW_YORK, "Mars/Olympus_Mons")


def test_each_city_is_called_only_inside_its_own_window() -> None:
    """Walk a whole winter day (UTC) minute by minute: each recipient's allowed
    minutes are exactly 09:00-20:00 of its own local clock."""
    calling = hours()
    start = utc(2026, 1, 14, 0, 0)
    for number, zone_name in (
        (NEW_YORK, "America/New_York"),
        (LOS_ANGELES, "America/Los_Angeles"),
        (HONOLULU, "Pacific/Honolulu"),
    ):
        zones = zones_for(number, None)
        zone = ZoneInfo(zone_name)
        allowed = [
            moment
            for minute in range(0, 2 * 24 * 60, 5)
            if calling.allowed(zones, moment := start + timedelta(minutes=minute))
        ]
        assert allowed, number
        for moment in allowed:
            assert time(9) <= moment.astimezone(zone).time() < time(20), (number, moment)
        # ... and every in-window minute of the walk is allowed (none lost).
        expected = [
            moment
            for minute in range(0, 2 * 24 * 60, 5)
            if time(9)
            <= (moment := start + timedelta(minutes=minute)).astimezone(zone).time()
            < time(20)
        ]
        assert allowed == expected, number


def test_the_same_utc_moment_differs_by_city() -> None:
    calling = hours()
    moment = utc(2026, 1, 14, 15, 0)  # 10:00 New York, 07:00 LA, 05:00 Honolulu
    assert calling.allowed(zones_for(NEW_YORK, None), moment)
    assert not calling.allowed(zones_for(LOS_ANGELES, None), moment)
    assert not calling.allowed(zones_for(HONOLULU, None), moment)
    assert calling.next_allowed(zones_for(LOS_ANGELES, None), moment) == utc(2026, 1, 14, 17)
    assert calling.next_allowed(zones_for(HONOLULU, None), moment) == utc(2026, 1, 14, 19)
    assert calling.next_allowed(zones_for(NEW_YORK, None), moment) == moment


def test_after_the_window_the_next_allowed_time_is_tomorrow_morning() -> None:
    calling = hours()
    evening = utc(2026, 1, 15, 1, 30)  # 20:30 New York on the 14th
    assert not calling.allowed(zones_for(NEW_YORK, None), evening)
    assert calling.next_allowed(zones_for(NEW_YORK, None), evening) == utc(2026, 1, 15, 14)


def test_spring_forward_day_keeps_the_local_window() -> None:
    """8 March 2026: New York moves from UTC-5 to UTC-4 at 02:00 local. The
    window is 09:00 local on both sides of the change; Honolulu has no DST."""
    calling = hours()
    ny = zones_for(NEW_YORK, None)
    # Saturday 7 March: 09:00 EST = 14:00 UTC.
    assert calling.next_allowed(ny, utc(2026, 3, 7, 5)) == utc(2026, 3, 7, 14)
    # Sunday 8 March: 09:00 EDT = 13:00 UTC; 13:30 UTC is allowed, 12:59 is not.
    assert calling.next_allowed(ny, utc(2026, 3, 8, 5)) == utc(2026, 3, 8, 13)
    assert calling.allowed(ny, utc(2026, 3, 8, 13, 30))
    assert not calling.allowed(ny, utc(2026, 3, 8, 12, 59))
    # The window closes at 20:00 EDT = 00:00 UTC.
    assert calling.allowed(ny, utc(2026, 3, 8, 23, 59))
    assert not calling.allowed(ny, utc(2026, 3, 9, 0, 0))
    honolulu = zones_for(HONOLULU, None)
    # 08:00 UTC is 22:00 the evening before in Honolulu.
    assert calling.next_allowed(honolulu, utc(2026, 3, 8, 8)) == utc(2026, 3, 8, 19)


def test_fall_back_day_keeps_the_local_window() -> None:
    """1 November 2026: Los Angeles moves from UTC-7 to UTC-8."""
    calling = hours()
    la = zones_for(LOS_ANGELES, None)
    assert calling.next_allowed(la, utc(2026, 10, 31, 10)) == utc(2026, 10, 31, 16)
    assert calling.next_allowed(la, utc(2026, 11, 1, 10)) == utc(2026, 11, 1, 17)
    assert not calling.allowed(la, utc(2026, 11, 1, 16, 30))  # 08:30 PST


def test_a_window_in_the_small_hours_crosses_a_gap_safely() -> None:
    """A zone whose clocks jump inside the window's opening hour: never before
    the local opening time. (Chile's Santiago skips 00:00-01:00; an 08:00
    window is not affected, so use a legal-range window at the next opening.)"""
    calling = hours(start=time(8), end=time(21))
    zone = (ZoneInfo("America/Santiago"),)
    opening = calling.next_allowed(zone, utc(2026, 9, 6, 3))
    assert opening is not None
    assert opening.astimezone(zone[0]).time() == time(8)


def test_a_number_in_two_zones_is_called_only_when_both_allow() -> None:
    calling = hours()
    nd = zones_for(NORTH_DAKOTA, None)
    # 15:30 UTC in January: 09:30 Central, 08:30 Mountain: not yet.
    assert not calling.allowed(nd, utc(2026, 1, 14, 15, 30))
    assert calling.next_allowed(nd, utc(2026, 1, 14, 15, 30)) == utc(2026, 1, 14, 16)
    # 01:30 UTC: 19:30 Central, 18:30 Mountain: both in.
    assert calling.allowed(nd, utc(2026, 1, 15, 1, 30))
    # 02:00 UTC: 20:00 Central is over, though Mountain is at 19:00.
    assert not calling.allowed(nd, utc(2026, 1, 15, 2, 0))


def test_zones_whose_windows_never_overlap_have_no_allowed_time() -> None:
    calling = hours(start=time(9), end=time(11))
    apart = (ZoneInfo("America/New_York"), ZoneInfo("Asia/Tokyo"))
    assert calling.next_allowed(apart, utc(2026, 1, 14)) is None
    assert not calling.allowed((), utc(2026, 1, 14, 15))
    assert calling.next_allowed((), utc(2026, 1, 14, 15)) is None


def test_days_of_week_and_dates_are_local() -> None:
    calling = CallingHours(
        Schedule(days=("mon",), start_date=date(2026, 1, 12), end_date=date(2026, 1, 19))
    )
    la = zones_for(LOS_ANGELES, None)
    # Monday 12 January 18:00 in Los Angeles is Tuesday 02:00 UTC: still Monday there.
    assert calling.allowed(la, utc(2026, 1, 13, 2))
    # From Tuesday, the next Monday (the 19th, the last day) at 09:00 PST.
    assert calling.next_allowed(la, utc(2026, 1, 13, 5)) == utc(2026, 1, 19, 17)
    # After the end date: never again.
    assert calling.next_allowed(la, utc(2026, 1, 20, 5)) is None
    # Before the start date: the first allowed day.
    assert calling.next_allowed(la, utc(2026, 1, 1)) == utc(2026, 1, 12, 17)


@pytest.mark.parametrize(
    ("start", "end"),
    [("07:59", "20:00"), ("09:00", "21:01"), ("06:00", "23:00"), ("12:00", "10:00")],
)
def test_a_window_outside_the_legal_hours_is_refused(start: str, end: str) -> None:
    with pytest.raises(ValidationError, match=r"legal hours|starts"):
        CallingWindow.model_validate({"start": start, "end": end})


def test_the_legal_bound_holds_even_for_a_window_that_skipped_validation() -> None:
    """A schedule built without validation (a stored document read with
    model_construct) still never allows a call outside 08:00-21:00."""
    wide = CallingWindow.model_construct(start=time(0), end=time(23, 59))
    calling = CallingHours(Schedule.model_construct(window=wide, days=EVERY_DAY))
    ny = zones_for(NEW_YORK, None)
    assert not calling.allowed(ny, utc(2026, 1, 14, 12, 30))  # 07:30 local
    assert calling.allowed(ny, utc(2026, 1, 14, 13, 0))  # 08:00 local
    assert not calling.allowed(ny, utc(2026, 1, 15, 2, 0))  # 21:00 local
    assert calling.next_allowed(ny, utc(2026, 1, 14, 5)) == utc(2026, 1, 14, 13)


def test_a_campaign_starting_months_ahead_gets_its_first_day() -> None:
    calling = CallingHours(Schedule(days=WEEKDAYS, start_date=date(2026, 10, 12)))
    ny = zones_for(NEW_YORK, None)
    assert calling.next_allowed(ny, utc(2026, 1, 14)) == utc(2026, 10, 12, 13)
