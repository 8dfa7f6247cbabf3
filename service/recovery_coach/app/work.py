"""The worker's items of work (what arrives on its queue from the socket, jobs and timers),
and a batch of them once decided and committed."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from recovery_coach.contract.inbound import Refused
from recovery_coach.contract.transport import Inbound
from recovery_coach.core.models import Nudge, Profile


@dataclass(frozen=True)
class Fire:
    """A scheduled nudge is due (APScheduler's job)."""

    user: str
    nudge_id: str


@dataclass(frozen=True)
class DayStart:
    """The user's day starts: plan it (APScheduler's job, or at start-up)."""

    user: str


@dataclass(frozen=True)
class Missed:
    """APScheduler dropped a job past its grace time."""

    job_id: str


@dataclass(frozen=True)
class PubAck:
    """The broker took one of our QoS 1 publishes."""

    mid: int


@dataclass(frozen=True)
class Connected:
    session_present: bool


@dataclass(frozen=True)
class Announce:
    """Re-send discovery and states (Home Assistant came online)."""


@dataclass(frozen=True)
class AnnounceMore:
    """Publish the next chunk of discovery and states (an announce in progress)."""


@dataclass(frozen=True)
class Housekeeping:
    """Prune old ids, sweep for due nudges no job will fire, publish diagnostics."""


@dataclass(frozen=True)
class Sweep:
    """The store works again: fire the due nudges whose jobs fired while it failed."""


Work = (
    Inbound
    | Fire
    | DayStart
    | Missed
    | PubAck
    | Connected
    | Announce
    | AnnounceMore
    | Housekeeping
    | Sweep
)


@dataclass
class Batch:
    """One batch's decisions, once committed: what to publish, acknowledge and count."""

    now: datetime
    acks: list[tuple[int, int]] = field(default_factory=list)
    refusals: list[Refused] = field(default_factory=list)
    immediate: list[Nudge] = field(default_factory=list)  # due now: published at once
    recorded: bool = False  # the immediate nudges are sent in the states this batch commits
    fire: list[Fire] = field(default_factory=list)
    published: list[int] = field(default_factory=list)  # mids whose PUBACK is now stored
    changed: set[str] = field(default_factory=set)  # users whose state changed
    retained: list[str] = field(default_factory=list)  # topics of ignored retained events
    payloads: dict[str, str] = field(default_factory=dict)  # nudge JSON as stored
    handled: int = 0
    refused: int = 0
    duplicates: int = 0
    cancelled: bool = False
    jobs_added: bool = False
    earliest_job: float | None = None
    announce: bool | None = None  # True: everything; False: only what changed
    announce_more: bool = False
    ha_online: bool = False
    diagnostics: bool = False
    profiled: set[str] = field(default_factory=set)  # set up or changed over MQTT
    removed: set[str] = field(default_factory=set)  # profile cleared
    # How to restore `People` if the batch fails before its commit (people.People.undo).
    undo: list[tuple[str, tuple[Profile | None, str | None]]] = field(default_factory=list)
