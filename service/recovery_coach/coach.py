"""The pure core: one event in, one frozen `Decision` out.

`decide` records the event's facts in the user's state (history, gym visits, protein,
soreness, zone-2 minutes), runs the rule table, and places each nudge in time (never in the
past, never inside the sleep window). No I/O and no clock reads: `now` is an argument.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

from .local_time import Night, iso_week, local_date, next_wake, night_around
from .models import (
    CardioPlanned,
    DayStarted,
    Decision,
    Event,
    GymCheckin,
    GymCheckout,
    Nudge,
    NudgeAcked,
    NudgeKind,
    NudgeSnoozed,
    NudgeSummary,
    OpenVisit,
    Profile,
    ProteinLogged,
    SorenessReported,
    SynthesizedVisit,
    UserState,
    Workout,
    WorkoutCompleted,
    nudge_id_for,
)
from .rules import Context, apply_rules, protein_figures, protein_nudge, zone2_minutes_now

HISTORY = timedelta(days=14)
RECENT_NUDGES = 20
# A watch often syncs a workout a little after the checkout; it still belongs to the visit.
VISIT_SLACK = timedelta(minutes=30)

# Inside the sleep window these wait for the wake time; the others are tied to the moment.
DEFERRED_KINDS: frozenset[NudgeKind] = frozenset(
    {"cardio_advice", "cardio_warning", "protein", "zone2_progress", "recovery_advice"}
)


class RefusalError(Exception):
    """A command the core cannot act on (e.g. snoozing a nudge it never sent)."""


# ------------------------------------------------------------------ placement


def place(
    nudge: Nudge, profile: Profile, now: datetime, night_now: Night | None = None
) -> tuple[Nudge | None, str]:
    """Apply what no rule may break; returns (placed nudge or None, what was done).

    `night_now` (the night around `now`) may be passed in when placing many nudges at once.
    """
    due = max(nudge.due_at, now)
    expires = nudge.expires_at
    note = "scheduled"
    if nudge.kind != "bedtime":
        night = night_now or night_around(profile, now)
        # Nights do not overlap: before the next night's bedtime no window can hold `due`.
        if due >= night.wake:
            night = night_around(profile, due)
        if night.contains(due):
            if nudge.kind not in DEFERRED_KINDS:
                return None, "dropped: due inside the sleep window"
            if expires is not None:
                expires = night.wake + (expires - nudge.due_at)
            due = night.wake
            note = "deferred to wake time"
    if expires is not None and expires <= due:
        return None, "dropped: expired before it was due"
    if due == nudge.due_at and expires == nudge.expires_at:
        return nudge, note
    return replace(nudge, due_at=due, expires_at=expires), note


# ------------------------------------------------------------------ recording facts


def _prune(state: UserState, now: datetime) -> UserState:
    horizon = now - HISTORY
    tz_day = (now - HISTORY).date()
    if (
        (not state.workouts or state.workouts[0].ended_at >= horizon)
        and all(p.planned_at >= horizon for p in state.planned_cardio)
        and (not state.soreness or state.soreness[0][0] >= tz_day)
    ):
        return state  # nothing old enough to forget (workouts and soreness are sorted)
    return replace(
        state,
        workouts=tuple(w for w in state.workouts if w.ended_at >= horizon),
        planned_cardio=tuple(p for p in state.planned_cardio if p.planned_at >= now - HISTORY),
        soreness=tuple((d, lvl) for d, lvl in state.soreness if d >= tz_day),
    )


def _add_zone2(profile: Profile, state: UserState, w: Workout) -> UserState:
    s = profile.settings
    if w.kind not in ("cardio", "class") or not w.duration_min:
        return state
    if w.zone is not None:
        counts = w.zone == 2
    else:
        counts = w.rpe is not None and s.zone2_rpe_min <= w.rpe <= s.moderate_rpe_max
    if not counts:
        return state
    week = iso_week(w.ended_at, profile.tz)
    if state.zone2_week is None or week > state.zone2_week:
        return replace(state, zone2_week=week, zone2_minutes=w.duration_min)
    if week == state.zone2_week:
        return replace(state, zone2_minutes=state.zone2_minutes + w.duration_min)
    return state  # a late event from a week already closed


def _record_workout(profile: Profile, state: UserState, w: Workout) -> UserState:
    workouts = tuple(sorted((*state.workouts, w), key=lambda x: x.ended_at))
    planned = state.planned_cardio
    if w.cardio:  # the planned session it fulfils is done
        planned = tuple(p for p in planned if abs(p.planned_at - w.ended_at) > timedelta(hours=3))
    if w.next_cardio is not None and w.next_cardio not in planned:
        planned = (*planned, w.next_cardio)
    visit = state.open_visit
    if visit is not None and w.ended_at >= visit.at and not w.from_gym_visit:
        visit = replace(visit, workout_seen=True)
    return _add_zone2(
        profile, replace(state, workouts=workouts, planned_cardio=planned, open_visit=visit), w
    )


def _visit_workout(profile: Profile, checkout: GymCheckout, started: datetime | None) -> Workout:
    """A gym visit with no workout event: its focus comes from the weekly plan, else `full`."""
    day = local_date(started or checkout.at, profile.tz)
    plan = profile.plan_for(day.weekday())
    minutes = (checkout.at - started) / timedelta(minutes=1) if started else None
    if plan == "cardio":
        return Workout(
            event_id=f"{checkout.event_id}:visit",
            ended_at=checkout.at,
            kind="cardio",
            duration_min=minutes,
            from_gym_visit=True,
        )
    focus = "full" if plan in (None, "rest", "cardio") else plan
    return Workout(
        event_id=f"{checkout.event_id}:visit",
        ended_at=checkout.at,
        kind="strength",
        focus=focus,  # type: ignore[arg-type]
        duration_min=minutes,
        from_gym_visit=True,
    )


def _supersede_visit(state: UserState, w: Workout) -> tuple[UserState, tuple[str, ...]]:
    """A real workout during a visit that was already turned into a workout replaces it."""
    v = state.synthesized_visit
    if v is None or w.from_gym_visit:
        return state, ()
    if not (v.started_at - VISIT_SLACK <= w.ended_at <= v.ended_at + VISIT_SLACK):
        return state, ()
    pending = state.pending_protein
    protein_cancelled = pending is not None and pending[0] in v.nudge_ids
    state = replace(
        state,
        workouts=tuple(x for x in state.workouts if x.event_id != v.workout_event_id),
        synthesized_visit=None,
        pending_protein=None if protein_cancelled else pending,
        protein_nudge_day=None if protein_cancelled else state.protein_nudge_day,
    )
    return state, v.nudge_ids


def record(
    event: Event, profile: Profile, state: UserState, now: datetime
) -> tuple[Event, UserState, tuple[str, ...]]:
    """The state with this event's facts; may turn a checkout into a workout event.

    Returns (the event the rules should see, new state, nudge ids to cancel).
    """
    tz = profile.tz
    today = local_date(now, tz)
    if state.protein_day is not None and state.protein_day != today:
        state = replace(state, protein_day=None, protein_logged_g=0.0)
    state = _prune(state, now)
    cancel: tuple[str, ...] = ()
    match event:
        case WorkoutCompleted(workout=w):
            state, cancel = _supersede_visit(state, w)
            state = _record_workout(profile, state, w)
        case GymCheckin():
            state = replace(state, open_visit=OpenVisit(event.event_id, event.at))
        case GymCheckout():
            visit = state.open_visit
            state = replace(state, open_visit=None)
            if visit is not None and visit.workout_seen:
                return event, state, ()
            if visit is None and any(
                event.at - timedelta(hours=profile.settings.few_hours)
                <= w.ended_at
                <= event.at + VISIT_SLACK
                for w in state.workouts
            ):
                return event, state, ()  # no check-in seen, but a workout covers the visit
            w = _visit_workout(profile, event, visit.at if visit else None)
            state = _record_workout(profile, state, w)
            return WorkoutCompleted(w), state, ()
        case CardioPlanned(planned=p):
            if p not in state.planned_cardio:
                state = replace(state, planned_cardio=(*state.planned_cardio, p))
        case ProteinLogged():
            if local_date(event.at, tz) == today:
                state = replace(
                    state, protein_day=today, protein_logged_g=state.protein_logged_g + event.grams
                )
        case SorenessReported():
            day = local_date(event.at, tz)
            levels = dict(state.soreness)
            levels[day] = max(levels.get(day, 0), event.level)
            state = replace(state, soreness=tuple(sorted(levels.items())))
        case DayStarted() | NudgeAcked() | NudgeSnoozed():
            pass
    return event, state, cancel


# ------------------------------------------------------------------ commands on nudges


def _find_nudge(state: UserState, nudge_id: str) -> NudgeSummary:
    recent = state.recent_nudges
    if nudge_id == "last" and recent:
        return recent[-1]
    for n in recent:
        if n.nudge_id == nudge_id:
            return n
    raise RefusalError(f"there is no recent nudge with id '{nudge_id}' to act on")


def _command(
    event: NudgeAcked | NudgeSnoozed, profile: Profile, state: UserState, now: datetime
) -> Decision:
    target = _find_nudge(state, event.nudge_id)
    if isinstance(event, NudgeAcked):
        recent = tuple(
            replace(n, acknowledged=True) if n == target else n for n in state.recent_nudges
        )
        return Decision(state=replace(state, recent_nudges=recent))
    due = now + timedelta(minutes=event.minutes)
    nudge_id = nudge_id_for(profile.user_id, event.event_id, target.rule, target.kind)
    snoozed = (("snoozed_from", target.nudge_id),)
    kept = tuple(kv for kv in target.data if kv[0] != "snoozed_from")
    nudge = Nudge(
        nudge_id=nudge_id,
        user=profile.user_id,
        rule=target.rule,
        kind=target.kind,
        title=target.title,
        message=target.message,
        speech=target.speech,
        due_at=due,
        expires_at=due + timedelta(hours=1),
        source_event_id=target.source_event_id,
        evidence=target.evidence,
        data=tuple(sorted((*kept, *snoozed))),
    )
    if target.kind == "protein":  # the contract's numbers, as they stand when it comes back
        ctx = Context(event=event, profile=profile, state=state, before=state, now=now)
        fresh = protein_nudge(ctx, target.source_event_id, due)
        nudge = replace(fresh, nudge_id=nudge_id, expires_at=nudge.expires_at)
        nudge = replace(nudge, data=tuple(sorted((*fresh.data, *snoozed))))
    placed, why = place(nudge, profile, now)
    if placed is None:
        return Decision(state=state, dropped=((nudge.nudge_id, why),))
    return Decision(state=state, nudges=(placed,))


# ------------------------------------------------------------------ the decision


def decide(event: Event, profile: Profile, state: UserState, now: datetime) -> Decision:
    """What to tell this user, and when, because of this event. Raises RefusalError."""
    if isinstance(event, NudgeAcked | NudgeSnoozed):
        return _command(event, profile, state, now)
    seen, after, cancel = record(event, profile, state, now)
    ctx = Context(event=seen, profile=profile, state=after, before=state, now=now)
    placed: list[Nudge] = []
    dropped: list[tuple[str, str]] = []
    ids: set[str] = set()
    for nudge in apply_rules(ctx):
        if nudge.nudge_id in ids:
            continue  # e.g. R7 pairing one cardio with two leg days: one warning is enough
        ids.add(nudge.nudge_id)
        p, why = place(nudge, profile, now, ctx.night)
        if p is None:
            dropped.append((nudge.nudge_id, why))
        else:
            placed.append(p)
    after = _remember(after, seen, placed, profile)
    return Decision(state=after, nudges=tuple(placed), cancel=cancel, dropped=tuple(dropped))


def _remember(state: UserState, event: Event, placed: list[Nudge], profile: Profile) -> UserState:
    """What the state must know of the nudges just placed (cooldown, protein, once-a-day marks)."""
    tz = profile.tz
    for n in placed:
        if n.kind == "cooldown_start":
            state = replace(state, cooldown_ends_at=n.data_dict()["cooldown_ends_at"])
        elif n.kind == "protein":
            state = replace(
                state,
                protein_nudge_day=local_date(n.due_at, tz),
                pending_protein=(n.nudge_id, n.due_at, n.source_event_id),
            )
        elif n.rule == "R11":
            state = replace(state, soreness_advice_day=local_date(n.due_at, tz))
        elif n.rule == "R12":
            state = replace(state, overreach_day=local_date(n.due_at, tz))
    if isinstance(event, WorkoutCompleted) and event.workout.from_gym_visit:
        w = event.workout
        started = w.ended_at - timedelta(minutes=w.duration_min or 0)
        visit = SynthesizedVisit(w.event_id, started, w.ended_at, tuple(n.nudge_id for n in placed))
        state = replace(state, synthesized_visit=visit)
    return state


def published(state: UserState, nudge: Nudge) -> UserState:
    """The state once a nudge has gone out: it becomes the last nudge, ack/snooze can find it."""
    summary = NudgeSummary(
        nudge_id=nudge.nudge_id,
        kind=nudge.kind,
        rule=nudge.rule,
        title=nudge.title,
        message=nudge.message,
        speech=nudge.speech,
        due_at=nudge.due_at,
        source_event_id=nudge.source_event_id,
        evidence=nudge.evidence,
        data=nudge.data,
    )
    recent = tuple(n for n in state.recent_nudges if n.nudge_id != nudge.nudge_id)
    pending = state.pending_protein
    if pending is not None and pending[0] == nudge.nudge_id:
        pending = None
    return replace(
        state, recent_nudges=(*recent, summary)[-RECENT_NUDGES:], pending_protein=pending
    )


def next_day_start(profile: Profile, now: datetime) -> datetime:
    """When the user's next day starts (their next wake time): the daily planning tick."""
    return next_wake(profile, now)


