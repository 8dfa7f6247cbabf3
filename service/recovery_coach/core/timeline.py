"""The user's day as the rules read it: activities by their own times, grouped into sessions.

Pure functions of the remembered facts. A *session* is what a person calls one workout:
activities that touch or follow each other within `same_session_minutes`, or that fall
inside one gym visit. A gym visit with no activity in it becomes one (from the weekly plan);
a re-entry soon after a checkout continues the visit, and a visit too short is no workout.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cached_property
from typing import Literal

from recovery_coach.core.local_time import local_date
from recovery_coach.core.models import Focus, GymMark, Profile, UserState, Workout, WorkoutKind

# A watch often syncs a workout a little after the checkout; it still belongs to the visit.
VISIT_SLACK = timedelta(minutes=30)
NO_CHECKIN = timedelta(hours=3)  # how far back a checkout with no check-in reaches


@dataclass(frozen=True)
class Visit:
    """One gym visit: first check-in to last checkout, re-entries within the window merged."""

    key: str  # from the first mark of the visit
    started_at: datetime | None  # None: no check-in seen
    checkout_id: str | None
    ended_at: datetime | None  # None: still in the gym

    def holds(self, w: Workout) -> bool:
        if self.started_at is not None:
            start = self.started_at - VISIT_SLACK
        else:  # no check-in seen: a visit of up to NO_CHECKIN before its checkout
            start = (self.ended_at or w.ended_at) - NO_CHECKIN
        end = (self.ended_at + VISIT_SLACK) if self.ended_at else None
        return w.ended_at >= start and (end is None or w.started_at <= end)


@dataclass(frozen=True)
class Session:
    """Activities that a person would call one workout."""

    key: str  # the same for the same facts, whatever order they arrived in
    activities: tuple[Workout, ...]  # by start

    @cached_property
    def started_at(self) -> datetime:
        return min(a.started_at for a in self.activities)

    @cached_property
    def ended_at(self) -> datetime:
        return max(a.ended_at for a in self.activities)

    @cached_property
    def known_at(self) -> datetime:
        """When the last activity that ends the session was known (its nudges wait for it)."""
        return max(a.known_at for a in self.activities if a.ended_at == self.ended_at)

    @cached_property
    def source_event_id(self) -> str:
        return max(self.activities, key=lambda a: (a.ended_at, a.event_id)).event_id

    @cached_property
    def strength(self) -> tuple[Workout, ...]:
        return tuple(a for a in self.activities if a.strength)

    @cached_property
    def cardio(self) -> tuple[Workout, ...]:
        return tuple(a for a in self.activities if a.cardio)

    @cached_property
    def leg_day(self) -> bool:
        return any(a.leg_day for a in self.activities)

    @cached_property
    def has_strength(self) -> bool:
        return bool(self.strength)

    @cached_property
    def mixed(self) -> bool:
        """Strength and cardio in one session, in either order (or one `mixed` workout)."""
        return any(a.kind == "mixed" for a in self.activities) or (
            bool(self.strength) and bool(self.cardio)
        )

    @cached_property
    def strength_ended_at(self) -> datetime:
        return max(a.ended_at for a in self.strength)


def visits(profile: Profile, marks: tuple[GymMark, ...]) -> list[Visit]:
    """Check-ins and checkouts paired by time; a re-entry within the window continues a visit."""
    rejoin = timedelta(minutes=profile.settings.visit_rejoin_minutes)
    out: list[Visit] = []
    for m in sorted(marks, key=lambda m: (m.at, m.kind, m.event_id)):
        last = out[-1] if out else None
        inside = last is not None and last.ended_at is None
        soon_after = (
            last is not None and last.ended_at is not None and m.at - last.ended_at <= rejoin
        )
        if m.kind == "checkin":
            if inside:
                continue  # a repeated check-in
            if last is not None and soon_after:
                out[-1] = Visit(last.key, last.started_at, None, None)  # back in: same visit
            else:
                out.append(Visit(f"visit:{m.event_id}", m.at, None, None))
        elif last is not None and (inside or soon_after):
            out[-1] = Visit(last.key, last.started_at, m.event_id, m.at)  # the visit ends later
        else:
            out.append(Visit(f"visit:{m.event_id}", None, m.event_id, m.at))  # no check-in seen
    return out


def visit_workout(profile: Profile, v: Visit) -> Workout | None:
    """A visit with no activity event: a workout from the weekly plan (`full` without one).
    A day the plan marks `rest` has no session to borrow: the visit is a strength session
    of unknown focus (a cooldown, protein and sleep, but no leg-day advice).

    None while the person is in the gym, or for a visit shorter than `visit_min_minutes`.
    Its nudges wait `visit_rejoin_minutes` after the checkout, so a flapping geofence that
    brings the person back in does not end the visit early.
    """
    if v.ended_at is None or v.checkout_id is None:
        return None
    s = profile.settings
    minutes = (v.ended_at - v.started_at) / timedelta(minutes=1) if v.started_at else None
    if minutes is not None and minutes < s.visit_min_minutes:
        return None
    day = local_date(v.started_at or v.ended_at, profile.tz)
    plan = profile.plan_for(day.weekday())
    kind: WorkoutKind = "cardio" if plan == "cardio" else "strength"
    focus: Focus | None = None
    if kind == "strength" and plan != "rest":
        focus = "full" if plan is None else plan  # type: ignore[assignment]
    return Workout(
        event_id=f"{v.checkout_id}:visit",
        ended_at=v.ended_at,
        kind=kind,
        focus=focus,
        duration_min=minutes,
        from_gym_visit=True,
        reported_at=v.ended_at + timedelta(minutes=s.visit_rejoin_minutes),
    )


def all_activities(profile: Profile, state: UserState) -> tuple[list[Workout], list[Visit]]:
    """Logged activities plus one workout for each gym visit that none of them covers."""
    vs = visits(profile, state.gym)
    acts = list(state.activities)
    for v in vs:
        if not any(v.holds(a) for a in state.activities):
            w = visit_workout(profile, v)
            if w is not None:
                acts.append(w)
    acts.sort(key=lambda a: (a.started_at, a.ended_at, a.event_id))
    return acts, vs


def sessions(profile: Profile, state: UserState, since: datetime | None = None) -> list[Session]:
    """The user's sessions, oldest first, each keyed by its gym visit or its last activity;
    with `since`, only those made of activities that ended after it."""
    acts, vs = all_activities(profile, state)
    if since is not None:
        acts = [a for a in acts if a.ended_at >= since]
    gap = timedelta(minutes=profile.settings.same_session_minutes)
    groups: list[list[Workout]] = []
    group_visit: list[Visit | None] = []
    for a in acts:
        visit = next((v for v in vs if v.holds(a)), None)
        if groups:
            last = groups[-1]
            last_end = max(x.ended_at for x in last)
            same_visit = visit is not None and visit == group_visit[-1]
            if same_visit or a.started_at - last_end <= gap:
                last.append(a)
                if group_visit[-1] is None:
                    group_visit[-1] = visit
                continue
        groups.append([a])
        group_visit.append(visit)
    out = []
    for g, v in zip(groups, group_visit, strict=True):
        # The last activity names the session: one synced late that started earlier joins
        # it without a new id (no second cooldown), one that ends it later gets its own.
        final = max(g, key=lambda a: (a.ended_at, a.event_id))
        key = v.key if v is not None else f"session:{final.event_id}"
        out.append(Session(key, tuple(g)))
    return out


Effort = Literal["light", "moderate", "hard"]


def effort(profile: Profile, rpe: float | None, zone: int | None) -> Effort | None:
    """The rule book's reading of an effort: the 0-10 scale (CDC) decides, 3-6 moderate
    (R10) and above the cap hard (R2, R7). A session rated on it is read by its rating,
    whatever zone the watch says; with no rating, the heart-rate zone of the five-zone
    model: 1 light, 2-3 moderate (zone 3 is about 6/10), 4-5 hard. None: nothing said."""
    s = profile.settings
    if rpe is not None:
        if rpe > s.moderate_rpe_max:
            return "hard"
        return "moderate" if rpe >= s.zone2_rpe_min else "light"
    if zone is None:
        return None
    return "light" if zone <= 1 else "moderate" if zone <= 3 else "hard"


def is_hard(profile: Profile, rpe: float | None, zone: int | None) -> bool:
    """Above the moderate cap: rpe over it, or, with no rpe, heart-rate zone 4 or 5."""
    return effort(profile, rpe, zone) == "hard"
