"""R1, R2, R3: after any workout: cool down, cardio after leg day is fine, the gains myth."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta

from recovery_coach.core import evidence as ev
from recovery_coach.core.local_time import (
    fmt_clock,
)
from recovery_coach.core.rules.context import Context, Draft, Words, _count, _fixed, _num

LATE_EVENT = timedelta(minutes=30)  # "cool down now" later than this after the end is no use
LOOKBACK = timedelta(hours=72)  # sessions older than this can cause no nudge any more
BEDTIME_LATE = timedelta(minutes=15)  # a bedtime nudge later than this could wake them
SNOOZED_BEDTIME = timedelta(hours=1)  # asked for by the user: they are awake
FULFILS = timedelta(hours=3)
OVERLAP = timedelta(minutes=5)  # activities logged apart may overlap by this much
# R13 waits this long for the rest of a sync: a watch sends a session's activities one by one,
# and a key run or same-session cardio among them silences R13 (one voice).
SETTLE = timedelta(minutes=2)  # a logged cardio this close to a planned one is that session


def r1_cooldown(ctx: Context) -> Iterator[Draft]:
    """R1: any session completed -> cooldown now, and a second nudge when the timer ends."""
    minutes = ctx.profile.settings.cooldown_minutes
    for s in ctx.recent:
        start = s.known_at
        if start - s.ended_at > LATE_EVENT:
            continue  # synced too late: the moment for a cooldown has passed
        ends = start + timedelta(minutes=minutes)
        data = (("cooldown_ends_at", ends), ("cooldown_minutes", minutes))
        clock = fmt_clock(ends, ctx.tz)

        def start_words(_at: datetime, partnered: bool, clock: str = clock) -> Words:
            msg = (
                f"Take {_count(minutes, 'easy minute')} to cool down: a slow walk or an easy "
                "spin brings your heart rate and blood pressure down gently."
            )
            if partnered:
                msg += f" I'll tell you when it's done, at {clock}."
            speech = f"Time to cool down: {_count(minutes, 'easy minute')} of walking or spinning."
            return "Cool down now", msg, speech, {}

        yield Draft(
            "R1", "cooldown_start", s.key, s.source_event_id, start, ends,
            (ev.ACSM_COOLDOWN,), start_words, data,
        )  # fmt: skip
        yield Draft(
            "R1", "cooldown_done", s.key, s.source_event_id, ends, ends + timedelta(minutes=15),
            (ev.ACSM_COOLDOWN,),
            _fixed(
                "Cooldown done",
                f"That's your {minutes}-minute cooldown done. Your heart rate and blood "
                "pressure have had time to come down gently.",
                "Cooldown done. Nice work.",
            ),
            data,
        )  # fmt: skip


def r2_cardio_cap(ctx: Context) -> Iterator[Draft]:
    """R2: leg day completed -> cardio is fine, keep it at 6/10 or less."""
    cap = ctx.profile.settings.moderate_rpe_max
    few = timedelta(hours=ctx.profile.settings.few_hours)
    for s in ctx.recent:
        if not s.leg_day:
            continue
        yield Draft(
            "R2", "cardio_advice", s.key, s.source_event_id, s.known_at, s.ended_at + few,
            (ev.CHURCHILL_LOW_MODERATE, ev.CARLSON_INJURY, ev.CDC_EFFORT),
            _fixed(
                "Cardio after leg day: keep it easy",
                f"Cardio after leg day is fine. Keep it low to moderate: {_num(cap)} or less "
                "out of 10, or the talk test: you can talk but not sing. Save sprints, HIIT and "
                "hard spin classes for fresh legs: on tired legs they raise your injury risk.",
                f"Cardio after leg day is fine. Keep it easy: {_num(cap)} out of 10 or less, "
                "so you can still talk.",
            ),
            (("rpe_cap", cap),),
        )  # fmt: skip


def r3_gains_myth(ctx: Context) -> Iterator[Draft]:
    """R3: leg day and goal hypertrophy/strength -> cardio does not cost you muscle or strength."""
    goal = ctx.profile.goal
    if goal not in ("hypertrophy", "strength"):
        return
    what = "muscle size" if goal == "hypertrophy" else "maximal strength"
    few = timedelta(hours=ctx.profile.settings.few_hours)
    for s in ctx.recent:
        if not s.leg_day:
            continue
        yield Draft(
            "R3", "cardio_advice", s.key, s.source_event_id, s.known_at, s.ended_at + few,
            (ev.SCHUMANN_2022,),
            _fixed(
                "Cardio won't cost you gains",
                f"Doing cardio after lifting does not compromise {what}: a 2022 meta-analysis "
                "found strength and aerobic training combine fine, even in the same session.",
                f"Good news: cardio after lifting won't cost you {what}.",
            ),
            (("goal", goal),),
        )  # fmt: skip
