"""The thirteen rules of RULES.md as pure functions of (event, profile, state, now).

Each rule reads a `Context` and returns the nudges it wants, with due times as the rule sees
them; `coach.place` later applies what no rule may break (never in the past, never inside
the sleep window). Wording follows RULES.md: cardio after leg day is fine at low to moderate
effort, cardio is never said to speed recovery, and no advice goes below 8 h of sleep or
outside 1.2-2.0 g/kg unless the user set it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cached_property
from typing import Any

from . import evidence as ev
from .local_time import (
    Night,
    fmt_clock,
    fmt_day_clock,
    iso_week,
    local_date,
    local_datetime,
    night_around,
    week_fraction_elapsed,
)
from .models import (
    CardioPlanned,
    DayStarted,
    Event,
    Nudge,
    NudgeKind,
    PlannedCardio,
    Profile,
    ProteinLogged,
    RuleId,
    SorenessReported,
    UserState,
    Workout,
    WorkoutCompleted,
    nudge_id_for,
)

LATE_EVENT = timedelta(minutes=30)  # a cooldown reminder later than this is no use


@dataclass(frozen=True)
class Context:
    """What every rule sees: the event, the profile, the state after the event, and now."""

    event: Event
    profile: Profile
    state: UserState
    before: UserState
    now: datetime

    @property
    def tz(self) -> Any:
        return self.profile.tz

    @cached_property
    def night(self) -> Night:
        """The night around `now` (the next one not yet over), computed once per event."""
        return night_around(self.profile, self.now)

    @property
    def workout(self) -> Workout | None:
        return self.event.workout if isinstance(self.event, WorkoutCompleted) else None

    def nudge(
        self,
        rule: RuleId,
        kind: NudgeKind,
        title: str,
        message: str,
        speech: str,
        due: datetime,
        expires: datetime | None,
        evidence: tuple[str, ...],
        data: dict[str, Any] | None = None,
        source: str | None = None,
    ) -> Nudge:
        source_id = source if source is not None else self.event.event_id
        return Nudge(
            nudge_id=nudge_id_for(self.profile.user_id, source_id, rule, kind),
            user=self.profile.user_id,
            rule=rule,
            kind=kind,
            title=title,
            message=message,
            speech=speech,
            due_at=due,
            expires_at=expires,
            source_event_id=source_id,
            evidence=evidence,
            data=tuple(sorted((data or {}).items())),
        )


Rule = Callable[[Context], Iterator[Nudge]]


def _start(ctx: Context, w: Workout) -> datetime:
    return max(w.ended_at, ctx.now)


def _num(x: float) -> str:
    """8.0 -> '8', 6.5 -> '6.5'."""
    return f"{x:g}"


# ------------------------------------------------------------ cardio around a leg day


@dataclass(frozen=True)
class CardioAfterLegs:
    """A leg day and a cardio session after it (planned or logged), as the rules see them."""

    leg_day: Workout
    cardio_at: datetime  # when the cardio starts (planned) or started (logged)
    kind: str
    rpe: float | None
    key_session: bool
    logged: bool


def _cardio_start(w: Workout) -> datetime:
    return w.ended_at - timedelta(minutes=w.duration_min or 0)


def cardio_after_strength(ctx: Context, *, legs_only: bool) -> list[CardioAfterLegs]:
    """Pairs (strength session, later cardio) that this event creates, not older ones."""
    pairs: list[CardioAfterLegs] = []
    strength = [w for w in ctx.state.workouts if (w.leg_day if legs_only else w.strength)]
    w = ctx.workout
    if w is not None and (w.leg_day if legs_only else w.strength):
        if w.next_cardio is not None and w.next_cardio.planned_at >= w.ended_at:
            nc = w.next_cardio
            pairs.append(CardioAfterLegs(w, nc.planned_at, nc.kind, nc.rpe, nc.key_session, False))
        for p in ctx.before.planned_cardio:
            if p.planned_at >= w.ended_at and p != w.next_cardio:
                pairs.append(CardioAfterLegs(w, p.planned_at, p.kind, p.rpe, p.key_session, False))
    elif w is not None and w.cardio:
        start = _cardio_start(w)
        for s in strength:
            if s.ended_at <= start + timedelta(minutes=5) and s is not w:
                pairs.append(CardioAfterLegs(s, start, w.kind, w.rpe, False, True))
    elif isinstance(ctx.event, CardioPlanned):
        p = ctx.event.planned
        for s in strength:
            if s.ended_at <= p.planned_at:
                pairs.append(CardioAfterLegs(s, p.planned_at, p.kind, p.rpe, p.key_session, False))
    return pairs


def _same_day(ctx: Context, a: datetime, b: datetime) -> bool:
    return local_date(a, ctx.tz) == local_date(b, ctx.tz)


# ------------------------------------------------------------------------ R1..R13


def r1_cooldown(ctx: Context) -> Iterator[Nudge]:
    """R1: any workout completed -> cooldown now, and a second nudge when the timer ends."""
    w = ctx.workout
    if w is None or ctx.now - w.ended_at > LATE_EVENT:
        return
    minutes = ctx.profile.settings.cooldown_minutes
    start = _start(ctx, w)
    ends = start + timedelta(minutes=minutes)
    data = {"cooldown_ends_at": ends, "cooldown_minutes": minutes}
    yield ctx.nudge(
        "R1",
        "cooldown_start",
        "Cool down now",
        f"Take {minutes} easy minutes to cool down: a slow walk or an easy spin brings your "
        f"heart rate and blood pressure down gently. I'll tell you when the {minutes} minutes "
        f"are up, at {fmt_clock(ends, ctx.tz)}.",
        f"Time to cool down: {minutes} easy minutes of walking or spinning.",
        start,
        ends,
        (ev.ACSM_COOLDOWN,),
        data,
    )
    yield ctx.nudge(
        "R1",
        "cooldown_done",
        "Cooldown done",
        f"That's your {minutes}-minute cooldown done. Your heart rate and blood pressure have "
        "had time to come down gently.",
        "Cooldown done. Nice work.",
        ends,
        ends + timedelta(minutes=15),
        (ev.ACSM_COOLDOWN,),
        data,
    )


def r2_cardio_cap(ctx: Context) -> Iterator[Nudge]:
    """R2: leg day completed -> cardio is fine, keep it at 6/10 or less."""
    w = ctx.workout
    if w is None or not w.leg_day:
        return
    cap = ctx.profile.settings.moderate_rpe_max
    start = _start(ctx, w)
    yield ctx.nudge(
        "R2",
        "cardio_advice",
        "Cardio after leg day: keep it easy",
        f"Cardio after leg day is fine. Keep it low to moderate: {_num(cap)} or less out of 10, "
        "or the talk test: you can talk but not sing. Save sprints, HIIT and hard spin classes "
        "for fresh legs: on tired legs they raise your injury risk.",
        f"Cardio after leg day is fine. Keep it easy: {_num(cap)} out of 10 or less, "
        "so you can still talk.",
        start,
        start + timedelta(hours=ctx.profile.settings.few_hours),
        (ev.CHURCHILL_LOW_MODERATE, ev.CARLSON_INJURY, ev.CDC_EFFORT),
        {"rpe_cap": cap},
    )


def r3_gains_myth(ctx: Context) -> Iterator[Nudge]:
    """R3: leg day and goal hypertrophy/strength -> cardio does not cost you muscle or strength."""
    w = ctx.workout
    if w is None or not w.leg_day or ctx.profile.goal not in ("hypertrophy", "strength"):
        return
    goal = "muscle size" if ctx.profile.goal == "hypertrophy" else "maximal strength"
    start = _start(ctx, w)
    yield ctx.nudge(
        "R3",
        "cardio_advice",
        "Cardio won't cost you gains",
        f"Doing cardio after lifting does not compromise {goal}: a 2022 meta-analysis found "
        "strength and aerobic training combine fine, even in the same session.",
        f"Good news: cardio after lifting won't cost you {goal}.",
        start,
        start + timedelta(hours=ctx.profile.settings.few_hours),
        (ev.SCHUMANN_2022,),
        {"goal": ctx.profile.goal},
    )


def r4_power_caveat(ctx: Context) -> Iterator[Nudge]:
    """R4: goal power and cardio in the same session -> put cardio on another day."""
    if ctx.profile.goal != "power":
        return
    same = timedelta(minutes=ctx.profile.settings.same_session_minutes)
    w = ctx.workout
    hit = w is not None and w.kind == "mixed"
    if not hit:
        hit = any(
            p.cardio_at - p.leg_day.ended_at <= same
            for p in cardio_after_strength(ctx, legs_only=False)
        )
    if not hit:
        return
    due = ctx.now if w is None else _start(ctx, w)
    yield ctx.nudge(
        "R4",
        "cardio_advice",
        "Power first: cardio on another day",
        "Since explosive power is your priority: doing cardio in the same session as strength "
        "slightly blunts power gains. When you can, put the cardio on another day.",
        "For power, put your cardio on another day when you can.",
        due,
        due + timedelta(hours=ctx.profile.settings.few_hours),
        (ev.SCHUMANN_2022_POWER,),
        {"same_session_minutes": ctx.profile.settings.same_session_minutes},
    )


def r5_endurance_separation(ctx: Context) -> Iterator[Nudge]:
    """R5: goal endurance and a key cardio planned < 6 h after strength -> move it."""
    if ctx.profile.goal != "endurance":
        return
    sep = timedelta(hours=ctx.profile.settings.endurance_separation_hours)
    for p in cardio_after_strength(ctx, legs_only=False):
        if p.logged or not p.key_session or p.cardio_at - p.leg_day.ended_at >= sep:
            continue
        earliest = p.leg_day.ended_at + sep
        gap_h = (p.cardio_at - p.leg_day.ended_at) / timedelta(hours=1)
        night = night_around(ctx.profile, earliest)
        when = fmt_day_clock(earliest, ctx.tz, ctx.now)
        if night.contains(earliest) or not _same_day(ctx, earliest, p.leg_day.ended_at):
            move = f"6 hours after your strength session is {when}, so move it to another day"
        else:
            move = f"move it to {when} or later ({_num(sep / timedelta(hours=1))} h after "
            move += "strength), or better, to another day"
        planned = fmt_day_clock(p.cardio_at, ctx.tz, ctx.now)
        yield ctx.nudge(
            "R5",
            "cardio_warning",
            "Give your key session 6 hours",
            f"Your key {p.kind} at {planned} is only {gap_h:.1f} h after strength, which "
            f"blunts it: {move}. Next time, do the key session before strength or on a "
            "non-strength day.",
            f"Your key {p.kind} is too close to strength. Earliest: {when}.",
            ctx.now,
            p.cardio_at,
            (ev.ROBINEAU_2016, ev.CARLSON_ENDURANCE),
            {
                "earliest_key_cardio_at": earliest,
                "planned_at": p.cardio_at,
                "separation_hours": ctx.profile.settings.endurance_separation_hours,
            },
            source=f"{ctx.event.event_id}@{p.cardio_at.isoformat()}",
        )


def r6_hybrid_racer(ctx: Context) -> Iterator[Nudge]:
    """R6: goal hybrid and cardio after leg day -> advice by running experience."""
    if ctx.profile.goal != "hybrid":
        return
    pairs = [
        p
        for p in cardio_after_strength(ctx, legs_only=True)
        if _same_day(ctx, p.cardio_at, p.leg_day.ended_at)
    ]
    if not pairs:
        return
    if ctx.profile.running_experience == "advanced":
        msg = (
            "Running on legs tired from lifting is good race simulation for Hyrox or an obstacle "
            "race. Just don't overdo it: that is how these sessions turn into injuries."
        )
        speech = "Running on tired legs is good race practice. Just don't overdo it."
    else:
        msg = (
            "Running straight after leg day simulates race fatigue, but that is for advanced "
            "runners. While you build up, rest between the lift and the run."
        )
        speech = "Rest between your lift and your run while you build up."
    yield ctx.nudge(
        "R6",
        "cardio_advice",
        "Hybrid training: lift, then run",
        msg,
        speech,
        ctx.now,
        max(p.cardio_at for p in pairs) + timedelta(hours=1),
        (ev.CHURCHILL_HYBRID,),
        {"running_experience": ctx.profile.running_experience},
    )


def r7_hard_cardio_warning(ctx: Context) -> Iterator[Nudge]:
    """R7: cardio above 6/10 within a few hours after a leg day -> injury warning."""
    s = ctx.profile.settings
    window = timedelta(hours=s.few_hours)
    for p in cardio_after_strength(ctx, legs_only=True):
        if (
            p.rpe is None
            or p.rpe <= s.moderate_rpe_max
            or p.cardio_at - p.leg_day.ended_at > window
        ):
            continue
        if p.logged:
            msg = (
                f"That {p.kind} at {_num(p.rpe)}/10 came within {_num(s.few_hours)} hours of leg "
                "day. Running hard on legs trained hard raises injury risk: next time keep "
                f"cardio after leg day at {_num(s.moderate_rpe_max)}/10 or less."
            )
        else:
            msg = (
                f"Your {p.kind} at {fmt_day_clock(p.cardio_at, ctx.tz, ctx.now)} is planned at "
                f"{_num(p.rpe)}/10, within {_num(s.few_hours)} hours of leg day. Going hard on "
                f"legs trained hard raises injury risk: keep it at {_num(s.moderate_rpe_max)}/10 "
                "or less, or move the hard session to another day."
            )
        yield ctx.nudge(
            "R7",
            "cardio_warning",
            "Hard cardio on tired legs",
            msg,
            f"Careful: hard cardio on tired legs raises injury risk. Keep it at "
            f"{_num(s.moderate_rpe_max)} out of 10 or less.",
            ctx.now,
            max(p.cardio_at, ctx.now) + timedelta(hours=1),
            (ev.CARLSON_INJURY, ev.CDC_EFFORT),
            {"rpe": p.rpe, "rpe_cap": s.moderate_rpe_max, "cardio_at": p.cardio_at},
            source=f"{ctx.event.event_id}@{p.cardio_at.isoformat()}",
        )


def protein_figures(
    profile: Profile, state: UserState, now: datetime
) -> tuple[int | None, int | None]:
    """(target today, still to eat today) in grams; None without a body weight."""
    target = profile.protein_target_g()
    if target is None:
        return None, None
    logged = state.protein_logged_g if state.protein_day == local_date(now, profile.tz) else 0.0
    return target, max(0, round(target - logged))


def protein_nudge(ctx: Context, source: str, due: datetime) -> Nudge:
    """The R8 nudge, worded with the user's own numbers as they stand now."""
    p = ctx.profile
    day = local_date(due, ctx.tz)
    end_of_day = local_datetime(day + timedelta(days=1), datetime.min.time(), ctx.tz)
    logged = ctx.state.protein_logged_g if ctx.state.protein_day == day else 0.0
    data: dict[str, Any] = {"protein_g_per_kg": p.protein_g_per_kg, "range_g_per_kg": [1.2, 2.0]}
    target = p.protein_target_g()
    if target is None or p.weight_kg is None:
        msg = (
            f"Aim for 1.2 to 2.0 g of protein per kg of body weight today "
            f"({_num(p.protein_g_per_kg)} g/kg is your point in that range). Add your weight "
            "(weight_kg) to the config and I'll work out your grams."
        )
        speech = "Aim for 1.2 to 2 grams of protein per kilo of body weight today."
        data.update(protein_target_g=None, protein_remaining_g=None)
    else:
        remaining = max(0, round(target - logged))
        msg = (
            f"Aim for about {target} g of protein today: {_num(p.weight_kg)} kg x "
            f"{_num(p.protein_g_per_kg)} g/kg."
        )
        if logged > 0:
            msg += f" You've logged {round(logged)} g so far: about {remaining} g to go."
        speech = f"Aim for about {target} grams of protein today"
        speech += f", about {remaining} to go." if logged > 0 else "."
        data.update(protein_target_g=target, protein_remaining_g=remaining)
    return ctx.nudge(
        "R8",
        "protein",
        "Protein for recovery",
        msg,
        speech,
        due,
        end_of_day,
        (ev.THOMAS_2016,),
        data,
        source=source,
    )


