"""Home Assistant discovery and every user's retained state: what goes out on connect.

Announcing is done CHUNK users per batch, so events go on being handled while 100,000
users' discovery and states go out. A resumed session means the broker kept our retained
messages: then only what changed goes out again, unless the announcement itself changed
(its fingerprint: version, topics, users' names).
"""

from __future__ import annotations

import hashlib
import json
import logging
import random
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime

from recovery_coach import __version__
from recovery_coach.app.work import Announce, AnnounceMore, Work
from recovery_coach.contract import discovery
from recovery_coach.contract.topics import Topics
from recovery_coach.contract.transport import Transport
from recovery_coach.core.coach import state_view
from recovery_coach.core.models import Profile
from recovery_coach.store import SqlRepository

log = logging.getLogger(__name__)

CHUNK = 200  # users' discovery and state per batch while announcing
# A changed state waits behind the nudges: it goes out when the worker is idle, at most once
# per STATE_EVERY_S per user (a burst of their events), the last change always included;
# under a long burst, CHUNK at a time once held MAX_HOLD_S. A dashboard needs no more, and
# sent with each batch's nudges the states delayed the next batch's by a sixth.
STATE_EVERY_S = 0.5
MAX_HOLD_S = 1.0
STORE_RETRY_S = 1.0  # held states read the store again this long after it failed


