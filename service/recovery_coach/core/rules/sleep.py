"""R9: wind down and bedtime for the sleep the person needs (8 h at least)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

from recovery_coach.core import evidence as ev
from recovery_coach.core.local_time import (
    Night,
    fmt_clock,
    fmt_day_clock,
    local_date,
    night_around,
    night_ending,
)
from recovery_coach.core.models import (
    Profile,
)
from recovery_coach.core.rules.context import Context, Draft, Words, WordsFn, _at, _num

LATE_EVENT = timedelta(minutes=30)  # "cool down now" later than this after the end is no use
LOOKBACK = timedelta(hours=72)  # sessions older than this can cause no nudge any more
BEDTIME_LATE = timedelta(minutes=15)  # a bedtime nudge later than this could wake them
SNOOZED_BEDTIME = timedelta(hours=1)  # asked for by the user: they are awake
FULFILS = timedelta(hours=3)
OVERLAP = timedelta(minutes=5)  # activities logged apart may overlap by this much
# R13 waits this long for the rest of a sync: a watch sends a session's activities one by one,
# and a key run or same-session cardio among them silences R13 (one voice).
SETTLE = timedelta(minutes=2)  # a logged cardio this close to a planned one is that session


def _night_words(profile: Profile, night: Night) -> tuple[WordsFn, WordsFn]:
    tz = profile.tz
    hours = _num(profile.sleep_hours)
    bedtime = fmt_clock(night.bedtime, tz)

    def winddown(at: datetime, _p: bool) -> Words:
        wake = fmt_day_clock(night.wake, tz, at)
        return (
            "Time to wind down",
            f"Start winding down: bedtime is {bedtime} for {hours} hours of sleep before {wake}. "
            "At least eight hours a night is what recovery needs.",
            f"Time to wind down. Bedtime is {bedtime}.",
            {},
        )

    def bed(at: datetime, _p: bool) -> Words:
        wake = fmt_day_clock(night.wake, tz, at)
        if at - night.bedtime < timedelta(minutes=1):
            msg = f"It's {bedtime}: lights out now gives you {hours} hours of sleep before {wake}."
        else:
            msg = f"It's past your {bedtime} bedtime: lights out now, you wake {_at(wake)}."
        msg += " Sleep and protein are the biggest influences on recovery after strength work."
        return "Bedtime", msg, f"It's bedtime. Lights out now for {hours} hours of sleep.", {}

    return winddown, bed


def _planned_nights(ctx: Context) -> list[Night]:
    """The night ahead, and while inside a night also the next one (a start at 05:00 plans
    tonight too)."""
    n0 = ctx.night
    nights = [n0]
    if ctx.now >= n0.bedtime:
        nights.append(night_ending(ctx.profile, night_around(ctx.profile, n0.wake).wake))
    return nights


def r9_bedtime(ctx: Context) -> Iterator[Draft]:
    """R9: wind-down and bedtime nudges for 8 h of real sleep or more, and one "it's late"
    nudge for a session that ends after bedtime and is reported within minutes."""
    p = ctx.profile
    evidence = (ev.ACSM_SLEEP, ev.DOHERTY_2021, ev.CARLSON_RECOVERY)
    late_nights: set[datetime] = set()
    for s in ctx.recent:
        night = night_around(p, s.ended_at)
        if not late_in_night(night, s.ended_at) or s.known_at - s.ended_at > LATE_EVENT:
            continue
        late_nights.add(night.wake)  # its "cool down, then sleep" nudge says bedtime too
        bedtime = fmt_clock(night.bedtime, ctx.tz)

        def late(at: datetime, _p: bool, night: Night = night, bedtime: str = bedtime) -> Words:
            wake = fmt_day_clock(night.wake, ctx.tz, at)
            return (
                "Late workout: cool down, then sleep",
                f"It's past your {bedtime} bedtime. Cool down with a few easy minutes to bring "
                f"your heart rate down, then head to bed: you wake {_at(wake)}.",
                "It's late. A few easy minutes to cool down, then bed.",
                {},
            )

        yield Draft(
            "R9", "bedtime", f"late:{s.key}", s.source_event_id, s.known_at,
            s.ended_at + LATE_EVENT, (ev.ACSM_SLEEP, ev.ACSM_COOLDOWN), late,
            (("bedtime", night.bedtime), ("wake_at", night.wake), ("sleep_hours", p.sleep_hours)),
        )  # fmt: skip
    for night in _planned_nights(ctx):
        if not p.settings.bedtime_every_day and not any(
            night.bedtime - timedelta(hours=24) <= s.ended_at <= night.bedtime for s in ctx.recent
        ):
            continue
        data = (
            ("bedtime", night.bedtime),
            ("winddown_at", night.winddown),
            ("wake_at", night.wake),
            ("sleep_hours", p.sleep_hours),
        )
        source = f"night:{local_date(night.wake, ctx.tz).isoformat()}"
        # The bedtime names the nudges: when it moves (a later wake time, more sleep), the
        # wind-down and bedtime are new ones, even where the old were sent.
        key = f"{source}@{night.bedtime.astimezone(UTC):%Y-%m-%dT%H:%M}"
        winddown, bed = _night_words(p, night)
        yield Draft(
            "R9", "bedtime_winddown", key, source, night.winddown, night.bedtime,
            evidence, winddown, data,
        )  # fmt: skip
        if night.wake not in late_nights:
            yield Draft(
                "R9", "bedtime", key, source, night.bedtime, night.bedtime + BEDTIME_LATE,
                evidence, bed, data,
            )  # fmt: skip


def late_in_night(night: Night, instant: datetime) -> bool:
    """In the first half of the sleep window: up late, not up early."""
    return night.contains(instant) and instant < night.midpoint