def r8_protein(ctx: Context) -> Iterator[Nudge]:
    """R8: a strength workout (once a day) -> protein target in grams, reminder after 60 min.

    A protein log before the reminder is due re-words the pending reminder (same id).
    """
    w = ctx.workout
    if w is not None and w.strength:
        day = local_date(w.ended_at, ctx.tz)
        if ctx.state.protein_nudge_day == day:  # cleared when a gym visit is superseded
            return
        delay = timedelta(minutes=ctx.profile.settings.protein_reminder_delay_minutes)
        yield protein_nudge(ctx, w.event_id, max(w.ended_at + delay, ctx.now))
    elif isinstance(ctx.event, ProteinLogged) and ctx.state.pending_protein is not None:
        _, due, source = ctx.state.pending_protein
        if due > ctx.now:
            yield protein_nudge(ctx, source, due)


def r9_bedtime(ctx: Context) -> Iterator[Nudge]:
    """R9: wind-down and bedtime nudges for the night ahead (8 h of real sleep or more).

    Planned once per night (ids come from the night, not the event). A workout that ends
    inside the sleep window gets its own bedtime nudge, at once.
    """
    p = ctx.profile
    every_day = p.settings.bedtime_every_day
    w = ctx.workout
    planning = isinstance(ctx.event, DayStarted) if every_day else w is not None
    if not planning and w is None:
        return
    night = ctx.night
    late_workout = w is not None and night.contains(ctx.now)
    if not late_workout and (not planning or ctx.now >= night.bedtime):
        return  # the common case for a workout: nothing to word
    hours = _num(p.sleep_hours)
    wake = fmt_day_clock(night.wake, ctx.tz, ctx.now)
    data = {
        "bedtime": night.bedtime,
        "winddown_at": night.winddown,
        "wake_at": night.wake,
        "sleep_hours": p.sleep_hours,
    }
    if late_workout:
        yield ctx.nudge(
            "R9",
            "bedtime",
            "Past your bedtime",
            f"It's past {fmt_clock(night.bedtime, ctx.tz)}, your bedtime for {hours} hours of "
            f"sleep before {wake}. Cool down with a few easy minutes, then head to bed, and "
            "sleep in if you can.",
            "It's past your bedtime. A few easy minutes to cool down, then bed.",
            ctx.now,
            night.wake,
            (ev.ACSM_SLEEP, ev.DOHERTY_2021),
            data,
        )
        return
    source = f"night:{local_date(night.wake, ctx.tz).isoformat()}"
    bedtime = fmt_clock(night.bedtime, ctx.tz)
    yield ctx.nudge(
        "R9",
        "bedtime_winddown",
        "Time to wind down",
        f"Start winding down: bedtime is {bedtime} for {hours} hours of sleep before {wake}. "
        "Screens off, lights low.",
        f"Time to wind down. Bedtime is {bedtime}.",
        night.winddown,
        night.bedtime,
        (ev.ACSM_SLEEP, ev.DOHERTY_2021),
        data,
        source=source,
    )
    yield ctx.nudge(
        "R9",
        "bedtime",
        "Bedtime",
        f"It's {bedtime}: lights out now gives you {hours} hours of sleep before {wake}. "
        "Sleep is where most of your recovery happens.",
        f"It's bedtime. Lights out now for {hours} hours of sleep.",
        night.bedtime,
        night.bedtime + timedelta(hours=1),
        (ev.ACSM_SLEEP, ev.DOHERTY_2021),
        data,
        source=source,
    )


