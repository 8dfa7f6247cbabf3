"""The pure core: facts in, a frozen `Decision` out; and the words of a nudge at delivery.

`decide` records an event's facts on the user's timeline, evaluates every rule over the
timeline (not over the one message), places each nudge in time (never in the past, never in
the sleep window) and compares the result with what is already planned: a nudge that still
holds with the same facts adds nothing, one that no longer holds is cancelled. So the same
facts give the same nudges in any arrival order. `deliver` words a nudge at the moment it
goes out, or drops it when it no longer applies. No I/O and no clock reads: `now` is an
argument.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, replace
from datetime import date, datetime, timedelta
from functools import cached_property
from typing import Any

from recovery_coach.core.local_time import Night, end_of_day, local_date, next_wake, night_around
from recovery_coach.core.models import (
    CardioPlanned,
    DayStarted,
    Decision,
    Event,
    GymCheckin,
    GymCheckout,
    GymMark,
    Nudge,
    NudgeAcked,
    NudgeKind,
    NudgeSnoozed,
    NudgeSummary,
    Planned,
    Profile,
    ProteinLog,
    ProteinLogged,
    SorenessLog,
    SorenessReported,
    UserState,
    WorkoutCompleted,
    nudge_id_for,
)
from recovery_coach.core.rules import apply_rules
from recovery_coach.core.rules.after_workout import r1_cooldown
from recovery_coach.core.rules.context import Context, Draft
from recovery_coach.core.rules.protein import protein_figures
from recovery_coach.core.rules.zone2 import SNOOZED_BEDTIME, zone2_minutes_now

HISTORY = timedelta(days=21)  # the timeline the rules read: R10's week, R12's streaks
MAX_FACTS = 200  # per kind of fact in a user's state (21 days of 9 workouts a day)
SHORT_HISTORY = timedelta(days=4)  # protein logs, gym marks, plans: past rules.LOOKBACK
RECENT_NUDGES = 20
NEXT_NUDGES = 5  # shown in the state: what is coming next

# Inside the sleep window these wait for the wake time; the others are tied to the moment.
DEFERRED_KINDS: frozenset[NudgeKind] = frozenset(
    {"cardio_advice", "cardio_warning", "protein", "zone2_progress", "recovery_advice"}
)


class RefusalError(Exception):
    """A command the core cannot act on (e.g. snoozing a nudge it never sent)."""


# ------------------------------------------------------------------ placement


@dataclass(frozen=True)
class Placed:
    """A draft placed in time; worded at its due time only when asked (`nudge`), since most
    of what `derive` places is already planned unchanged and never read."""

    draft: Draft
    user: str
    nudge_id: str
    due: datetime
    expires: datetime | None
    partnered: bool  # a cooldown_done follows this nudge's workout

    @cached_property
    def digest(self) -> str:
        return _digest(self.draft)

    @cached_property
    def nudge(self) -> Nudge:
        d = self.draft
        return _word(d, self.user, self.nudge_id, self.due, self.expires, self.due, self.partnered)


def _awake_from(ctx: Context, night: Night) -> datetime | None:
    """Activity the person did in the later half of a night proves they got up early."""
    cache = ctx.awake_cache
    if night.wake not in cache:
        mid = night.midpoint
        starts = [a.started_at for a in ctx.activities if mid <= a.ended_at < night.wake]
        cache[night.wake] = max(min(starts), night.bedtime) if starts else None
    return cache[night.wake]


def _asleep(ctx: Context, instant: datetime) -> bool:
    """Inside a sleep window, and not shown up by their own activity."""
    night = night_around(ctx.profile, instant)
    awake = _awake_from(ctx, night)
    return night.contains(instant) and (awake is None or instant < awake)


def place(
    draft: Draft, ctx: Context, *, expiring: bool = True
) -> tuple[tuple[datetime, datetime | None] | None, str]:
    """Apply what no rule may break; returns ((due, expires) or None, what was done).

    `expiring=False` words a snoozed copy, whose own expiry governs instead."""
    due = max(draft.due, ctx.now)
    expires = draft.expires
    note = "scheduled"
    if draft.kind != "bedtime":
        night = night_around(ctx.profile, due)
        awake = _awake_from(ctx, night)
        asleep = night.contains(due) and (awake is None or due < awake)
        if asleep and draft.kind == "cooldown_done":
            # Reported activity proves they are awake: one cooling down when the night
            # begins is up until the cooldown is done, and is told so.
            minutes = dict(draft.data).get("cooldown_minutes", 0)
            asleep = _asleep(ctx, draft.due - timedelta(minutes=minutes))
        if asleep:
            if draft.kind not in DEFERRED_KINDS:
                return None, "dropped: due inside the sleep window"
            due = night.wake if awake is None else awake
            note = "deferred to wake time"
    if expiring and expires is not None and expires <= due:
        return None, "dropped: its moment passed before it could be sent"
    return (due, expires), note


def _digest(d: Draft) -> str:
    text = repr((d.rule, d.kind, d.key, d.due.isoformat(), d.expires, d.data))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _word(draft: Draft, user: str, nudge_id: str, due: datetime, expires: datetime | None,
          at: datetime, partnered: bool) -> Nudge:  # fmt: skip
    title, message, speech, live = draft.words(at, partnered)
    return Nudge(
        nudge_id=nudge_id,
        user=user,
        rule=draft.rule,
        kind=draft.kind,
        title=title,
        message=message,
        speech=speech,
        due_at=due,
        expires_at=expires,
        source_event_id=draft.source_event_id,
        evidence=draft.evidence,
        data=tuple(sorted({**dict(draft.data), **live}.items())),
    )


def derive(
    profile: Profile, state: UserState, now: datetime, *, expiring: bool = True
) -> tuple[list[Placed], list[str]]:
    """Every nudge the facts call for at `now`, placed and worded at its due time; and the
    notes of those dropped."""
    ctx = Context(profile=profile, state=state, now=now)
    user = profile.user_id
    placed: list[tuple[Draft, str, datetime, datetime | None]] = []
    dropped: list[str] = []
    seen: set[tuple[str, str, str]] = set()
    for d in apply_rules(ctx):
        if (d.rule, d.kind, d.key) in seen:
            continue
        seen.add((d.rule, d.kind, d.key))
        nudge_id = nudge_id_for(user, d.key, d.rule, d.kind)
        spot, why = place(d, ctx, expiring=expiring)
        if spot is None:
            dropped.append(f"{nudge_id} ({d.rule} {d.kind}) {why}")
            continue
        placed.append((d, nudge_id, *spot))
    placed = _protein_once_a_day(placed, ctx, dropped)
    followed = {d.key for d, *_ in placed if d.kind == "cooldown_done"}
    out = [Placed(d, user, i, due, exp, d.key in followed) for d, i, due, exp in placed]
    return out, dropped


def _protein_once_a_day(
    placed: list[tuple[Draft, str, datetime, datetime | None]], ctx: Context, dropped: list[str]
) -> list[tuple[Draft, str, datetime, datetime | None]]:
    """R8 is once a day, and a reminder is about the day it is read in ("today"): one
    deferred out of the night to the morning and one for that morning's own workout are
    two reminders about one day, so the earlier stands. From the facts alone; one already
    sent that day is `reconcile`'s and `deliver`'s to see (`_protein_sent_on`)."""
    tz = ctx.tz
    days: set[date] = set()
    keep: set[str] = set()
    protein = sorted((x for x in placed if x[0].kind == "protein"), key=lambda x: (x[2], x[1]))
    for _draft, nudge_id, due, _ in protein:
        day = local_date(due, tz)
        if day in days:
            dropped.append(f"{nudge_id} (R8 protein) dropped: that day has its reminder")
            continue
        keep.add(nudge_id)
        days.add(day)
    return [x for x in placed if x[0].kind != "protein" or x[1] in keep]


def _protein_sent_on(state: UserState, profile: Profile, nudge: Nudge, at: datetime) -> bool:
    """Whether another protein reminder already went out on the local day of `at`."""
    tz = profile.tz
    day = local_date(at, tz)
    original = dict(nudge.data).get("snoozed_from", nudge.nudge_id)
    return any(
        n.kind == "protein"
        and n.nudge_id not in (nudge.nudge_id, original)
        and _original(n) != original
        and local_date(n.due_at, tz) == day
        for n in state.recent_nudges
    )


# ------------------------------------------------------------------ recording facts


def _prune(state: UserState, now: datetime) -> UserState:
    """Forget what no rule reads any more, and cap what a flooding device can pile up: the
    newest MAX_FACTS of each kind are far more than a person logs in the history's span."""
    old, short = now - HISTORY, now - SHORT_HISTORY
    if (
        max(len(state.activities), len(state.gym), len(state.protein)) <= MAX_FACTS
        and max(len(state.soreness_logs), len(state.planned_cardio)) <= MAX_FACTS
        and (not state.activities or state.activities[0].ended_at >= old)
        and (not state.gym or state.gym[0].at >= short)
        and (not state.protein or state.protein[0].at >= short)
        and (not state.soreness_logs or state.soreness_logs[0].at >= old)
        and all(p.planned_at >= short for p in state.planned_cardio)
        and all(p.expires_at is None or p.expires_at >= short for p in state.planned)
    ):
        return state  # nothing old enough to forget
    return replace(
        state,
        activities=tuple(a for a in state.activities if a.ended_at >= old)[-MAX_FACTS:],
        gym=tuple(g for g in state.gym if g.at >= short)[-MAX_FACTS:],
        protein=tuple(p for p in state.protein if p.at >= short)[-MAX_FACTS:],
        soreness_logs=tuple(s for s in state.soreness_logs if s.at >= old)[-MAX_FACTS:],
        planned_cardio=tuple(p for p in state.planned_cardio if p.planned_at >= short)[-MAX_FACTS:],
        planned=tuple(p for p in state.planned if p.expires_at is None or p.expires_at >= short),
    )


