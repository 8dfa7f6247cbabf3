"""What arrives that is not one event: a person's profile (people.py) and an Apple Health
export (health_auto_export.py), turned into the batch's staged writes and outcomes. Called
by the worker inside its batch, so everything here lands in the batch's one transaction."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from recovery_coach.app.message_handler import MessageHandler, Outcome
from recovery_coach.app.people import People, ProfileCleared
from recovery_coach.app.work import Batch
from recovery_coach.contract import health_auto_export
from recovery_coach.contract.inbound import Accepted, Refused
from recovery_coach.contract.topics import Topics
from recovery_coach.contract.transport import Inbound
from recovery_coach.core.coach import next_day_start
from recovery_coach.core.models import Profile
from recovery_coach.jobs.rows import JobTimer
from recovery_coach.store import SqlRepository

log = logging.getLogger(__name__)


@dataclass(kw_only=True, eq=False)
class Intake:
    topics: Topics
    handler: MessageHandler
    people: People
    repo: SqlRepository
    scheduler: JobTimer
    profiles: dict[str, Profile]

    def parse(self, item: Inbound, now: datetime) -> Accepted | Refused:
        return self.handler.parse(
            item.topic, item.payload, now, packet_id=item.mid, redelivered=item.dup
        )

    def health_auto_export(self, user: str, item: Inbound, now: datetime) -> list[Outcome]:
        """Each recent workout of an Apple Health export, as a `workout/completed` event
        (its id `hae:<workout id>`, so a re-export adds nothing)."""
        profile = self.profiles.get(user)
        if profile is None:  # refused as any message of an unknown user is
            return [self.handler.handle_parsed(self.parse(item, now), now)]
        if len(item.payload) > health_auto_export.MAX_BYTES:
            why = health_auto_export.TOO_LARGE
            return [Outcome(user=user, refused=Refused(user, item.topic, why))]
        try:
            bodies, skipped = health_auto_export.workouts(item.payload, profile, now)
        except health_auto_export.FormatError as exc:
            return [Outcome(user=user, refused=Refused(user, item.topic, str(exc)))]
        for s in skipped:
            log.debug("Health Auto Export workout %s for %s skipped: %s", s.workout_id, user, s.why)
        topic = self.topics.workout_completed(user)
        out = [
            self.handler.handle_parsed(self.handler.parse(topic, json.dumps(body), now), now)
            for body in bodies
        ]
        told = [s for s in skipped if s.report]
        if told:
            # A workout the person did is never dropped without a word: one line for all.
            why = "; ".join(f"workout {s.workout_id}: {s.why}" for s in told[:5])
            if len(told) > 5:
                why += f"; and {len(told) - 5} more"
            reason = f"{len(told)} workout(s) of the export skipped: {why}"
            level: Literal["error", "warning"] = "warning" if bodies else "error"
            out.append(Outcome(user=user, refused=Refused(user, item.topic, reason, level=level)))
        return out

    def profile(self, user: str, item: Inbound, b: Batch) -> list[Outcome]:
        """A person set up, changed or removed over MQTT (people.py): stored in this batch,
        their day planned anew and their nudges re-decided under the new profile."""
        change = self.people.read(item.topic, user, item.payload)
        if change is None:
            return []  # the same profile again (the retained copy at every connect)
        if isinstance(change, Refused):
            b.refused += 1
            b.refusals.append(change)
            return []
        b.undo.append((user, self.people.apply(change)))
        if isinstance(change, ProfileCleared):
            self.repo.uow.removed(user)
            b.removed.add(user)
            b.cancelled = True
            log.info("user %s removed: their profile was cleared", user)
            return []
        self.repo.uow.profile(user, change.text)
        self.repo.uow.day_reset(user)
        self.repo.uow.job(self.scheduler.day_row(user, next_day_start(change.profile, b.now)))
        b.jobs_added = True
        b.profiled.add(user)
        b.removed.discard(user)
        log.info("user %s %s over MQTT", user, "set up" if change.new else "updated")
        return [self.handler.profile_changed(user, b.now)]
