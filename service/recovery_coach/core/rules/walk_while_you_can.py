"""R13: after leg day, cardio due soon: do it while you can still walk."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta

from recovery_coach.core import evidence as ev
from recovery_coach.core.local_time import (
    day_word,
    end_of_day,
    fmt_day_clock,
    local_date,
    local_datetime,
)
from recovery_coach.core.models import (
    PlannedCardio,
)
from recovery_coach.core.rules.context import Context, Draft, Words
from recovery_coach.core.timeline import Session

LATE_EVENT = timedelta(minutes=30)  # "cool down now" later than this after the end is no use
LOOKBACK = timedelta(hours=72)  # sessions older than this can cause no nudge any more
BEDTIME_LATE = timedelta(minutes=15)  # a bedtime nudge later than this could wake them
SNOOZED_BEDTIME = timedelta(hours=1)  # asked for by the user: they are awake
FULFILS = timedelta(hours=3)
OVERLAP = timedelta(minutes=5)  # activities logged apart may overlap by this much
# R13 waits this long for the rest of a sync: a watch sends a session's activities one by one,
# and a key run or same-session cardio among them silences R13 (one voice).
SETTLE = timedelta(minutes=2)  # a logged cardio this close to a planned one is that session


def cardio_due_soon(ctx: Context, leg: Session) -> datetime | PlannedCardio | None:
    """Cardio planned (or on the weekly plan, not yet done) on the leg day or the day after."""
    tz = ctx.tz
    today = local_date(leg.ended_at, tz)
    tomorrow = today + timedelta(days=1)
    for p in ctx.planned:
        if p.planned_at >= leg.ended_at and local_date(p.planned_at, tz) in (today, tomorrow):
            return p
    done_today = any(a.cardio and local_date(a.ended_at, tz) == today for a in ctx.activities)
    if ctx.profile.plan_for(today.weekday()) == "cardio" and not done_today:
        return leg.ended_at
    if ctx.profile.plan_for(tomorrow.weekday()) == "cardio":
        return local_datetime(tomorrow, datetime.min.time(), tz)
    return None


def r13_walk_while_you_can(ctx: Context) -> Iterator[Draft]:
    """R13: leg day and cardio due that day or the next -> do it soon, while you can walk."""
    tz = ctx.tz
    for s in ctx.recent:
        if not s.leg_day:
            continue
        due = cardio_due_soon(ctx, s)
        if due is None:
            continue

        def words(at: datetime, _p: bool, s: Session = s,
                  due: datetime | PlannedCardio = due) -> Words:  # fmt: skip
            leg_word = day_word(s.ended_at, tz, at)
            leg = "today's leg day" if leg_word == "today" else f"{leg_word}'s leg day"
            # Read (a snoozed copy) once the session's time or plan day has passed: no plan
            # to speak of, only the cardio not yet done.
            if isinstance(due, PlannedCardio) and at >= due.planned_at:
                return (
                    "Cardio while you can still walk",
                    f"If your {due.kind} is still to do and you expect to be sore after "
                    f"{leg}, do it soon, while you can still walk comfortably, and keep it "
                    "easy.",
                    "If your cardio is still to do, do it soon, while you can still walk.",
                    {},
                )
            if not isinstance(due, PlannedCardio) and at >= end_of_day(due, tz):
                return (
                    "Cardio while you can still walk",
                    f"If your cardio is still to do and you expect to be sore after {leg}, do "
                    "it soon, while you can still walk comfortably, and keep it easy.",
                    "If your cardio is still to do, do it soon, while you can still walk.",
                    {},
                )
            if isinstance(due, PlannedCardio):
                what = f"Your {due.kind} is planned for {fmt_day_clock(due.planned_at, tz, at)}."
            else:
                also = " also" if local_date(due, tz) == local_date(s.ended_at, tz) else ""
                what = f"{day_word(due, tz, at).capitalize()} is{also} a cardio day on your plan."
            return (
                "Cardio while you can still walk",
                f"{what} If you expect to be sore after {leg}, get the cardio done soon, "
                "while you can still walk comfortably, and keep it easy.",
                "If you expect to be sore, get your cardio done soon, while you can still walk.",
                {},
            )

        # True until the cardio is due: a planned session's time, or the end of its plan day.
        until = due.planned_at if isinstance(due, PlannedCardio) else end_of_day(due, tz)
        yield Draft(
            "R13", "cardio_advice", s.key, s.source_event_id, s.known_at + SETTLE,
            min(s.ended_at + timedelta(hours=24), until), (ev.ARTICLE_CLOSING,), words,
            (("cardio_at", due.planned_at),) if isinstance(due, PlannedCardio) else (),
            anchor=s.ended_at,
        )  # fmt: skip