def record(event: Event, state: UserState, now: datetime) -> UserState:
    """The state with this event's facts placed on the timeline by their own times."""
    state = _prune(state, now)
    match event:
        case WorkoutCompleted(workout=w):
            plan = w.next_cardio
            w = replace(w, reported_at=now, next_cardio=plan and replace(plan, received_at=now))
            acts = [a for a in state.activities if a.event_id != w.event_id] + [w]
            acts.sort(key=lambda a: (a.ended_at, a.event_id))
            return replace(state, activities=tuple(acts))
        case GymCheckin() | GymCheckout():
            kind: Any = "checkin" if isinstance(event, GymCheckin) else "checkout"
            mark = GymMark(kind, event.event_id, event.at)
            if mark in state.gym:
                return state
            return replace(state, gym=tuple(sorted((*state.gym, mark), key=lambda g: g.at)))
        case CardioPlanned(planned=p):
            # The newest plan for a slot replaces the one before it (a re-plan from easy to
            # hard, or from a run to a ride), whatever it said.
            p = replace(p, received_at=event.at)
            kept = tuple(x for x in state.planned_cardio if x.planned_at != p.planned_at)
            return replace(state, planned_cardio=(*kept, p))
        case ProteinLogged():
            log = ProteinLog(event.event_id, event.at, event.grams)
            if any(x.event_id == log.event_id for x in state.protein):
                return state
            return replace(state, protein=tuple(sorted((*state.protein, log), key=lambda x: x.at)))
        case SorenessReported():
            sore = SorenessLog(event.event_id, event.at, event.level)
            if any(x.event_id == sore.event_id for x in state.soreness_logs):
                return state
            logs = tuple(sorted((*state.soreness_logs, sore), key=lambda x: x.at))
            return replace(state, soreness_logs=logs)
        case DayStarted() | NudgeAcked() | NudgeSnoozed():
            return state


