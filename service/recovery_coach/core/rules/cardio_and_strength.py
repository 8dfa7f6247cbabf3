"""R4 to R7: cardio beside strength: the power caveat, endurance separation, the hybrid
racer, and hard cardio on tired legs."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta

from recovery_coach.core import evidence as ev
from recovery_coach.core.local_time import (
    day_word,
    fmt_day_clock,
    fmt_duration,
    local_date,
    night_around,
)
from recovery_coach.core.models import (
    PlannedCardio,
    Workout,
)
from recovery_coach.core.rules.context import Context, Draft, Words, WordsFn, _count, _fixed, _num
from recovery_coach.core.timeline import Session, is_hard

LATE_EVENT = timedelta(minutes=30)  # "cool down now" later than this after the end is no use
LOOKBACK = timedelta(hours=72)  # sessions older than this can cause no nudge any more
BEDTIME_LATE = timedelta(minutes=15)  # a bedtime nudge later than this could wake them
SNOOZED_BEDTIME = timedelta(hours=1)  # asked for by the user: they are awake
FULFILS = timedelta(hours=3)
OVERLAP = timedelta(minutes=5)  # activities logged apart may overlap by this much
# R13 waits this long for the rest of a sync: a watch sends a session's activities one by one,
# and a key run or same-session cardio among them silences R13 (one voice).
SETTLE = timedelta(minutes=2)  # a logged cardio this close to a planned one is that session


def r4_power_caveat(ctx: Context) -> Iterator[Draft]:
    """R4: goal power and cardio in the same session as strength (either order) -> another day."""
    if ctx.profile.goal != "power":
        return
    st = ctx.profile.settings
    same = timedelta(minutes=st.same_session_minutes)
    few = timedelta(hours=st.few_hours)

    def words_for(planned_at: datetime | None) -> WordsFn:
        """Before a planned cardio begins: put it on another day; once done: next time."""

        def words(at: datetime, _p: bool) -> Words:
            ahead = planned_at is not None and at < planned_at
            advice = (
                "When you can, put the cardio on another day."
                if ahead
                else "Next time, put the cardio on another day."
            )
            return (
                "Power first: cardio on another day",
                "Since explosive power is your priority: doing cardio in the same session as "
                f"strength slightly blunts power gains. {advice}",
                "For power, put your cardio on another day when you can.",
                {},
            )

        return words

    data = (("same_session_minutes", st.same_session_minutes),)
    flagged: set[str] = set()
    for s in ctx.recent:
        if s.has_strength and s.mixed:
            flagged.add(s.key)
            yield Draft(
                "R4", "cardio_advice", s.key, s.source_event_id, s.known_at, s.ended_at + few,
                (ev.SCHUMANN_2022_POWER,), words_for(None), data,
                separation=s.strength_ended_at,
            )  # fmt: skip
    for p in ctx.planned:
        before = ctx.strength_before(p.planned_at)
        if (
            before is None
            or before.key in flagged
            or p.planned_at - before.strength_ended_at > same
        ):
            continue
        s = before
        flagged.add(s.key)
        yield Draft(
            "R4", "cardio_advice", s.key, s.source_event_id, s.known_at,
            max(p.planned_at, s.ended_at + few), (ev.SCHUMANN_2022_POWER,),
            words_for(p.planned_at), (*data, ("cardio_at", p.planned_at)),
            separation=s.strength_ended_at,
        )  # fmt: skip


def r5_endurance_separation(ctx: Context) -> Iterator[Draft]:
    """R5: goal endurance and a key cardio planned < 6 h after the latest strength -> move it."""
    if ctx.profile.goal != "endurance":
        return
    hours = ctx.profile.settings.endurance_separation_hours
    sep = timedelta(hours=hours)
    tz = ctx.tz
    for p in ctx.planned:
        if not p.key_session:
            continue
        s = ctx.strength_before(p.planned_at)
        if s is None or p.planned_at - s.strength_ended_at >= sep:
            continue
        earliest = s.strength_ended_at + sep
        gap = fmt_duration(p.planned_at - s.strength_ended_at)
        late = night_around(ctx.profile, earliest).contains(earliest) or local_date(
            earliest, tz
        ) != local_date(s.strength_ended_at, tz)

        def words(at: datetime, _p: bool, p: PlannedCardio = p, e: datetime = earliest,
                  gap: str = gap, late: bool = late) -> Words:  # fmt: skip
            when = fmt_day_clock(e, tz, at)
            if at >= p.planned_at:  # read once it has begun (a snoozed copy): next time
                return (
                    f"Give your key session {_count(hours, 'hour')}",
                    f"Your key {p.kind} at {fmt_day_clock(p.planned_at, tz, at)} came only "
                    f"{gap} after strength, which blunts it. Next time, do the key session "
                    f"before strength, on a non-strength day, or {_count(hours, 'hour')} after it.",
                    f"Next time, keep your key {p.kind} {_count(hours, 'hour')} from strength.",
                    {},
                )
            if late:
                move = f"{_count(hours, 'hour')} after your strength session is {when}, so move it "
                move += "to another day"
            else:
                move = f"move it to {when} or later ({_num(hours)} h after strength), or better, "
                move += "to another day"
            return (
                f"Give your key session {_count(hours, 'hour')}",
                f"Your key {p.kind} at {fmt_day_clock(p.planned_at, tz, at)} is only {gap} "
                f"after strength, which blunts it: {move}. Next time, do the key session before "
                "strength or on a non-strength day.",
                f"Your key {p.kind} is too close to strength. Earliest: {when}.",
                {},
            )

        yield Draft(
            "R5", "cardio_warning", f"r5:{p.planned_at.isoformat()}:{p.kind}", s.source_event_id,
            s.known_at, p.planned_at, (ev.ROBINEAU_2016, ev.CARLSON_ENDURANCE), words,
            (
                ("earliest_key_cardio_at", earliest),
                ("planned_at", p.planned_at),
                ("separation_hours", hours),
            ),
            separation=s.strength_ended_at,
        )  # fmt: skip


@dataclass(frozen=True)
class _After:
    """Cardio (logged or planned) within a few hours after, or in the session of, a leg day."""

    leg: Session
    start: datetime
    kind: str
    rpe: float | None
    zone: int | None
    logged: Workout | None
    key: str

    @property
    def known_at(self) -> datetime:
        return max(self.leg.known_at, self.logged.known_at if self.logged else self.leg.known_at)

    def expires(self, few: timedelta) -> datetime:
        if self.logged is not None:
            return max(self.logged.ended_at, self.leg.ended_at) + few
        return self.start + timedelta(hours=1)


def cardio_near_leg_day(ctx: Context, *, before_too: bool) -> list[_After]:
    """Pairs (leg-day session, cardio) where the cardio starts within `few_hours` after the
    leg work ends, across midnight; with `before_too`, cardio just before it in the same
    session counts as well."""
    few = timedelta(hours=ctx.profile.settings.few_hours)
    out: list[_After] = []
    legs = [s for s in ctx.recent if s.leg_day]
    for a in ctx.activities:
        if not a.cardio:
            continue
        for s in legs:
            leg_end = max(w.ended_at for w in s.activities if w.leg_day)
            in_session = a in s.activities
            # from 5 min before the leg work ends (clocks and logging overlap) to few_hours
            after = -OVERLAP <= a.started_at - leg_end <= few
            if after or (before_too and in_session):
                out.append(_After(s, a.started_at, a.kind, a.rpe, a.zone, a, a.event_id))
    for p in ctx.planned:
        for s in legs:
            leg_end = max(w.ended_at for w in s.activities if w.leg_day)
            if timedelta(0) <= p.planned_at - leg_end <= few:
                key = f"{p.planned_at.isoformat()}:{p.kind}"
                out.append(_After(s, p.planned_at, p.kind, p.rpe, None, None, key))
    return out


def r6_hybrid_racer(ctx: Context) -> Iterator[Draft]:
    """R6: goal hybrid and cardio within a few hours after leg day -> advice by experience."""
    if ctx.profile.goal != "hybrid":
        return
    few = timedelta(hours=ctx.profile.settings.few_hours)
    by_leg: dict[str, list[_After]] = {}
    for pair in cardio_near_leg_day(ctx, before_too=False):
        by_leg.setdefault(pair.leg.key, []).append(pair)
    advanced = ctx.profile.running_experience == "advanced"
    if advanced:
        words = _fixed(
            "Hybrid training: lift, then run",
            "Running on legs tired from lifting is good race simulation for Hyrox or an "
            "obstacle race. Just don't overdo it: overdoing it can lead to injury.",
            "Running on tired legs is good race practice. Just don't overdo it.",
        )
    else:
        words = _fixed(
            "Hybrid training: rest between lift and run",
            "Running straight after leg day simulates race fatigue, but that is for advanced "
            "runners. While you build up, rest between the lift and the run.",
            "Rest between your lift and your run while you build up.",
        )
    for pairs in by_leg.values():
        leg = pairs[0].leg
        yield Draft(
            "R6", "cardio_advice", leg.key, leg.source_event_id,
            min(p.known_at for p in pairs), max(p.expires(few) for p in pairs),
            (ev.CHURCHILL_HYBRID,), words,
            (("running_experience", ctx.profile.running_experience),),
            separation=None if advanced else leg.strength_ended_at,
        )  # fmt: skip


def r7_hard_cardio_warning(ctx: Context) -> Iterator[Draft]:
    """R7: hard cardio (rpe over 6/10, or zone 4-5) in the session of, or within a few hours
    after, a leg day -> injury warning. A hard spin class counts (RULES.md R2)."""
    st = ctx.profile.settings
    few = timedelta(hours=st.few_hours)
    cap = _num(st.moderate_rpe_max)
    tz = ctx.tz
    done: set[str] = set()
    for p in cardio_near_leg_day(ctx, before_too=True):
        if not is_hard(ctx.profile, p.rpe, p.zone) or p.key in done:
            continue
        done.add(p.key)
        effort = f"{_num(p.rpe)}/10" if p.rpe is not None else f"zone {p.zone}"
        what = "class" if p.kind == "class" else p.kind

        def words(at: datetime, _p: bool, p: _After = p, effort: str = effort,
                  what: str = what) -> Words:  # fmt: skip
            if p.logged is not None:
                msg = (
                    f"That {what} at {effort} came with {day_word(p.leg.ended_at, tz, at)}'s leg "
                    "day. Going hard on legs trained hard raises injury risk: next time keep "
                    f"cardio around leg day at {cap}/10 or less."
                )
            elif at >= p.start:  # read once it has begun: no longer a plan to change
                msg = (
                    f"Your {what} from {fmt_day_clock(p.start, tz, at)} at {effort} comes within "
                    f"{_count(st.few_hours, 'hour')} of leg day. Going hard on legs trained "
                    f"hard raises injury risk: if you're on it now, ease off to {cap}/10 or less."
                )
            else:
                msg = (
                    f"Your {what} at {fmt_day_clock(p.start, tz, at)} is planned at {effort}, "
                    f"within {_count(st.few_hours, 'hour')} of leg day. Going hard on legs trained "
                    f"hard raises injury risk: keep it at {cap}/10 or less, or move the hard "
                    "session to another day."
                )
            speech = (
                "Careful: hard cardio on tired legs raises injury risk. Keep it at "
                f"{cap} out of 10 or less."
            )
            return "Hard cardio on tired legs", msg, speech, {}

        yield Draft(
            "R7", "cardio_warning", f"r7:{p.key}", p.leg.source_event_id, p.known_at,
            p.expires(few), (ev.CARLSON_INJURY, ev.CDC_EFFORT), words,
            (("rpe", p.rpe), ("zone", p.zone), ("rpe_cap", st.moderate_rpe_max),
             ("cardio_at", p.start)),
        )  # fmt: skip