def day_event_id(profile: Profile, at: datetime) -> str:
    return f"day:{local_date(at, profile.tz).isoformat()}"


def state_view(profile: Profile, state: UserState, now: datetime) -> dict[str, Any]:
    """The retained `<base>/<user>/state` payload (contract fields first, then additions)."""
    tz = profile.tz
    night = night_around(profile, now)
    target, remaining = protein_figures(profile, state, now)
    zone2 = zone2_minutes_now(profile, state, now)
    zone2_target = profile.settings.zone2_target_minutes_week
    cooldown = (
        state.cooldown_ends_at if state.cooldown_ends_at and state.cooldown_ends_at > now else None
    )
    last_w = state.workouts[-1] if state.workouts else None
    last_n = state.recent_nudges[-1] if state.recent_nudges else None
    logged = state.protein_logged_g if state.protein_day == local_date(now, tz) else 0.0

    def iso(t: datetime | None) -> str | None:
        return t.astimezone(tz).isoformat() if t else None

    return {
        "user": profile.user_id,
        "name": profile.name,
        "next_bedtime": iso(night.bedtime),
        "cooldown_ends_at": iso(cooldown),
        "protein_target_g": target,
        "protein_remaining_g": remaining,
        "zone2_minutes_week": round(zone2),
        "last_workout": None
        if last_w is None
        else {
            "event_id": last_w.event_id,
            "ended_at": iso(last_w.ended_at),
            "kind": last_w.kind,
            "focus": last_w.focus,
            "rpe": last_w.rpe,
            "leg_day": last_w.leg_day,
        },
        "last_nudge": None
        if last_n is None
        else {
            "nudge_id": last_n.nudge_id,
            "kind": last_n.kind,
            "rule": last_n.rule,
            "title": last_n.title,
            "message": last_n.message,
            "speech": last_n.speech,
            "due_at": iso(last_n.due_at),
            "acknowledged": last_n.acknowledged,
        },
        "next_winddown": iso(night.winddown),
        "next_wake": iso(night.wake),
        "protein_logged_g": round(logged),
        "zone2_target_minutes_week": zone2_target,
        "zone2_progress_pct": round(100 * zone2 / zone2_target) if zone2_target else 0,
        "updated_at": iso(now),
    }