# ------------------------------------------------------------------ commands on nudges


def _find_nudge(state: UserState, nudge_id: str) -> NudgeSummary:
    recent = state.recent_nudges
    if nudge_id == "last" and recent:
        return recent[-1]
    for n in recent:
        if n.nudge_id == nudge_id:
            return n
    raise RefusalError(f"there is no recent nudge with id '{nudge_id}' to act on")


def _original(n: NudgeSummary) -> str:
    """The nudge a snoozed copy repeats (a nudge is its own original)."""
    original = dict(n.data).get("snoozed_from", n.nudge_id)
    return original if isinstance(original, str) else n.nudge_id


def _acknowledged(state: UserState, original: str) -> bool:
    """Whether the nudge, or a snoozed copy of it, was acknowledged: then it is done."""
    return any(n.acknowledged and _original(n) == original for n in state.recent_nudges)


def _command(
    event: NudgeAcked | NudgeSnoozed, profile: Profile, state: UserState, now: datetime
) -> Decision:
    target = _find_nudge(state, event.nudge_id)
    original = _original(target)
    # Snoozed copies still to come: an ack ends them, a new snooze replaces them.
    copies = tuple(p.nudge_id for p in state.planned if p.snoozed_from == original and not p.sent)
    without_copies = tuple(p for p in state.planned if p.nudge_id not in copies)
    if isinstance(event, NudgeAcked):
        recent = tuple(
            replace(n, acknowledged=True) if _original(n) == original else n
            for n in state.recent_nudges
        )
        return Decision(
            state=replace(state, recent_nudges=recent, planned=without_copies), cancel=copies
        )
    if _acknowledged(state, original):
        note = f"{target.nudge_id} ({target.rule} {target.kind}) not snoozed: acknowledged"
        return Decision(state=state, dropped=(note,))
    nudge_id = nudge_id_for(profile.user_id, event.event_id, target.rule, target.kind)
    kept = tuple(kv for kv in target.data if kv[0] != "snoozed_from")
    due = now + timedelta(minutes=event.minutes)
    expires = target.expires_at
    bedtime = dict(target.data).get("bedtime")
    if target.kind == "bedtime" and isinstance(bedtime, datetime):
        expires = bedtime + SNOOZED_BEDTIME
    draft = Draft(
        target.rule, target.kind, nudge_id, target.source_event_id, due, expires,
        target.evidence, lambda _at, _p: (target.title, target.message, target.speech, {}),
    )  # fmt: skip
    spot, why = place(draft, Context(profile=profile, state=state, now=now))
    if spot is not None and target.kind == "protein":
        spot = (spot[0], end_of_day(spot[0], profile.tz))  # the day it is read in
    if spot is None:
        note = f"{nudge_id} ({target.rule} {target.kind}) snoozed {event.minutes} min: {why}"
        return Decision(state=state, dropped=(note,))
    due, expires = spot
    nudge = _word(draft, profile.user_id, nudge_id, due, expires, due, False)
    nudge = replace(nudge, data=tuple(sorted((*kept, ("snoozed_from", original)))))
    worded = deliver(nudge, profile, state, due)
    if worded is None:
        note = f"{nudge_id} ({target.rule} {target.kind}) snoozed: it no longer applies then"
        return Decision(state=state, dropped=(note,))
    copy = Planned(
        nudge_id, nudge_id, expires, manual=True, snoozed_from=original,
        due_at=due, rule=target.rule, kind=target.kind,
    )  # fmt: skip
    return Decision(
        state=replace(state, planned=(*without_copies, copy)), nudges=(worded,), cancel=copies
    )


