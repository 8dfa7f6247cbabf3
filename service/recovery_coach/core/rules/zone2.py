"""R10: zone-2 minutes of the week against the weekly target."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta

from recovery_coach.core import evidence as ev
from recovery_coach.core.local_time import (
    iso_week,
    local_datetime,
    wake_on,
)
from recovery_coach.core.models import (
    Profile,
    Workout,
)
from recovery_coach.core.rules.context import Context, Draft, Words, _count
from recovery_coach.core.timeline import effort, is_hard

LATE_EVENT = timedelta(minutes=30)  # "cool down now" later than this after the end is no use
LOOKBACK = timedelta(hours=72)  # sessions older than this can cause no nudge any more
BEDTIME_LATE = timedelta(minutes=15)  # a bedtime nudge later than this could wake them
SNOOZED_BEDTIME = timedelta(hours=1)  # asked for by the user: they are awake
FULFILS = timedelta(hours=3)
OVERLAP = timedelta(minutes=5)  # activities logged apart may overlap by this much
# R13 waits this long for the rest of a sync: a watch sends a session's activities one by one,
# and a key run or same-session cardio among them silences R13 (one voice).
SETTLE = timedelta(minutes=2)  # a logged cardio this close to a planned one is that session


def counts_as_zone2(profile: Profile, w: Workout) -> bool:
    """Moderate cardio by the rule book's reading of effort (timeline.effort)."""
    return w.cardio and bool(w.duration_min) and effort(profile, w.rpe, w.zone) == "moderate"


def counts_as_high(profile: Profile, w: Workout) -> bool:
    """An effort at high intensity: rpe 7+ (above the moderate cap), or zone 4-5 unrated."""
    return w.cardio and bool(w.duration_min) and is_hard(profile, w.rpe, w.zone)


def week_minutes(
    profile: Profile, activities: list[Workout], week: tuple[int, int], until: datetime
) -> tuple[float, float]:
    """(zone-2, high-intensity) minutes of one ISO week in the user's zone, ended by `until`."""
    z2 = hi = 0.0
    for a in activities:
        if a.ended_at > until or iso_week(a.ended_at, profile.tz) != week:
            continue
        if counts_as_zone2(profile, a):
            z2 += a.duration_min or 0
        elif counts_as_high(profile, a):
            hi += a.duration_min or 0
    return z2, hi


def zone2_minutes_now(profile: Profile, activities: list[Workout], now: datetime) -> float:
    """Zone-2 minutes in the user's current ISO week."""
    return week_minutes(profile, activities, iso_week(now, profile.tz), now)[0]


def _high_words(high: float) -> str:
    if high >= 1:
        minutes = _count(round(high), "minute")
        return f" You also have {minutes} at high intensity: keep some of those too."
    return " Add some efforts at high intensity too."


def r10_zone2(ctx: Context) -> Iterator[Draft]:
    """R10: 2-3 h of zone 2 a week plus some high-intensity efforts: a mid-week nudge when
    behind pace, one when the target is met. Minutes are those of the week it is read in."""
    p = ctx.profile
    s = p.settings
    target = s.zone2_target_minutes_week
    tz = ctx.tz
    week = iso_week(ctx.now, tz)
    source = f"zone2:{week[0]}-W{week[1]:02d}"
    local_now = ctx.now.astimezone(tz)
    monday = local_now.date() - timedelta(days=local_now.weekday())
    week_start = local_datetime(monday, datetime.min.time(), tz)
    week_end = local_datetime(monday + timedelta(days=7), datetime.min.time(), tz)
    acts = ctx.all_activities

    def figures(at: datetime) -> tuple[float, float]:
        return week_minutes(p, acts, iso_week(at, tz), at)

    check_day = monday + timedelta(days=s.zone2_check_weekday)
    check_at = wake_on(p, check_day)
    if check_at <= ctx.now:
        done, _ = week_minutes(p, acts, week, check_at)
        pace = target * (check_at - week_start) / (week_end - week_start)
        if done < pace:

            def pace_words(at: datetime, _p: bool) -> Words:
                minutes, high = figures(at)
                left = max(0, round(target - minutes))
                return (
                    "Zone 2 this week",
                    f"You have {round(minutes)} of {target} minutes of zone-2 cardio this week, "
                    f"{left} to go by Sunday: two or three easy sessions where you can talk but "
                    f"not sing will do it.{_high_words(high)}",
                    f"You're at {round(minutes)} of {target} zone 2 minutes this week.",
                    {
                        "zone2_minutes_week": round(minutes),
                        "high_intensity_minutes_week": round(high),
                    },
                )

            if figures(ctx.now)[0] < target:
                yield Draft(
                    "R10", "zone2_progress", f"{source}:pace", f"{source}:pace", check_at,
                    min(check_at + timedelta(hours=12), week_end), (ev.CHURCHILL_ZONE2,),
                    pace_words, (("zone2_target_minutes_week", target),),
                )  # fmt: skip
    total = 0.0
    for a in acts:
        if iso_week(a.ended_at, tz) != week or not counts_as_zone2(p, a) or a.ended_at > ctx.now:
            continue
        before, total = total, total + (a.duration_min or 0)
        if before < target <= total:

            def done_words(at: datetime, _p: bool) -> Words:
                minutes, high = figures(at)
                return (
                    "Zone 2 target reached",
                    f"That's {round(minutes)} minutes of zone-2 cardio this week: your "
                    f"{target}-minute target is done.{_high_words(high)}",
                    f"Zone 2 target reached: {round(minutes)} minutes this week.",
                    {
                        "zone2_minutes_week": round(minutes),
                        "high_intensity_minutes_week": round(high),
                    },
                )

            yield Draft(
                "R10", "zone2_progress", f"{source}:done", a.event_id, a.known_at,
                min(a.ended_at + timedelta(hours=12), week_end), (ev.CHURCHILL_ZONE2,),
                done_words, (("zone2_target_minutes_week", target),),
            )  # fmt: skip
            break
