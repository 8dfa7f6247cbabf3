"""R11, R12: soreness, and severe soreness day after day."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from recovery_coach.core import evidence as ev
from recovery_coach.core.local_time import (
    local_date,
)
from recovery_coach.core.models import (
    Profile,
    UserState,
)
from recovery_coach.core.rules.context import Context, Draft, _fixed

LATE_EVENT = timedelta(minutes=30)  # "cool down now" later than this after the end is no use
LOOKBACK = timedelta(hours=72)  # sessions older than this can cause no nudge any more
BEDTIME_LATE = timedelta(minutes=15)  # a bedtime nudge later than this could wake them
SNOOZED_BEDTIME = timedelta(hours=1)  # asked for by the user: they are awake
FULFILS = timedelta(hours=3)
OVERLAP = timedelta(minutes=5)  # activities logged apart may overlap by this much
# R13 waits this long for the rest of a sync: a watch sends a session's activities one by one,
# and a key run or same-session cardio among them silences R13 (one voice).
SETTLE = timedelta(minutes=2)  # a logged cardio this close to a planned one is that session


def _sore_days(state: UserState, tz: ZoneInfo) -> dict[date, list[tuple[datetime, int, str]]]:
    days: dict[date, list[tuple[datetime, int, str]]] = {}
    for log in sorted(state.soreness_logs, key=lambda x: (x.at, x.event_id)):
        days.setdefault(local_date(log.at, tz), []).append((log.at, log.level, log.event_id))
    return days


def r11_soreness(ctx: Context) -> Iterator[Draft]:
    """R11: soreness reported (once a day) -> what helps; cardio neither helps nor hurts."""
    words = _fixed(
        "Sore? What actually helps",
        "Cardio won't speed up or slow down your recovery: protein and sleep matter most. For "
        "the soreness itself, massage works best, and you can do it yourself with a foam "
        "roller or a lacrosse ball. Compression, contrast showers, cold therapy and an easy "
        "walk also help.",
        "Protein and sleep matter most. For soreness, a foam roller works best.",
    )
    for day, reports in _sore_days(ctx.state, ctx.tz).items():
        sore = [r for r in reports if r[1] >= 1]
        if not sore or sore[0][0] < ctx.now - LOOKBACK:
            continue
        at, _, event_id = sore[0]
        yield Draft(
            "R11", "recovery_advice", f"sore:{day.isoformat()}", event_id, at,
            at + timedelta(hours=12), (ev.CARLSON_RECOVERY, ev.DUPUY_2018), words,
        )  # fmt: skip


def severe_streak(profile: Profile, state: UserState, through: date | None = None) -> int:
    """Consecutive local days, ending with `through` (default: the latest report), with
    severe soreness."""
    threshold = profile.settings.severe_soreness_level
    levels: dict[date, int] = {}
    for log in state.soreness_logs:
        d = local_date(log.at, profile.tz)
        levels[d] = max(levels.get(d, 0), log.level)
    if not levels:
        return 0
    day = through or max(levels)
    streak = 0
    while levels.get(day, 0) >= threshold:
        streak += 1
        day -= timedelta(days=1)
    return streak


def r12_too_much_too_fast(ctx: Context) -> Iterator[Draft]:
    """R12: severe soreness on 2+ days in a row -> too much too fast; avoid novelty."""
    s = ctx.profile.settings
    for day, reports in _sore_days(ctx.state, ctx.tz).items():
        severe = [r for r in reports if r[1] >= s.severe_soreness_level]
        if not severe or severe[0][0] < ctx.now - LOOKBACK:
            continue
        streak = severe_streak(ctx.profile, ctx.state, day)
        if streak < s.severe_soreness_days:
            continue
        at, _, event_id = severe[0]
        yield Draft(
            "R12", "recovery_advice", f"overreach:{day.isoformat()}", event_id, at,
            at + timedelta(hours=24), (ev.CARLSON_NOVELTY,),
            _fixed(
                "Too much, too fast?",
                f"Very sore {streak} days in a row is a sign of doing too much too fast. If "
                "keeping soreness down matters to you, avoid new exercises and big changes in "
                "your next few sessions: soreness comes mostly from doing something new.",
                "Very sore days in a row mean too much too fast. Keep your next sessions familiar.",
            ),
            (("days_in_a_row", streak),),
        )  # fmt: skip