# ------------------------------------------------------------------ the decision


def decide(event: Event, profile: Profile, state: UserState, now: datetime) -> Decision:
    """What to tell this user, and when, now that this event is known. Raises RefusalError."""
    if isinstance(event, NudgeAcked | NudgeSnoozed):
        return _command(event, profile, state, now)
    after = record(event, state, now)
    placed, dropped = derive(profile, after, now)
    return reconcile(after, placed, dropped, now, profile)


def reconcile(
    state: UserState,
    placed: list[Placed],
    dropped: list[str],
    now: datetime,
    profile: Profile | None = None,
) -> Decision:
    """New or changed nudges to schedule, planned ones that no longer hold to cancel.

    A nudge already sent is never sent or cancelled again; a snoozed copy is the user's own
    doing, and no re-decision cancels it. With the `profile`, a protein reminder for a day
    that already had one is not planned (R8 once a day)."""
    if profile is not None:
        served = [
            p
            for p in placed
            if p.draft.kind == "protein"
            and not any(x.nudge_id == p.nudge_id and x.sent for x in state.planned)
            and _protein_sent_on(state, profile, p.nudge, p.due)
        ]
        for p in served:
            dropped = [*dropped, f"{p.nudge_id} (R8 protein) dropped: that day had its reminder"]
        placed = [p for p in placed if p not in served]
    wanted = {p.nudge_id: p for p in placed}
    known = {p.nudge_id: p for p in state.planned}
    keep = [
        p
        for p in state.planned
        if p.sent or p.manual or (p.nudge_id in wanted and wanted[p.nudge_id].digest == p.digest)
    ]
    cancel = tuple(
        p.nudge_id for p in state.planned if not (p.sent or p.manual) and p.nudge_id not in wanted
    )
    schedule: list[Nudge] = []
    for nudge_id, p in wanted.items():
        old = known.get(nudge_id)
        if old is not None and (old.sent or old.manual or old.digest == p.digest):
            continue
        schedule.append(p.nudge)
        keep.append(
            Planned(
                nudge_id, p.digest, p.expires, due_at=p.due, rule=p.draft.rule, kind=p.draft.kind
            )
        )
    return Decision(
        state=replace(state, planned=tuple(keep)),
        nudges=tuple(schedule),
        cancel=cancel,
        dropped=tuple(dropped),
    )