class Announcer:
    def __init__(
        self,
        transport: Transport,
        topics: Topics,
        repo: SqlRepository,
        profiles: dict[str, Profile],
        *,
        with_discovery: bool,
        enqueue: Callable[[Work], None],
        finished: Callable[[], None],
    ) -> None:
        self.transport = transport
        self.topics = topics
        self.repo = repo
        self.profiles = profiles
        self.with_discovery = with_discovery
        self.enqueue = enqueue
        self.finished = finished  # called when an announcement is complete
        self.removed_users: set[str] = set()  # left the config: their entities go
        self.added_users: set[str] = set()  # joined the config: announced on connect
        self._todo: list[str] = []
        self._queued = False  # an AnnounceMore is on the queue
        self._fingerprint = ""  # of a full announce in progress
        self._stale: set[str] = set()  # state changed while the broker was away
        self._last_state: dict[str, float] = {}  # user -> when their state last went out
        self._prune_above = 4 * CHUNK  # _last_state's size that sets off the next prune
        # user -> (held since, due): oldest first, as a dict keeps its insertion order
        self._held: dict[str, tuple[float, float]] = {}
        self._store_retry_at = 0.0  # monotonic: held states wait for the store until then
        self._awaiting: tuple[int, str] | None = None  # (last mid, fingerprint) of a full one

    @property
    def pending(self) -> bool:
        return bool(self._todo)

    def fingerprint(self) -> str:
        """What a full announcement says: version, topics, and every user's name."""
        h = hashlib.sha256(f"{__version__}|{self.topics.status}|{self.with_discovery}".encode())
        for user, profile in sorted(self.profiles.items()):
            h.update(f"|{user}={profile.name}".encode())
        return h.hexdigest()

    def announced_as_now(self) -> bool:
        return self.repo.queries.get_meta(self._meta_key) == self.fingerprint()

    @property
    def _meta_key(self) -> str:
        return self.topics.shard.meta_key("announced")

    def later(self) -> None:
        """Home Assistant came online. It restarts its MQTT integration in a burst; a short
        random delay spreads the re-announcements of many services."""
        timer = threading.Timer(random.uniform(1.0, 5.0), self.enqueue, args=(Announce(),))
        timer.daemon = True
        timer.start()

    def taken(self) -> None:
        """The queued AnnounceMore was taken by the worker."""
        self._queued = False

    def state(self, user: str, now: datetime) -> None:
        """The user's state changed: held until `release`."""
        if user not in self.profiles:
            return
        if not self.transport.is_connected():
            self._stale.add(user)  # published on the next connect
            return
        if user in self._held:
            return
        t = now.timestamp()
        last = self._last_state.get(user)
        self._held[user] = (t, t if last is None else max(t, last + STATE_EVERY_S))

    @property
    def holding(self) -> bool:
        return bool(self._held)

    def release(self, now: datetime, *, idle: bool, everything: bool = False) -> None:
        """Publish the held states that are due: when the worker is `idle`, all of them;
        while it is busy, CHUNK of those held MAX_HOLD_S; when stopping, `everything`."""
        t = now.timestamp()
        if everything:
            due = list(self._held)
        elif idle:
            due = [u for u, (_, at) in self._held.items() if at <= t]
        else:
            due = []
            for user, (since, at) in self._held.items():
                if t - since < MAX_HOLD_S or len(due) == CHUNK:
                    break  # the rest were held later
                if at <= t:
                    due.append(user)
        if due and time.monotonic() < self._store_retry_at:
            return  # the store failed a moment ago: states wait, nudges go on
        for user in due:
            if user not in self.profiles:
                del self._held[user]
            elif not self.transport.is_connected():
                del self._held[user]
                self._stale.add(user)
            else:
                try:
                    self._publish_state(user, now)
                except Exception as exc:  # the store: this and the rest stay held
                    self._store_retry_at = time.monotonic() + STORE_RETRY_S
                    log.debug("states wait for the store: %s", exc)
                    break
        if len(self._last_state) > self._prune_above:  # only the last STATE_EVERY_S matters
            self._last_state = {u: a for u, a in self._last_state.items() if t - a < STATE_EVERY_S}
            # Not again until it has doubled: a burst of many users' states would otherwise
            # rebuild the map at every release.
            self._prune_above = max(4 * CHUNK, 2 * len(self._last_state))

    def _publish_state(self, user: str, now: datetime) -> int | None:
        view = state_view(self.profiles[user], self.repo.peek(user), now)  # may fail: kept
        self._held.pop(user, None)
        self._last_state[user] = now.timestamp()
        return self.transport.publish(self.topics.state(user), json.dumps(view), qos=1, retain=True)

    def announce(self, *, full: bool) -> None:
        """Removals now; discovery and states of everyone (full) or of the users added to
        the config and those whose state changed while the broker was away, in chunks."""
        if not self.transport.is_connected():
            return
        for user in sorted(self.removed_users):
            if self.with_discovery:
                for topic, payload in discovery.removal_messages(user):
                    self.transport.publish(topic, payload, qos=1, retain=True)
            self.transport.publish(self.topics.state(user), b"", qos=1, retain=True)
        self.removed_users = set()
        users = set(self.profiles) if full else (self.added_users | self._stale)
        self.added_users = set()
        self._stale.clear()
        self._awaiting = None  # a new connection: an old mid may come round again
        if full:
            self._fingerprint = self.fingerprint()
        self._todo = sorted(set(self._todo) | (users & set(self.profiles)))
        if not self._todo:
            self.finished()

    def some(self) -> None:
        """The next chunk; the rest waits for the next batch."""
        if not self.transport.is_connected():
            return  # the next connect announces again
        now = datetime.now(UTC)
        chunk = self._todo[:CHUNK]
        last: int | None = None
        for done, user in enumerate(chunk):
            try:
                last = self._announce_one(user, now)
            except Exception:
                del self._todo[:done]  # the rest, this one first, once the store answers
                if not self._queued:
                    self._queued = True
                    timer = threading.Timer(STORE_RETRY_S, self.enqueue, args=(AnnounceMore(),))
                    timer.daemon = True
                    timer.start()
                raise
        del self._todo[: len(chunk)]
        if self._todo:
            if not self._queued:
                self._queued = True
                self.enqueue(AnnounceMore())
            return
        if self._fingerprint and last is not None:
            # Recorded once the broker has the last message (its PUBACK, `acked`): a service
            # stopped before that (a shard handed to another instance) left some in paho's
            # queue, and the next one must announce in full again.
            self._awaiting = (last, self._fingerprint)
        self._fingerprint = ""
        self.finished()

    def acked(self, mid: int) -> None:
        """A PUBACK that was no nudge's: the end of a full announcement, perhaps."""
        if self._awaiting is not None and self._awaiting[0] == mid:
            self.repo.uow.meta(self._meta_key, self._awaiting[1])  # with the batch's commit
            self._awaiting = None

    def _announce_one(self, user: str, now: datetime) -> int | None:
        if self.with_discovery:
            for topic, payload in discovery.discovery_messages(
                self.topics.base,
                user,
                self.profiles[user].name,
                __version__,
                availability=self.topics.status,
            ):
                self.transport.publish(topic, payload, qos=1, retain=True)
        return self._publish_state(user, now)
