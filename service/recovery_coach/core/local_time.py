"""Local-time arithmetic: wake times, bedtimes, the sleep window and ISO weeks in a user's zone.

Durations (sleep need, wind-down) are real elapsed time, computed in UTC; clock times (wake)
are wall-clock times in the user's zone. So a DST night that is an hour shorter on the wall
clock still gets the full sleep need.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from recovery_coach.core.models import Profile


def local_datetime(day: date, clock: time, tz: ZoneInfo) -> datetime:
    """The aware instant a wall clock in `tz` shows `clock` on `day`.

    In a DST gap (a clock time that does not exist) it is shifted forward by the gap, as a
    wall clock would be; in a fold (a clock time that happens twice) it is the first.
    """
    # In UTC: Python compares two datetimes of the same zone by wall clock, ignoring `fold`,
    # so in the repeated hour of a DST change 03:30 would sort after 03:00 (second time).
    return datetime.combine(day, clock).replace(tzinfo=tz, fold=0).astimezone(UTC)


def local_date(instant: datetime, tz: ZoneInfo) -> date:
    return instant.astimezone(tz).date()


def iso_week(instant: datetime, tz: ZoneInfo) -> tuple[int, int]:
    """ISO (year, week), Monday start, in the user's zone."""
    iso = instant.astimezone(tz).isocalendar()
    return (iso.year, iso.week)


def week_fraction_elapsed(instant: datetime, tz: ZoneInfo) -> float:
    """How much of the user's ISO week has passed, 0..1, in real time."""
    local = instant.astimezone(tz)
    monday = local.date() - timedelta(days=local.weekday())
    start = local_datetime(monday, time(0, 0), tz)
    end = local_datetime(monday + timedelta(days=7), time(0, 0), tz)
    return (instant - start) / (end - start)


def wake_on(profile: Profile, day: date) -> datetime:
    return local_datetime(day, profile.wake_times[day.weekday()], profile.tz)


def next_wake(profile: Profile, after: datetime) -> datetime:
    """The first wake time strictly after `after`."""
    day = local_date(after, profile.tz) - timedelta(days=1)
    while True:
        wake = wake_on(profile, day)
        if wake > after:
            return wake
        day += timedelta(days=1)


def sleep_need(profile: Profile) -> timedelta:
    """Sleep hours plus the time it takes to fall asleep."""
    return timedelta(hours=profile.sleep_hours, minutes=profile.settings.sleep_latency_minutes)


def bedtime_for(profile: Profile, wake: datetime) -> datetime:
    """Bedtime that leaves the full sleep need, in real elapsed time, before `wake`."""
    return wake.astimezone(UTC) - sleep_need(profile)


@dataclass(frozen=True)
class Night:
    """One sleep window: from bedtime to the wake time that ends it (times in UTC)."""

    winddown: datetime
    bedtime: datetime
    wake: datetime

    def contains(self, instant: datetime) -> bool:
        return self.bedtime <= instant < self.wake

    @property
    def midpoint(self) -> datetime:
        """Activity before it is up late; after it, up early."""
        return self.bedtime + (self.wake - self.bedtime) / 2


def night_ending(profile: Profile, wake: datetime) -> Night:
    wake = wake.astimezone(UTC)
    bed = bedtime_for(profile, wake)
    return Night(
        winddown=bed - timedelta(minutes=profile.settings.winddown_minutes), bedtime=bed, wake=wake
    )


@functools.lru_cache(maxsize=8192)
def night_around(profile: Profile, instant: datetime) -> Night:
    """The next night whose window has not ended at `instant` (it may already have begun).

    Cached: placing one user's nudges asks for the same few nights many times."""
    return night_ending(profile, next_wake(profile, instant))


def in_sleep_window(profile: Profile, instant: datetime) -> bool:
    return night_around(profile, instant).contains(instant)


def fmt_clock(instant: datetime, tz: ZoneInfo) -> str:
    """24-hour clock time in the user's zone, e.g. 22:15."""
    return instant.astimezone(tz).strftime("%H:%M")


def fmt_day_clock(instant: datetime, tz: ZoneInfo, now: datetime) -> str:
    """'22:15', 'tomorrow at 07:00' or 'Monday at 07:00', relative to `now` in the user's zone."""
    local = instant.astimezone(tz)
    days = (local.date() - now.astimezone(tz).date()).days
    clock = local.strftime("%H:%M")
    if days == 0:
        return clock
    if days == 1:
        return f"tomorrow at {clock}"
    if days == -1:
        return f"yesterday at {clock}"
    return f"{local.strftime('%A')} at {clock}"


def day_word(instant: datetime, tz: ZoneInfo, now: datetime) -> str:
    """'today', 'yesterday', 'tomorrow' or 'Monday', relative to `now` in the user's zone."""
    days = (local_date(instant, tz) - local_date(now, tz)).days
    words = {0: "today", -1: "yesterday", 1: "tomorrow"}
    return words.get(days, instant.astimezone(tz).strftime("%A"))


def fmt_duration(span: timedelta) -> str:
    """As people say it: '5 h 59 min', '6 h', '45 min' (rounded down to the minute)."""
    minutes = int(span.total_seconds() // 60)
    h, m = divmod(minutes, 60)
    if h and m:
        return f"{h} h {m} min"
    return f"{h} h" if h else f"{m} min"


def end_of_day(instant: datetime, tz: ZoneInfo) -> datetime:
    """Local midnight at the end of the day `instant` falls on."""
    return local_datetime(local_date(instant, tz) + timedelta(days=1), time(0, 0), tz)
