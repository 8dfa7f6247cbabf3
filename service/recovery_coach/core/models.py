"""The domain: events, the user's profile and remembered state, nudges and decisions.

Plain frozen dataclasses with no I/O, so the rules stay pure and the same objects serve the
live service and `simulate`. Pydantic lives only at the edges (config.py, inbound.py).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field, fields
from datetime import datetime, time, timedelta
from functools import cached_property
from typing import Any, Literal
from zoneinfo import ZoneInfo

from recovery_coach.core.vocabulary import Focus as Focus
from recovery_coach.core.vocabulary import WorkoutKind as WorkoutKind
from recovery_coach.core.vocabulary import is_leg_muscle

PlanFocus = Literal["legs", "lower", "upper", "push", "pull", "full", "core", "cardio", "rest"]
Goal = Literal["hypertrophy", "strength", "endurance", "power", "hybrid", "general"]
Experience = Literal["beginner", "intermediate", "advanced"]
NudgeKind = Literal[
    "cooldown_start",
    "cooldown_done",
    "cardio_advice",
    "cardio_warning",
    "protein",
    "bedtime_winddown",
    "bedtime",
    "zone2_progress",
    "recovery_advice",
]
RuleId = Literal["R1", "R2", "R3", "R4", "R5", "R6", "R7", "R8", "R9", "R10", "R11", "R12", "R13"]

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
LEG_FOCI = frozenset({"legs", "lower", "full"})


STRENGTH_KINDS = frozenset({"strength", "mixed"})


# ---------------------------------------------------------------- profile


@dataclass(frozen=True)
class Settings:
    """Our own defaults from RULES.md (marked *default* there); every one is per-user."""

    cooldown_minutes: int = 5
    winddown_minutes: int = 30
    protein_reminder_delay_minutes: int = 60
    sleep_latency_minutes: int = 15
    few_hours: float = 3.0
    same_session_minutes: int = 60
    endurance_separation_hours: float = 6.0
    moderate_rpe_max: float = 6.0
    zone2_rpe_min: float = 3.0
    zone2_target_minutes_week: int = 120
    zone2_check_weekday: int = 3  # Thursday: early enough to catch up by Sunday
    severe_soreness_level: int = 8
    severe_soreness_days: int = 2
    bedtime_every_day: bool = True
    visit_rejoin_minutes: int = 10  # back in the gym this soon after a checkout: same visit
    visit_min_minutes: int = 15  # a shorter visit (a geofence brushing past) is no workout


@dataclass(frozen=True)
class Profile:
    """Who the user is, from the config file."""

    user_id: str
    name: str
    timezone: str
    weight_kg: float | None = None
    goal: Goal = "general"
    running_experience: Experience = "intermediate"
    sleep_hours: float = 8.0
    wake_times: tuple[time, ...] = (time(7, 0),) * 7  # Monday first
    protein_g_per_kg: float = 1.6
    weekly_plan: tuple[tuple[int, PlanFocus], ...] = ()  # (weekday 0=Mon, focus)
    settings: Settings = field(default_factory=Settings)
    max_heart_rate: int | None = None  # bpm: heart rate zones of imported workouts

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    def plan_for(self, weekday: int) -> PlanFocus | None:
        return dict(self.weekly_plan).get(weekday)

    def protein_target_g(self) -> int | None:
        if self.weight_kg is None:
            return None
        return round(self.weight_kg * self.protein_g_per_kg)


# ---------------------------------------------------------------- events


@dataclass(frozen=True)
class PlannedCardio:
    """A cardio session the user intends to do. Its slot is `planned_at`: a plan published
    again for the same slot (another effort or kind) replaces the one received before it."""

    planned_at: datetime
    kind: str
    rpe: float | None = None
    key_session: bool = False
    received_at: datetime | None = None  # set when recorded: the newest plan of a slot wins


@dataclass(frozen=True)
class Workout:
    """A completed workout (from a watch, an automation, or a gym visit with no workout)."""

    event_id: str
    ended_at: datetime
    kind: WorkoutKind
    focus: Focus | None = None
    muscle_groups: tuple[str, ...] = ()
    rpe: float | None = None
    duration_min: float | None = None
    zone: int | None = None
    next_cardio: PlannedCardio | None = None
    from_gym_visit: bool = False
    reported_at: datetime | None = None  # when the message arrived (None: at ended_at)

    @cached_property
    def started_at(self) -> datetime:
        return self.ended_at - timedelta(minutes=self.duration_min or 0)

    @cached_property
    def known_at(self) -> datetime:
        """When we learnt of it: the nudges it causes cannot be due before then."""
        return max(self.ended_at, self.reported_at or self.ended_at)

    @property
    def leg_day(self) -> bool:
        """RULES.md: a strength or mixed session on legs/lower/full, or with a leg muscle
        (by any name the vocabulary knows)."""
        if self.kind not in STRENGTH_KINDS:
            return False
        if self.focus in LEG_FOCI:
            return True
        return any(is_leg_muscle(m) for m in self.muscle_groups)

    @property
    def strength(self) -> bool:
        return self.kind in STRENGTH_KINDS

    @property
    def cardio(self) -> bool:
        """Cardio for the rules: runs, rides, rows, and classes such as spin (RULES.md R2)."""
        return self.kind in ("cardio", "class")


@dataclass(frozen=True)
class WorkoutCompleted:
    workout: Workout

    @property
    def event_id(self) -> str:
        return self.workout.event_id

    @property
    def at(self) -> datetime:
        return self.workout.ended_at


@dataclass(frozen=True)
class GymCheckin:
    event_id: str
    at: datetime


@dataclass(frozen=True)
class GymCheckout:
    event_id: str
    at: datetime


@dataclass(frozen=True)
class CardioPlanned:
    event_id: str
    at: datetime
    planned: PlannedCardio


@dataclass(frozen=True)
class ProteinLogged:
    event_id: str
    at: datetime
    grams: float


@dataclass(frozen=True)
class SorenessReported:
    event_id: str
    at: datetime
    level: int


@dataclass(frozen=True)
class NudgeAcked:
    event_id: str
    at: datetime
    nudge_id: str  # "last" means the user's most recent nudge


@dataclass(frozen=True)
class NudgeSnoozed:
    event_id: str
    at: datetime
    nudge_id: str
    minutes: int


@dataclass(frozen=True)
class DayStarted:
    """Internal: the user's day begins (at wake time); plans tonight's bedtime and weekly checks."""

    event_id: str
    at: datetime


Event = (
    WorkoutCompleted
    | GymCheckin
    | GymCheckout
    | CardioPlanned
    | ProteinLogged
    | SorenessReported
    | NudgeAcked
    | NudgeSnoozed
    | DayStarted
)


_KIND_OF_EVENT: dict[type, str] = {
    WorkoutCompleted: "workout",
    GymCheckin: "checkin",
    GymCheckout: "checkout",
    CardioPlanned: "plan",
    ProteinLogged: "protein",
    SorenessReported: "soreness",
    NudgeAcked: "ack",
    NudgeSnoozed: "snooze",
    DayStarted: "day",
}


def dedupe_key(event: Event) -> str:
    """What makes a message a redelivery: the same kind of message with the same event_id.

    A gym visit's check-in and checkout may share one id (an NFC tag, a zone automation).
    """
    return f"{_KIND_OF_EVENT[type(event)]}:{event.event_id}"


# ---------------------------------------------------------------- nudges


def nudge_id_for(user: str, source_event_id: str, rule: str, kind: str) -> str:
    """Stable id: the same (user, source event, rule, kind) always gives the same id."""
    digest = hashlib.sha256(f"{user}\x1f{source_event_id}\x1f{rule}\x1f{kind}".encode()).hexdigest()
    return f"{kind}-{digest[:16]}"


@dataclass(frozen=True)
class Nudge:
    """One message for the user, with its rule and evidence."""

    nudge_id: str
    user: str
    rule: RuleId
    kind: NudgeKind
    title: str
    message: str
    speech: str
    due_at: datetime
    expires_at: datetime | None
    source_event_id: str
    evidence: tuple[str, ...]
    data: tuple[tuple[str, Any], ...] = ()

    def data_dict(self) -> dict[str, Any]:
        return dict(self.data)

    @classmethod
    def from_payload(cls, p: dict[str, Any]) -> Nudge:
        """The nudge back from its contract JSON (as the outbox stores it). Times in `data`
        stay ISO text: nothing reads them but the payload, which writes them as they are."""
        return cls(
            nudge_id=p["nudge_id"],
            user=p["user"],
            rule=p["rule"],
            kind=p["kind"],
            title=p["title"],
            message=p["message"],
            speech=p["speech"],
            due_at=datetime.fromisoformat(p["due_at"]),
            expires_at=datetime.fromisoformat(p["expires_at"]) if p["expires_at"] else None,
            source_event_id=p["source_event_id"],
            evidence=tuple(p["evidence"]),
            data=tuple(sorted(p["data"].items())),
        )

    def payload(self, tz: ZoneInfo) -> dict[str, Any]:
        """The contract's JSON object, times in the user's zone."""
        data = {
            k: (v.astimezone(tz).isoformat() if isinstance(v, datetime) else v)
            for k, v in self.data
        }
        return {
            "nudge_id": self.nudge_id,
            "user": self.user,
            "rule": self.rule,
            "kind": self.kind,
            "title": self.title,
            "message": self.message,
            "speech": self.speech,
            "due_at": self.due_at.astimezone(tz).isoformat(),
            "expires_at": self.expires_at.astimezone(tz).isoformat() if self.expires_at else None,
            "source_event_id": self.source_event_id,
            "evidence": list(self.evidence),
            "data": data,
        }


# ---------------------------------------------------------------- remembered state


@dataclass(frozen=True)
class GymMark:
    """A check-in or checkout, kept by its own time: visits are derived from these."""

    kind: Literal["checkin", "checkout"]
    event_id: str
    at: datetime


@dataclass(frozen=True)
class ProteinLog:
    event_id: str
    at: datetime
    grams: float


@dataclass(frozen=True)
class SorenessLog:
    event_id: str
    at: datetime
    level: int


@dataclass(frozen=True)
class Planned:
    """A nudge the core has handed to the scheduler: what it rests on, and whether it went out.

    `digest` covers the facts-based due time, expiry and data, so a re-decision that yields
    the same nudge adds nothing; `manual` marks snoozed copies, which no re-decision cancels.
    """

    nudge_id: str
    digest: str
    expires_at: datetime | None
    sent: bool = False
    manual: bool = False
    snoozed_from: str | None = None  # a snoozed copy: the nudge it repeats
    # When it is due and what it is (the state's `next_nudges`); None in older states.
    due_at: datetime | None = None
    rule: RuleId | None = None
    kind: NudgeKind | None = None


@dataclass(frozen=True)
class NudgeSummary:
    """What the state topic shows of the last published nudge, and what ack/snooze act on."""

    nudge_id: str
    kind: NudgeKind
    rule: RuleId
    title: str
    message: str
    speech: str
    due_at: datetime
    source_event_id: str
    evidence: tuple[str, ...] = ()
    acknowledged: bool = False
    data: tuple[tuple[str, Any], ...] = ()  # the nudge's own numbers, so a snooze keeps them
    expires_at: datetime | None = None

    @classmethod
    def of(cls, nudge: Nudge) -> NudgeSummary:
        """The summary of a nudge that went out (not yet acknowledged)."""
        return cls(**{name: getattr(nudge, name) for name in _SUMMARY_FIELDS})


# What a summary copies from its nudge: named once (fields() per nudge cost 2.5% of a burst).
_SUMMARY_FIELDS = tuple(f.name for f in fields(NudgeSummary) if f.name != "acknowledged")


@dataclass(frozen=True)
class UserState:
    """What the service remembers of one user: the timeline of facts, ordered by their own
    times (not by arrival), and the nudges planned from it. Replaced whole by each decision."""

    activities: tuple[Workout, ...] = ()  # by ended_at; the last few weeks
    planned_cardio: tuple[PlannedCardio, ...] = ()
    gym: tuple[GymMark, ...] = ()  # by at
    protein: tuple[ProteinLog, ...] = ()  # by at; the last two days
    soreness_logs: tuple[SorenessLog, ...] = ()  # by at
    planned: tuple[Planned, ...] = ()
    recent_nudges: tuple[NudgeSummary, ...] = ()  # published, newest last


@dataclass(frozen=True)
class Decision:
    """What the core decided for one event: nudges to schedule, nudges to cancel, new state."""

    state: UserState
    nudges: tuple[Nudge, ...] = ()
    cancel: tuple[str, ...] = ()
    dropped: tuple[str, ...] = ()  # "nudge_id (rule kind) why", for the log