def zone2_minutes_now(profile: Profile, state: UserState, now: datetime) -> float:
    """Zone-2 minutes in the user's current ISO week (0 once the week has turned)."""
    return state.zone2_minutes if state.zone2_week == iso_week(now, profile.tz) else 0.0


def r10_zone2(ctx: Context) -> Iterator[Nudge]:
    """R10: 2-3 h of zone-2 a week: a mid-week nudge when behind pace, one when it is met."""
    p = ctx.profile
    s = p.settings
    target = s.zone2_target_minutes_week
    week = iso_week(ctx.now, ctx.tz)
    minutes = zone2_minutes_now(p, ctx.state, ctx.now)
    data = {"zone2_minutes_week": round(minutes), "zone2_target_minutes_week": target}
    source = f"zone2:{week[0]}-W{week[1]:02d}"
    w = ctx.workout
    if isinstance(ctx.event, DayStarted):
        if local_date(ctx.now, ctx.tz).weekday() != s.zone2_check_weekday:
            return
        pace = target * week_fraction_elapsed(ctx.now, ctx.tz)
        if minutes >= pace:
            return
        left = round(target - minutes)
        yield ctx.nudge(
            "R10",
            "zone2_progress",
            "Zone 2 this week",
            f"You have {round(minutes)} of {target} minutes of zone-2 cardio this week, "
            f"{left} to go by Sunday: two or three easy sessions where you can talk but not sing "
            "will do it. Add a few harder efforts too.",
            f"You're at {round(minutes)} of {target} zone 2 minutes this week.",
            ctx.now,
            ctx.now + timedelta(hours=12),
            (ev.CHURCHILL_ZONE2,),
            data,
            source=f"{source}:pace",
        )
    elif w is not None:
        before = zone2_minutes_now(p, ctx.before, ctx.now)
        if before < target <= minutes:
            yield ctx.nudge(
                "R10",
                "zone2_progress",
                "Zone 2 target reached",
                f"That's {round(minutes)} minutes of zone-2 cardio this week: your {target}-minute "
                "target is done. Some higher-intensity efforts round out the week.",
                f"Zone 2 target reached: {round(minutes)} minutes this week.",
                _start(ctx, w),
                _start(ctx, w) + timedelta(hours=12),
                (ev.CHURCHILL_ZONE2,),
                data,
                source=f"{source}:done",
            )


