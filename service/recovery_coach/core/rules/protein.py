"""R8: protein for the day, 1.2 to 2.0 g/kg."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from recovery_coach.core import evidence as ev
from recovery_coach.core.local_time import (
    local_date,
    night_around,
)
from recovery_coach.core.models import (
    Profile,
    UserState,
)
from recovery_coach.core.rules.context import Context, Draft, Words, WordsFn, _num
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


def protein_logged(state: UserState, day: date, tz: ZoneInfo) -> float:
    return sum(p.grams for p in state.protein if local_date(p.at, tz) == day)


def protein_figures(
    profile: Profile, state: UserState, now: datetime
) -> tuple[int | None, int | None]:
    """(target today, still to eat today) in grams; None without a body weight."""
    target = profile.protein_target_g()
    if target is None:
        return None, None
    logged = protein_logged(state, local_date(now, profile.tz), profile.tz)
    return target, max(0, round(target - logged))


def protein_words(profile: Profile, state: UserState) -> WordsFn:
    """The R8 nudge, worded with the user's own numbers as they stand when it is read."""
    tz = profile.tz
    per_kg = profile.protein_g_per_kg

    def words(at: datetime, _p: bool) -> Words:
        logged = protein_logged(state, local_date(at, tz), tz)
        data: dict[str, Any] = {"protein_g_per_kg": per_kg, "range_g_per_kg": [1.2, 2.0]}
        above = (
            " That is above the usual 1.2 to 2.0 g/kg, as you set: some people need more."
            if per_kg > 2.0
            else ""
        )
        target = profile.protein_target_g()
        if target is None or profile.weight_kg is None:
            msg = (
                f"Aim for 1.2 to 2.0 g of protein per kg of body weight today ({_num(per_kg)} "
                "g/kg is your point in that range). Add your weight (weight_kg) and I'll work "
                "out your grams."
            )
            if above:
                msg = (
                    f"Aim for {_num(per_kg)} g of protein per kg of body weight today.{above} "
                    "Add your weight (weight_kg) and I'll work out your grams."
                )
            speech = "Aim for 1.2 to 2 grams of protein per kilo of body weight today."
            data.update(protein_target_g=None, protein_remaining_g=None)
            return "Protein for recovery", msg, speech, data
        remaining = max(0, round(target - logged))
        msg = (
            f"Aim for about {target} g of protein today: {_num(profile.weight_kg)} kg x "
            f"{_num(per_kg)} g/kg.{above}"
        )
        if logged > 0:
            msg += f" You've logged {round(logged)} g so far today: about {remaining} g to go."
        speech = f"Aim for about {target} grams of protein today"
        speech += f", about {remaining} to go." if logged > 0 else "."
        data.update(protein_target_g=target, protein_remaining_g=remaining)
        return "Protein for recovery", msg, speech, data

    return words


def protein_met(profile: Profile, state: UserState, at: datetime) -> bool:
    """The day's target is met, to the gram the nudge would state: no reminder then."""
    target = profile.protein_target_g()
    logged = protein_logged(state, local_date(at, profile.tz), profile.tz)
    return target is not None and round(target - logged) <= 0


def r8_protein(ctx: Context) -> Iterator[Draft]:
    """R8: a strength session (once a day) -> protein target in grams, reminder after 60 min.

    The reminder belongs to the day of the first strength session; it is worded at delivery
    with that day's intake, and not sent once the day's target is met.
    """
    delay = timedelta(minutes=ctx.profile.settings.protein_reminder_delay_minutes)
    first: dict[date, Session] = {}
    for s in ctx.recent:
        if s.has_strength:
            first.setdefault(local_date(s.strength_ended_at, ctx.tz), s)
    words = protein_words(ctx.profile, ctx.state)
    few = timedelta(hours=ctx.profile.settings.few_hours)
    for day, s in first.items():
        due = max(s.strength_ended_at + delay, s.known_at)
        if protein_met(ctx.profile, ctx.state, max(due, ctx.now)):
            continue
        # Useful that day, and the next morning if the evening ran into the night.
        expires = night_around(ctx.profile, s.strength_ended_at).wake + few
        yield Draft(
            "R8", "protein", f"protein:{day.isoformat()}", s.source_event_id, due, expires,
            (ev.THOMAS_2016,), words,
        )  # fmt: skip
