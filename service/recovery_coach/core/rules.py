"""The thirteen rules of RULES.md as pure functions of (facts, profile, now).

Each rule reads the user's timeline (`Context`: sessions, planned cardio, logs) and yields
`Draft`s: the nudge it wants, with due time and expiry taken from the facts' own times
(never from when a message arrived), and a `words` function that writes the title, message
and speech as they read at a given moment. `coach` places drafts (never in the past, never in
the sleep window) and words them at their delivery time. Wording follows RULES.md and the
article: cardio after leg day is fine at low to moderate effort, cardio is never said to
speed recovery, and no advice goes below 8 h of sleep or outside 1.2-2.0 g/kg unless the
user set it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from functools import cached_property
from typing import Any
from zoneinfo import ZoneInfo

from recovery_coach.core import evidence as ev
from recovery_coach.core.local_time import (
    Night,
    day_word,
    end_of_day,
    fmt_clock,
    fmt_day_clock,
    fmt_duration,
    iso_week,
    local_date,
    local_datetime,
    night_around,
    night_ending,
    wake_on,
)
from recovery_coach.core.models import (
    NudgeKind,
    PlannedCardio,
    Profile,
    RuleId,
    UserState,
    Workout,
)
from recovery_coach.core.timeline import Session, all_activities, effort, is_hard, sessions

LATE_EVENT = timedelta(minutes=30)  # "cool down now" later than this after the end is no use
LOOKBACK = timedelta(hours=72)  # sessions older than this can cause no nudge any more
BEDTIME_LATE = timedelta(minutes=15)  # a bedtime nudge later than this could wake them
SNOOZED_BEDTIME = timedelta(hours=1)  # asked for by the user: they are awake
FULFILS = timedelta(hours=3)
OVERLAP = timedelta(minutes=5)  # activities logged apart may overlap by this much
# R13 waits this long for the rest of a sync: a watch sends a session's activities one by one,
# and a key run or same-session cardio among them silences R13 (one voice).
SETTLE = timedelta(minutes=2)  # a logged cardio this close to a planned one is that session

Words = tuple[str, str, str, dict[str, Any]]  # title, message, speech, data known only then
WordsFn = Callable[[datetime, bool], Words]  # (moment read, its follow-up nudge is sent)


@dataclass(frozen=True)
class Draft:
    """A nudge a rule wants: what it rests on, when it is due and until when it is true."""

    rule: RuleId
    kind: NudgeKind
    key: str  # with user, rule and kind, the nudge id: stable for the same facts
    source_event_id: str
    due: datetime  # from the facts' own times
    expires: datetime | None
    evidence: tuple[str, ...]
    words: WordsFn = field(compare=False)
    data: tuple[tuple[str, Any], ...] = ()  # numbers known from the facts alone
    separation: datetime | None = None  # R4/R5/R6: keep cardio apart from this strength end
    anchor: datetime | None = None  # the leg day an R13 nudge is about


@dataclass(frozen=True)
class Context:
    """What every rule sees: the profile, the remembered facts, and the moment of deciding."""

    profile: Profile
    state: UserState
    now: datetime

    @property
    def tz(self) -> ZoneInfo:
        return self.profile.tz

    @cached_property
    def sessions(self) -> list[Session]:
        """Sessions that may matter now: those in LOOKBACK, and a day before for R5's
        strength before a planned run."""
        return sessions(self.profile, self.state, self.now - LOOKBACK - timedelta(days=1))

    @cached_property
    def recent(self) -> list[Session]:
        """Sessions that may still cause a nudge."""
        return [s for s in self.sessions if s.ended_at >= self.now - LOOKBACK]

    @cached_property
    def all_activities(self) -> list[Workout]:
        """Every remembered activity (R10 reads the whole ISO week)."""
        return all_activities(self.profile, self.state)[0]

    @cached_property
    def activities(self) -> list[Workout]:
        """The activities of the sessions that may matter now."""
        return [a for s in self.sessions for a in s.activities]

    @cached_property
    def planned(self) -> list[PlannedCardio]:
        """Planned cardio still to come, or recent, and not yet done (a logged cardio near it).
        One plan per slot (`planned_at`): the one received last, however it was sent (on its
        own, or as a workout's `next_cardio`)."""
        seen: dict[datetime, PlannedCardio] = {}
        plans = [*self.state.planned_cardio]
        plans += [a.next_cardio for a in self.activities if a.next_cardio is not None]
        for p in plans:
            if p.planned_at < self.now - LOOKBACK:
                continue
            if any(
                a.cardio and abs(a.started_at - p.planned_at) <= FULFILS for a in self.activities
            ):
                continue
            old = seen.get(p.planned_at)
            if old is None or _newer(p, old):
                seen[p.planned_at] = p
        return sorted(seen.values(), key=lambda p: (p.planned_at, p.kind))

    @cached_property
    def awake_cache(self) -> dict[datetime, datetime | None]:
        """Per night (by its wake time): since when an early activity shows them up."""
        return {}

    @cached_property
    def night(self) -> Night:
        """The night around `now` (the next one not yet over)."""
        return night_around(self.profile, self.now)

    def strength_before(self, at: datetime) -> Session | None:
        """The latest session with strength in it that ended by `at`."""
        found = [s for s in self.sessions if s.has_strength and s.strength_ended_at <= at]
        return max(found, key=lambda s: s.strength_ended_at) if found else None


Rule = Callable[[Context], Iterator[Draft]]


def _newer(p: PlannedCardio, than: PlannedCardio) -> bool:
    """Whether plan `p` replaces `than` in their slot: received later; received together
    (or before either was stamped), the key session's."""
    a, b = p.received_at, than.received_at
    if a is not None and b is not None and a != b:
        return a > b
    if (a is None) != (b is None):
        return a is not None
    return p.key_session and not than.key_session


def _num(x: float) -> str:
    """8.0 -> '8', 6.5 -> '6.5'."""
    return f"{x:g}"


def _count(x: float, unit: str) -> str:
    """(1, 'minute') -> '1 minute'; (5, 'minute') -> '5 minutes'; (0.5, 'hour') -> '0.5 hours'."""
    return f"{_num(x)} {unit}" if x == 1 else f"{_num(x)} {unit}s"


def _at(day_clock: str) -> str:
    """'07:00' -> 'at 07:00'; 'tomorrow at 07:00' stays as it is."""
    return day_clock if " at " in day_clock else f"at {day_clock}"


def _fixed(title: str, message: str, speech: str) -> WordsFn:
    return lambda _at, _partnered: (title, message, speech, {})


# ------------------------------------------------------------ R1..R3: after any workout


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


# ------------------------------------------------------------ R4..R7: cardio and strength


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


# ------------------------------------------------------------ R8: protein


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


# ------------------------------------------------------------ R9: sleep


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


# ------------------------------------------------------------ R10: zone 2


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


# ------------------------------------------------------------ R11, R12: soreness


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


# ------------------------------------------------------------ R13: walk while you can


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


RULES: tuple[Rule, ...] = (
    r1_cooldown,
    r2_cardio_cap,
    r3_gains_myth,
    r4_power_caveat,
    r5_endurance_separation,
    r6_hybrid_racer,
    r7_hard_cardio_warning,
    r8_protein,
    r9_bedtime,
    r10_zone2,
    r11_soreness,
    r12_too_much_too_fast,
    r13_walk_while_you_can,
)


def one_voice(drafts: list[Draft], ctx: Context) -> list[Draft]:
    """Nudges never contradict: where R4, R5 or R6 advise keeping cardio apart from strength
    (in this derivation, or in a nudge already sent), R13 does not urge doing the cardio
    soon. A sent one counts once its own draft is gone: a key run's time has passed, but a
    later session's R13 would still contradict what the person was told."""
    apart = [d.separation for d in drafts if d.separation is not None]
    advanced = ctx.profile.running_experience == "advanced"
    apart += [
        n.due_at
        for n in ctx.state.recent_nudges
        if n.rule in ("R4", "R5") or (n.rule == "R6" and not advanced)
    ]
    if not apart:
        return drafts
    window = timedelta(hours=24)
    return [
        d
        for d in drafts
        if not (
            d.rule == "R13"
            and d.anchor is not None
            and any(abs(d.anchor - a) <= window for a in apart)
        )
    ]


def apply_rules(ctx: Context) -> list[Draft]:
    """Every rule's drafts for the user's timeline at `ctx.now`, in rule order, composed."""
    return one_voice([d for rule in RULES for d in rule(ctx)], ctx)
