"""A batch whose commit fails is tried again by itself, and never blocks the others.

At once (a dropped connection or a lock that timed out passes); then, while the store
refuses a test write, held with its messages unacknowledged and retried with back-off, the
connection kept alive; and if the store takes writes but the batch still fails, one message
at a time, so that the one that fails alone (a bug) is refused and acknowledged. A failure
of the database itself (DB-API's OperationalError) is never blamed on a message: it is
retried with back-off, however often the test write passes in between.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from datetime import datetime

from sqlalchemy.exc import OperationalError

from recovery_coach.app.health import Health
from recovery_coach.app.work import Batch, Work
from recovery_coach.contract.inbound import Refused
from recovery_coach.contract.topics import Topics
from recovery_coach.contract.transport import Inbound, Transport
from recovery_coach.core.backoff import MOST_S, Backoff
from recovery_coach.core.models import Profile
from recovery_coach.store import SqlRepository
from recovery_coach.store.shard_leases import FencedError

log = logging.getLogger(__name__)


class Retrying:
    def __init__(
        self,
        decide: Callable[[list[Work]], Batch],
        repo: SqlRepository,
        transport: Transport,
        topics: Topics,
        profiles: dict[str, Profile],
        health: Health,
        stopping: threading.Event,
        diagnostics: Callable[[bool], None],
        clock: Callable[[], datetime],
    ) -> None:
        self.decide = decide  # decides and commits; changes nothing but the store's staging
        self.repo = repo
        self.transport = transport
        self.topics = topics
        self.profiles = profiles
        self.health = health
        self.stopping = stopping
        self.diagnostics = diagnostics
        self.clock = clock

    def commit(self, batch: list[Work]) -> list[Batch]:
        """The batch decided and committed, with back-off while the store fails."""
        backoff = Backoff()
        failed_while_writable = 0
        while batch:
            try:
                b = self.decide(batch)
                if self.health.store_error is not None:
                    self.health.store_error = None
                    log.warning("the store works again: the held batch is committed")
                    b.diagnostics = True
                return [b]
            except FencedError as exc:
                # Another instance owns the shard now: nothing is written, nothing acknowledged,
                # and this shard's worker stops (its messages go to the new owner).
                self.repo.uow.rollback()
                log.warning("%s: its worker stops", exc)
                self.stopping.set()
                return []
            except Exception as exc:
                self.repo.uow.rollback()
                self.repo.forget_cache()
                failure = f"{type(exc).__name__}: {exc}"
                store_failed = self._store_failed(exc)
            if self.repo.writable():
                # Once more as it is (a dropped connection or a lock that timed out passes);
                # failing again while the store takes writes, and not by the database's own
                # failure, it is one of the messages.
                failed_while_writable += 1
                if failed_while_writable == 1:
                    log.warning("a batch of %d failed (%s): trying it again", len(batch), failure)
                    continue
                if not store_failed:
                    if len(batch) > 1:
                        return self._one_by_one(batch)
                    return [self._poison(batch[0], failure)]
                # The database's own failure again (many connections ended at once: the
                # pool hands out another that is going): no message is to blame.
                log.warning("a batch of %d failed again (%s): retried", len(batch), failure)
                if not self._pump_for(backoff.next()):
                    return []
                continue
            if self.health.store_error is None:
                self.health.store_error = failure
                self.diagnostics(True)  # status says so while the batch is held
                log.error(
                    "the store cannot take a batch of %d (%s): its messages are held "
                    "unacknowledged and retried (1 s doubling to %.0f s)",
                    len(batch),
                    failure,
                    MOST_S,
                )
            self.health.error(f"store error: {failure}")
            if not self._pump_for(backoff.next()):
                return []  # stopping: the held messages come back at the next start
        return []

    def _store_failed(self, exc: Exception) -> bool:
        """Whether the database itself failed (DB-API's OperationalError: a lost connection,
        a lock that timed out, a full disk), which no message causes."""
        dbapi = self.repo.engine.dialect.loaded_dbapi
        return isinstance(exc, OperationalError | dbapi.OperationalError)

    def _one_by_one(self, batch: list[Work]) -> list[Batch]:
        """Each item in a transaction of its own, to find the one that fails the batch."""
        log.warning("a batch of %d failed while the store works: retrying one by one", len(batch))
        done: list[Batch] = []
        for item in batch:
            done += self.commit([item])
        return done

    def _poison(self, item: Work, failure: str) -> Batch:
        """A message that fails alone while the store works: refused and acknowledged."""
        b = Batch(self.clock())
        log.error("%s fails on its own (%s): dropped", type(item).__name__, failure)
        if isinstance(item, Inbound):
            b.refused += 1
            b.acks.append((item.mid, item.qos))
            user = self.topics.user_of(item.topic)
            b.refusals.append(
                Refused(
                    user if user in self.profiles else None,
                    item.topic,
                    "the service failed on this message and dropped it; the log has the "
                    "details (please report it)",
                )
            )
        self.health.error(f"dropped a message that fails alone: {failure}")
        return b

    def _pump_for(self, seconds: float) -> bool:
        """Keep the connection alive for `seconds`; False when the service is stopping."""
        until = time.monotonic() + seconds
        while not self.stopping.is_set():
            left = until - time.monotonic()
            if left <= 0:
                return True
            self.transport.pump(min(left, 0.1))
        return False
