"""Builders for the pure core's tests: profiles, events, and runs of `coach.decide`.

Every default here is RULES.md's default (wake 07:00, 8 h of sleep, 15 min to fall asleep,
30 min wind-down, 1.6 g/kg), so expectations in the tables can be worked out from the rule
book: with wake at 07:00 in Berlin, bedtime is 22:45 and the wind-down 22:15.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, time, timedelta
from typing import Any

from recovery_coach.core import coach
from recovery_coach.core.local_time import night_around
from recovery_coach.core.models import (
    CardioPlanned,
    DayStarted,
    Event,
    Nudge,
    PlannedCardio,
    Profile,
    ProteinLogged,
    Settings,
    SorenessReported,
    UserState,
    Workout,
    WorkoutCompleted,
)

BERLIN = "Europe/Berlin"
# Monday 2 March 2026, Berlin (UTC+1): the week the tables play in.
MONDAY = "2026-03-02"


def t(local: str, offset: str = "+01:00") -> datetime:
    """An aware time: t("2026-03-02T18:00") is 18:00 in Berlin winter time."""
    return datetime.fromisoformat(local + offset)


def profile(**kw: Any) -> Profile:
    """Alex, 80 kg, in Berlin, waking at 07:00 every day; override any field."""
    settings = kw.pop("settings", None)
    wake = kw.pop("wake", None)
    base = Profile(
        user_id=kw.pop("user_id", "alex"),
        name="Alex",
        timezone=kw.pop("timezone", BERLIN),
        weight_kg=kw.pop("weight_kg", 80.0),
    )
    if wake is not None:
        kw["wake_times"] = (wake,) * 7 if isinstance(wake, time) else tuple(wake)
    if settings is not None:
        kw["settings"] = replace(Settings(), **settings)
    return replace(base, **kw)


def workout(
    ended_at: datetime,
    kind: str = "strength",
    focus: str | None = "legs",
    *,
    event_id: str = "w1",
    muscle_groups: Sequence[str] = (),
    rpe: float | None = None,
    duration_min: float | None = 60,
    zone: int | None = None,
    next_cardio: PlannedCardio | None = None,
) -> WorkoutCompleted:
    return WorkoutCompleted(
        Workout(
            event_id=event_id,
            ended_at=ended_at,
            kind=kind,  # type: ignore[arg-type]
            focus=focus,  # type: ignore[arg-type]
            muscle_groups=tuple(muscle_groups),
            rpe=rpe,
            duration_min=duration_min,
            zone=zone,
            next_cardio=next_cardio,
        )
    )


def cardio(
    planned_at: datetime, rpe: float | None = None, key: bool = False, kind: str = "run"
) -> PlannedCardio:
    return PlannedCardio(planned_at=planned_at, kind=kind, rpe=rpe, key_session=key)


def planned(at: datetime, p: PlannedCardio, event_id: str = "plan1") -> CardioPlanned:
    return CardioPlanned(event_id=event_id, at=at, planned=p)


def protein(at: datetime, grams: float, event_id: str = "p1") -> ProteinLogged:
    return ProteinLogged(event_id=event_id, at=at, grams=grams)


def soreness(at: datetime, level: int, event_id: str | None = None) -> SorenessReported:
    return SorenessReported(event_id=event_id or f"sore-{at.isoformat()}", at=at, level=level)


def day_started(at: datetime) -> DayStarted:
    return DayStarted(event_id=f"day:{at.date().isoformat()}", at=at)


@dataclass
class Run:
    """The outcome of feeding events to the core one by one (each at its own time)."""

    profile: Profile
    state: UserState = field(default_factory=UserState)
    nudges: list[Nudge] = field(default_factory=list)
    last: list[Nudge] = field(default_factory=list)  # nudges of the last event only
    cancelled: list[str] = field(default_factory=list)

    def feed(self, event: Event, now: datetime | None = None) -> Run:
        decision = coach.decide(event, self.profile, self.state, now or _time_of(event))
        self.state = decision.state
        self.last = list(decision.nudges)
        self.nudges.extend(decision.nudges)
        self.cancelled.extend(decision.cancel)
        return self

    def of(self, rule: str, kind: str | None = None, *, last: bool = True) -> list[Nudge]:
        pool = self.last if last else self.nudges
        return [n for n in pool if n.rule == rule and (kind is None or n.kind == kind)]

    def one(self, rule: str, kind: str | None = None, *, last: bool = True) -> Nudge:
        found = self.of(rule, kind, last=last)
        assert len(found) == 1, f"expected one {rule} {kind or ''} nudge, got {found}"
        return found[0]

    def rules(self, *, last: bool = True) -> set[str]:
        return {n.rule for n in (self.last if last else self.nudges)}


def run(p: Profile, events: Iterable[Event | tuple[Event, datetime]]) -> Run:
    r = Run(p)
    for item in events:
        if isinstance(item, tuple):
            r.feed(*item)
        else:
            r.feed(item)
    return r


def _time_of(event: Event) -> datetime:
    return event.at


def hours_between(a: datetime, b: datetime) -> float:
    return (b - a) / timedelta(hours=1)


def sleep_window_contains(p: Profile, instant: datetime) -> bool:
    return night_around(p, instant).contains(instant)


SENTENCE_END = re.compile(r"[.!?](?:\s|$)")


def sentences(text: str) -> int:
    return len(SENTENCE_END.findall(text.strip()))


@dataclass(frozen=True)
class Case:
    """One row of a rule's table: events in, whether the rule fires, and what it must say."""

    name: str
    events: tuple[Event | tuple[Event, datetime], ...]
    fires: bool
    profile: dict[str, Any] = field(default_factory=dict)
    due: datetime | None = None
    data: dict[str, Any] = field(default_factory=dict)
    says: tuple[str, ...] = ()
    count: int = 1

    def __str__(self) -> str:
        return self.name


def check_case(case: Case, rule: str, kind: str | None = None) -> list[Nudge]:
    """Run the case; assert the rule fired (or not) on the last event, with its numbers."""
    r = run(profile(**case.profile), case.events)
    found = r.of(rule, kind)
    if not case.fires:
        assert found == [], f"{rule} should not fire: {[n.message for n in found]}"
        return found
    assert len(found) == case.count, f"{rule} fired {len(found)} times, expected {case.count}"
    n = found[0]
    if case.due is not None:
        assert n.due_at == case.due
    data = n.data_dict()
    for key, value in case.data.items():
        assert data[key] == value, f"data[{key!r}] is {data[key]!r}, expected {value!r}"
    text = f"{n.message} {n.speech}"
    for phrase in case.says:
        assert phrase in text, f"{phrase!r} not in {text!r}"
    assert n.evidence, "every nudge carries its evidence"
    return found


class MemoryRepository:
    """The handler's repository in memory, for tests of the handler alone: writes apply at
    once (no batch to commit)."""

    def __init__(self) -> None:
        self.states: dict[str, UserState] = {}
        self.events: set[tuple[str, str]] = set()
        self.scheduled: list[tuple[str, Nudge]] = []
        self.cancelled: list[str] = []

    def load(self, user: str) -> UserState:
        return self.states.get(user, UserState())

    def seen(self, user: str, event_id: str) -> bool:
        return (user, event_id) in self.events

    def save(
        self,
        user: str,
        event_id: str | None,
        state: UserState,
        schedule: Sequence[Nudge],
        cancel: Sequence[str],
    ) -> None:
        self.states[user] = state
        if event_id is not None:
            self.events.add((user, event_id))
        self.scheduled.extend((user, n) for n in schedule)
        self.cancelled.extend(cancel)