def r11_soreness(ctx: Context) -> Iterator[Nudge]:
    """R11: soreness reported -> what helps (and that cardio neither helps nor hurts recovery)."""
    e = ctx.event
    if not isinstance(e, SorenessReported) or e.level < 1:
        return
    if ctx.before.soreness_advice_day == local_date(e.at, ctx.tz):
        return
    yield ctx.nudge(
        "R11",
        "recovery_advice",
        "Sore? What actually helps",
        "Cardio won't speed up or slow down your recovery: protein and sleep matter most. For "
        "the soreness itself, massage works best: try 10 minutes with a foam roller or a "
        "lacrosse ball. Compression, contrast showers, cold therapy and an easy walk also help.",
        "Protein and sleep matter most. For soreness, a foam roller works best.",
        max(e.at, ctx.now),
        max(e.at, ctx.now) + timedelta(hours=12),
        (ev.CARLSON_RECOVERY, ev.DUPUY_2018),
    )


def severe_streak(profile: Profile, state: UserState) -> int:
    """Consecutive local days, ending with the latest report, with severe soreness."""
    threshold = profile.settings.severe_soreness_level
    days = sorted(state.soreness)
    streak = 0
    expected = None
    for day, level in reversed(days):
        if level < threshold or (expected is not None and day != expected):
            break
        streak += 1
        expected = day - timedelta(days=1)
    return streak


