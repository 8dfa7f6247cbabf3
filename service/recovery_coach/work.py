"""The worker's items of work: what arrives on its queue from the socket, jobs and timers."""

from __future__ import annotations

from dataclasses import dataclass

from .mqtt_link import Inbound


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
    """Prune old ids and publish diagnostics."""


Work = (
    Inbound | Fire | DayStart | Missed | PubAck | Connected | Announce | AnnounceMore | Housekeeping
)
