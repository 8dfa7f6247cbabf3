"""What every rule sees and gives back: the `Context` (profile, remembered facts, the moment
of deciding), the `Draft` a rule yields, and the wording helpers the rules share."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import cached_property
from typing import Any
from zoneinfo import ZoneInfo

from recovery_coach.core.local_time import (
    Night,
    night_around,
)
from recovery_coach.core.models import (
    NudgeKind,
    PlannedCardio,
    Profile,
    RuleId,
    UserState,
    Workout,
)
from recovery_coach.core.timeline import Session, all_activities, sessions

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