def r12_too_much_too_fast(ctx: Context) -> Iterator[Nudge]:
    """R12: severe soreness on 2+ days in a row -> too much too fast; avoid novelty."""
    e = ctx.event
    s = ctx.profile.settings
    if not isinstance(e, SorenessReported) or e.level < s.severe_soreness_level:
        return
    today = local_date(e.at, ctx.tz)
    streak = severe_streak(ctx.profile, ctx.state)
    if streak < s.severe_soreness_days or ctx.before.overreach_day == today:
        return
    yield ctx.nudge(
        "R12",
        "recovery_advice",
        "Too much, too fast?",
        f"Very sore {streak} days in a row is a sign of doing too much too fast. If keeping "
        "soreness down matters to you, avoid new exercises and big changes in your next few "
        "sessions: soreness comes mostly from doing something new.",
        "Very sore days in a row mean too much too fast. Keep your next sessions familiar.",
        max(e.at, ctx.now),
        max(e.at, ctx.now) + timedelta(hours=24),
        (ev.CARLSON_NOVELTY,),
        {"days_in_a_row": streak},
    )


def cardio_due_soon(ctx: Context, w: Workout) -> datetime | PlannedCardio | None:
    """Cardio planned (or on the weekly plan, not yet done) today or tomorrow, after leg day."""
    today = local_date(w.ended_at, ctx.tz)
    days = {today, today + timedelta(days=1)}
    planned = list(ctx.state.planned_cardio)
    for p in sorted(planned, key=lambda p: p.planned_at):
        if p.planned_at >= w.ended_at and local_date(p.planned_at, ctx.tz) in days:
            return p
    cardio_done_today = any(
        x.cardio and local_date(x.ended_at, ctx.tz) == today for x in ctx.state.workouts
    )
    if ctx.profile.plan_for(today.weekday()) == "cardio" and not cardio_done_today:
        return w.ended_at
    tomorrow = today + timedelta(days=1)
    if ctx.profile.plan_for(tomorrow.weekday()) == "cardio":
        return local_datetime(tomorrow, datetime.min.time(), ctx.tz)
    return None


