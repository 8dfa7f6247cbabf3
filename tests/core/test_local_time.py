"""Time arithmetic in the user's zone, as properties over every IANA zone and day of the year."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo, available_timezones

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from recovery_coach.core.local_time import (
    bedtime_for,
    in_sleep_window,
    iso_week,
    local_datetime,
    next_wake,
    night_around,
    week_fraction_elapsed,
)

from tests.support.core_builders import profile

ZONES = sorted(available_timezones())
zones = st.sampled_from(ZONES)
days_2026 = st.dates(min_value=date(2026, 1, 1), max_value=date(2026, 12, 31))
clocks = st.times().map(lambda c: c.replace(second=0, microsecond=0))
# hypothesis takes naive bounds and adds the zone itself
instants = st.datetimes(
    min_value=datetime(2026, 1, 1),  # noqa: DTZ001
    max_value=datetime(2026, 12, 31, 23, 59),  # noqa: DTZ001
    timezones=st.just(UTC),
)
sleep_hours = st.sampled_from([8.0, 8.5, 9.0, 10.0, 12.0])


def wall_clock_exists(day: date, clock: time, tz: ZoneInfo) -> bool:
    """False in a DST gap: the naive time does not survive a round trip through UTC."""
    naive = datetime.combine(day, clock)
    return naive.replace(tzinfo=tz).astimezone(UTC).astimezone(tz).replace(tzinfo=None) == naive


@settings(max_examples=400)
@given(zone=zones, now=instants, wake=clocks, hours=sleep_hours, latency=st.integers(0, 60))
def test_bedtime_leaves_the_sleep_need_in_real_time(
    zone: str, now: datetime, wake: time, hours: float, latency: int
) -> None:
    """R9 across DST: from bedtime to the next wake is the sleep need in elapsed time."""
    p = profile(
        timezone=zone, wake=wake, sleep_hours=hours, settings={"sleep_latency_minutes": latency}
    )
    night = night_around(p, now)
    elapsed = night.wake.astimezone(UTC) - night.bedtime.astimezone(UTC)
    assert elapsed == timedelta(hours=hours, minutes=latency)
    assert elapsed >= timedelta(hours=8)
    assert night.winddown < night.bedtime < night.wake
    assert not night.contains(night.winddown)
    assert night.contains(night.bedtime)
    assert not night.contains(night.wake)
    assert bedtime_for(p, night.wake) == night.bedtime


@settings(max_examples=400)
@given(zone=zones, now=instants, wakes=st.lists(clocks, min_size=7, max_size=7))
def test_next_wake_is_strictly_after_and_the_wall_clock_wake_time(
    zone: str, now: datetime, wakes: list[time]
) -> None:
    p = profile(timezone=zone, wake=wakes)
    tz = ZoneInfo(zone)
    wake = next_wake(p, now)
    assert wake > now
    local = wake.astimezone(tz)
    configured = wakes[local.weekday()]
    if wall_clock_exists(local.date(), configured, tz):
        assert local.time() == configured
    else:  # in a DST gap the clock is moved forward by the gap, as a wall clock is
        assert local.time() > configured
    # the first such wake: yesterday's, today's (in the zone) wake times are not in between
    for back in (1, 2):
        day = local.date() - timedelta(days=back)
        earlier = local_datetime(day, wakes[day.weekday()], tz)
        assert earlier <= now or earlier >= wake


@settings(max_examples=300)
@given(zone=zones, now=instants)
def test_iso_weeks_start_on_monday_midnight_in_the_users_zone(zone: str, now: datetime) -> None:
    tz = ZoneInfo(zone)
    local = now.astimezone(tz)
    assert iso_week(now, tz) == tuple(local.isocalendar())[:2]
    monday = local.date() - timedelta(days=local.weekday())
    start = local_datetime(monday, time(0), tz)
    assert iso_week(start, tz) == iso_week(now, tz)
    assert iso_week(start - timedelta(microseconds=1), tz) != iso_week(now, tz)
    assert 0 <= week_fraction_elapsed(now, tz) < 1


@pytest.mark.parametrize(
    ("zone", "instant", "week"),
    [
        # Sunday 23:30 in Berlin (22:30 UTC) is still ISO week 10 there
        ("Europe/Berlin", "2026-03-08T23:30:00+01:00", (2026, 10)),
        # Monday 00:30 in Berlin is Sunday in UTC, but week 11 for the user
        ("Europe/Berlin", "2026-03-09T00:30:00+01:00", (2026, 11)),
        # Sunday 20:00 in New York is Monday in UTC, but week 10 for the user
        ("America/New_York", "2026-03-08T20:00:00-04:00", (2026, 10)),
        # the ISO year: Thursday 31 Dec 2026 is week 53 of 2026; Monday 4 Jan 2027 week 1
        ("Europe/Berlin", "2026-12-31T12:00:00+01:00", (2026, 53)),
        ("Europe/Berlin", "2027-01-04T00:00:00+01:00", (2027, 1)),
    ],
)
def test_iso_week_examples(zone: str, instant: str, week: tuple[int, int]) -> None:
    assert iso_week(datetime.fromisoformat(instant), ZoneInfo(zone)) == week


@pytest.mark.parametrize(
    ("zone", "wake", "bedtime"),
    [
        ("Europe/Berlin", "2026-03-29T07:00:00+02:00", "2026-03-28T21:45:00+01:00"),
        ("Europe/Berlin", "2026-10-25T07:00:00+01:00", "2026-10-24T23:45:00+02:00"),
        ("America/New_York", "2026-03-08T07:00:00-04:00", "2026-03-07T21:45:00-05:00"),
        ("America/New_York", "2026-11-01T07:00:00-05:00", "2026-10-31T23:45:00-04:00"),
    ],
    ids=["Berlin spring", "Berlin autumn", "New York spring", "New York autumn"],
)
def test_dst_nights(zone: str, wake: str, bedtime: str) -> None:
    """A night an hour shorter on the wall clock still gets 8 real hours (+15 min)."""
    p = profile(timezone=zone)
    before = datetime.fromisoformat(wake) - timedelta(hours=12)
    night = night_around(p, before)
    assert night.wake == datetime.fromisoformat(wake)
    assert night.bedtime == datetime.fromisoformat(bedtime)
    # the same instant, and worded in the wall-clock offset of that evening
    local = night.bedtime.astimezone(p.tz)
    assert local.utcoffset() == datetime.fromisoformat(bedtime).utcoffset()


def test_a_wake_time_in_the_dst_gap_moves_forward() -> None:
    """02:30 does not exist in Berlin on 29 March 2026: the alarm rings at 03:30 CEST."""
    p = profile(wake=time(2, 30))
    wake = next_wake(p, datetime.fromisoformat("2026-03-28T12:00:00+01:00"))
    assert wake == datetime.fromisoformat("2026-03-29T03:30:00+02:00")


def test_sleep_window_is_bedtime_to_wake() -> None:
    p = profile()
    at = datetime.fromisoformat
    assert not in_sleep_window(p, at("2026-03-02T22:44:00+01:00"))
    assert in_sleep_window(p, at("2026-03-02T22:45:00+01:00"))
    assert in_sleep_window(p, at("2026-03-03T03:00:00+01:00"))
    assert in_sleep_window(p, at("2026-03-03T06:59:00+01:00"))
    assert not in_sleep_window(p, at("2026-03-03T07:00:00+01:00"))
