"""The service layer: raw message -> refusal, duplicate, or a decision saved in a repository.

The worker uses it, live and in `simulate` alike (the SQL store, one transaction per batch of
messages); the handler's own tests give it an in-memory repository. Dedupe of events lives
here, so a redelivered event adds no nudge.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Protocol

from recovery_coach.contract.inbound import Accepted, Refused, parse
from recovery_coach.contract.topics import Topics
from recovery_coach.core import coach
from recovery_coach.core.models import (
    DayStarted,
    Nudge,
    NudgeAcked,
    NudgeSnoozed,
    Profile,
    ProteinLogged,
    SorenessReported,
    UserState,
    dedupe_key,
)

log = logging.getLogger(__name__)


class Repository(Protocol):
    """What the handler needs from storage; writes are staged until the shell commits."""

    def load(self, user: str) -> UserState: ...

    def seen(self, user: str, event_id: str) -> bool: ...

    def save(
        self,
        user: str,
        event_id: str | None,
        state: UserState,
        schedule: Sequence[Nudge],
        cancel: Sequence[str],
    ) -> None: ...


@dataclass
class Outcome:
    """What happened to one message, for the shell to publish and log."""

    user: str | None = None
    event_id: str | None = None
    refused: Refused | None = None
    duplicate: bool = False
    scheduled: list[Nudge] = field(default_factory=list)
    cancelled: list[str] = field(default_factory=list)
    warnings: list[Refused] = field(default_factory=list)  # handled, with these said


class MessageHandler:
    """Turns inbound messages and daily ticks into saved decisions."""

    def __init__(
        self,
        base: str,
        profiles: Mapping[str, Profile],
        repo: Repository,
    ) -> None:
        """Nudges that already went out are dropped by the caller, the worker, for a whole
        batch at once (one query per batch, not one per event)."""
        self.base = base
        self.profiles = profiles  # shared: people set up over MQTT join it (people.py)
        self.repo = repo

    def parse(
        self,
        topic: str,
        body: bytes | str,
        received_at: datetime,
        *,
        packet_id: int = 0,
        redelivered: bool = False,
    ) -> Accepted | Refused:
        return parse(
            topic,
            body,
            base=self.base,
            users=self.profiles,
            received_at=received_at,
            packet_id=packet_id,
            redelivered=redelivered,
        )

    def handle(self, topic: str, body: bytes | str, received_at: datetime) -> Outcome:
        return self.handle_parsed(self.parse(topic, body, received_at), received_at)

    def handle_parsed(self, parsed: Accepted | Refused, received_at: datetime) -> Outcome:
        if isinstance(parsed, Refused):
            return Outcome(user=parsed.user, event_id=parsed.event_id, refused=parsed)
        return self._apply(parsed, received_at)

    def day_event(self, user: str, now: datetime) -> DayStarted:
        """The user's day tick at `now` (the worker reads its handled ids in one query)."""
        return DayStarted(coach.day_event_id(self.profiles[user], now), now)

    def day_started(self, user: str, now: datetime) -> Outcome:
        event = self.day_event(user, now)
        return self._apply(Accepted(user, Topics(self.base).day(user), event), now)

    def profile_changed(self, user: str, now: datetime) -> Outcome:
        """Re-decide the user's nudges under a new profile (wake time, sleep, weight...):
        a day tick that is never deduplicated, since every change must be decided."""
        state = self.repo.load(user)
        decision = coach.decide(
            DayStarted(f"profile:{now.isoformat()}", now), self.profiles[user], state, now
        )
        self.repo.save(user, None, decision.state, decision.nudges, decision.cancel)
        return Outcome(user=user, scheduled=list(decision.nudges), cancelled=list(decision.cancel))

    def _apply(self, msg: Accepted, now: datetime) -> Outcome:
        user, event = msg.user, msg.event
        out = Outcome(user=user, event_id=event.event_id)
        out.warnings = msg.warned()
        key = dedupe_key(event)
        if self.repo.seen(user, key):
            if not msg.first_delivery:
                out.duplicate = True
                return out
            # A first delivery whose packet-derived id came round again: a new message.
            renamed = f"{event.event_id}.{now:%Y%m%dT%H%M%S%f}"
            if isinstance(event, ProteinLogged | SorenessReported | NudgeAcked | NudgeSnoozed):
                event = replace(event, event_id=renamed)
            out.event_id = event.event_id
        state = self.repo.load(user)
        try:
            decision = coach.decide(event, self.profiles[user], state, now)
        except coach.RefusalError as exc:
            out.refused = Refused(user, msg.topic, str(exc), event.event_id)
            return out
        nudges = list(decision.nudges)
        # A snooze that brings nothing back is the user's own request going unanswered:
        # worth a line at INFO; the rules' own drops (a cooldown in the night) are routine.
        level = logging.INFO if isinstance(event, NudgeSnoozed) else logging.DEBUG
        for note in decision.dropped:
            log.log(level, "nudge %s for %s", note, user)
        self.repo.save(user, key, decision.state, nudges, decision.cancel)
        out.scheduled = list(nudges)
        out.cancelled = list(decision.cancel)
        return out

    def nudge_published(self, user: str, *nudges: Nudge) -> UserState:
        """Record that these nudges went out (in this order); returns the new state to save."""
        return coach.published(self.repo.load(user), *nudges)

    def word(self, nudge: Nudge, now: datetime) -> Nudge | None:
        """The nudge as it reads now, or None (logged) when it no longer applies."""
        worded = coach.deliver(nudge, self.profiles[nudge.user], self.repo.load(nudge.user), now)
        if worded is None:
            log.info(
                "nudge %s (%s %s) for %s dropped: it no longer applies",
                nudge.nudge_id,
                nudge.rule,
                nudge.kind,
                nudge.user,
            )
        return worded