def deliver(nudge: Nudge, profile: Profile, state: UserState, now: datetime) -> Nudge | None:
    """The nudge as it reads at `now`, or None when it no longer applies (its facts changed,
    its moment passed, or it would land in the sleep window)."""
    original = dict(nudge.data).get("snoozed_from", nudge.nudge_id)
    snoozed = original != nudge.nudge_id
    if snoozed and (
        (nudge.expires_at is not None and nudge.expires_at <= now) or _acknowledged(state, original)
    ):
        return None
    if nudge.kind == "protein" and _protein_sent_on(state, profile, nudge, now):
        return None  # that day had its reminder (R8 once a day)
    placed, _ = derive(profile, state, now, expiring=not snoozed)
    for p in placed:
        if p.nudge_id != original:
            continue
        if p.due > now + timedelta(minutes=1):
            return None  # deferred again: not its moment
        fresh = p.nudge
        data = dict(fresh.data)
        if snoozed:
            data["snoozed_from"] = original
            expires = nudge.expires_at
        else:
            expires = fresh.expires_at
        return replace(
            fresh,
            nudge_id=nudge.nudge_id,
            due_at=nudge.due_at,
            expires_at=expires,
            data=tuple(sorted(data.items())),
        )
    return None


def published(state: UserState, *nudges: Nudge) -> UserState:
    """The state once these nudges have gone out (in this order): the last becomes the last
    nudge, ack/snooze can find them, and no re-decision sends or cancels them again. One pass
    over the plan for any number of nudges."""
    out = {n.nudge_id: n for n in nudges}
    if not out:
        return state
    recent = tuple(n for n in state.recent_nudges if n.nudge_id not in out)
    planned = tuple(
        replace(p, sent=True) if p.nudge_id in out and not p.sent else p for p in state.planned
    )
    known = {p.nudge_id for p in planned if p.nudge_id in out}
    planned += tuple(
        Planned(i, "", n.expires_at, sent=True) for i, n in out.items() if i not in known
    )
    summaries = tuple(NudgeSummary.of(n) for n in out.values())
    return replace(state, recent_nudges=(*recent, *summaries)[-RECENT_NUDGES:], planned=planned)


def next_day_start(profile: Profile, now: datetime) -> datetime:
    """When the user's next day starts (their next wake time): the daily planning tick."""
    return next_wake(profile, now)


def day_event_id(profile: Profile, at: datetime) -> str:
    """The tick's own id: a start at 05:00 and the wake-time tick that day are two ticks."""
    return f"day:{at.astimezone(profile.tz).strftime('%Y-%m-%dT%H:%M')}"


def cooldown_ends_at(ctx: Context) -> datetime | None:
    """The end of the cooldown timer running now, if one is (R1's own figure)."""
    for d in r1_cooldown(ctx):
        if d.kind == "cooldown_start" and d.due <= ctx.now:
            ends = dict(d.data)["cooldown_ends_at"]
            if isinstance(ends, datetime) and ends > ctx.now:
                return ends
    return None


def state_view(profile: Profile, state: UserState, now: datetime) -> dict[str, Any]:
    """The retained `<base>/<user>/state` payload (contract fields first, then additions)."""
    tz = profile.tz
    night = night_around(profile, now)
    target, remaining = protein_figures(profile, state, now)
    ctx = Context(profile=profile, state=state, now=now)  # the timeline, derived once
    acts = ctx.all_activities
    zone2 = zone2_minutes_now(profile, acts, now)
    zone2_target = profile.settings.zone2_target_minutes_week
    cooldown = cooldown_ends_at(ctx)
    last_w = max(acts, key=lambda a: a.ended_at) if acts else None
    last_n = state.recent_nudges[-1] if state.recent_nudges else None
    logged = sum(p.grams for p in state.protein if local_date(p.at, tz) == local_date(now, tz))

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
        "sleep_hours": profile.sleep_hours,  # what voice answers say, not a fixed 8
        "rpe_cap": profile.settings.moderate_rpe_max,
        "zone2_progress_pct": round(100 * zone2 / zone2_target) if zone2_target else 0,
        "next_nudges": [
            {"kind": p.kind, "rule": p.rule, "due_at": iso(p.due_at)}
            for p in sorted(
                (p for p in state.planned if not p.sent and p.due_at and p.due_at > now),
                key=lambda p: (p.due_at, p.nudge_id),
            )[:NEXT_NUDGES]
        ],
        "updated_at": iso(now),
    }