def r13_walk_while_you_can(ctx: Context) -> Iterator[Nudge]:
    """R13: leg day and cardio due today or tomorrow -> do it soon, while you can still walk."""
    w = ctx.workout
    if w is None or not w.leg_day:
        return
    due = cardio_due_soon(ctx, w)
    if due is None:
        return
    if isinstance(due, PlannedCardio):
        when = fmt_day_clock(due.planned_at, ctx.tz, ctx.now)
        what = f"Your {due.kind} is planned for {when}."
    elif _same_day(ctx, due, w.ended_at):
        what = "Today is also a cardio day on your plan."
    else:
        what = "Tomorrow is a cardio day on your plan."
    start = _start(ctx, w)
    yield ctx.nudge(
        "R13",
        "cardio_advice",
        "Cardio while you can still walk",
        f"{what} If you expect to be sore after today's leg day, get the cardio done soon, "
        "while you can still walk comfortably, and keep it easy.",
        "If you expect to be sore, get your cardio done soon, while you can still walk.",
        start,
        start + timedelta(hours=24),
        (ev.ARTICLE_CLOSING,),
    )


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


def apply_rules(ctx: Context) -> list[Nudge]:
    """Every rule's nudges for this event, in rule order."""
    return [n for rule in RULES for n in rule(ctx)]
