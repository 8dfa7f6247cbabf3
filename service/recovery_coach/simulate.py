"""`recovery-coach simulate`: replay inbound messages on a virtual clock, with no broker.

The same handler, rules and placement as the live service; the scheduler is a heap keyed by
due time with the live scheduler's semantics (a job id is replaced, not doubled; cancelled
jobs never fire; a published nudge id never fires again). Output is deterministic.
"""

from __future__ import annotations

import heapq
import json
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import IO, Any

from pydantic import AwareDatetime, BaseModel, ConfigDict, ValidationError

from .coach import next_day_start
from .config import Config
from .message_handler import MessageHandler, Outcome
from .models import Nudge, UserState


class MemoryRepository:
    """The handler's repository in memory: writes apply at once (no batch to commit)."""

    def __init__(self) -> None:
        self.states: dict[str, UserState] = {}
        self.events: set[tuple[str, str]] = set()
        self.sent: set[str] = set()
        self.scheduled: list[tuple[str, Nudge]] = []
        self.cancelled: list[str] = []

    def load(self, user: str) -> UserState:
        return self.states.get(user, UserState())

    def seen(self, user: str, event_id: str) -> bool:
        return (user, event_id) in self.events

    def published(self, nudge_ids: Sequence[str]) -> set[str]:
        return {i for i in nudge_ids if i in self.sent}

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


@dataclass(order=True)
class _Job:
    due: datetime
    seq: int
    job_id: str = field(compare=False)
    user: str = field(compare=False)
    nudge: Nudge | None = field(compare=False, default=None)  # None: the user's day starts


class VirtualScheduler:
    """Jobs by id on a virtual clock; replacing an id supersedes the earlier job."""

    def __init__(self) -> None:
        self._heap: list[_Job] = []
        self._live: dict[str, _Job] = {}
        self._seq = 0

    def add(self, job_id: str, user: str, due: datetime, nudge: Nudge | None) -> None:
        self._seq += 1
        job = _Job(due, self._seq, job_id, user, nudge)
        self._live[job_id] = job
        heapq.heappush(self._heap, job)

    def cancel(self, job_id: str) -> None:
        self._live.pop(job_id, None)

    def due(self, until: datetime) -> Iterator[_Job]:
        while self._heap and self._heap[0].due <= until:
            job = heapq.heappop(self._heap)
            if self._live.get(job.job_id) is job:
                del self._live[job.job_id]
                yield job


class InputLine(BaseModel):
    model_config = ConfigDict(extra="forbid")
    topic: str
    payload: dict[str, Any] | str
    received_at: AwareDatetime | None = None


def _own_time(payload: dict[str, Any] | str) -> datetime | None:
    if not isinstance(payload, dict):
        return None
    for key in ("ended_at", "at", "planned_at"):
        value = payload.get(key)
        if isinstance(value, str):
            try:
                t = datetime.fromisoformat(value)
            except ValueError:
                continue
            if t.tzinfo is not None:
                return t
    return None


LINE_SHAPE = '{"topic": ..., "payload": {...}, "received_at": ...}'


def _line_reason(exc: ValidationError) -> str:
    """Why an input line cannot be replayed, in words a person reads."""
    err = exc.errors()[0]
    where = ".".join(str(p) for p in err["loc"])
    kind = err["type"]
    if kind == "json_invalid":
        return f"not valid JSON; each line is one object like {LINE_SHAPE}"
    if kind in ("model_type", "json_type", "dict_type") and not where:
        return f"must be a JSON object like {LINE_SHAPE}"
    if kind == "extra_forbidden":
        return f"{where} is not a known key (a line has topic, payload and received_at)"
    if kind == "missing":
        return f"{where} is required"
    if where == "received_at":
        return "received_at must be an ISO 8601 time with an offset, e.g. 2026-03-01T18:30:00+01:00"
    if where.startswith("payload"):
        return "payload must be a JSON object, or a string holding the raw message body"
    if where == "topic":
        return "topic must be text"
    return f"{where}: {err['msg']}"


@dataclass
class Replay:
    """Inputs ready to replay, and the refusals of lines that could not even be read."""

    messages: list[tuple[datetime, int, str, bytes]]
    unreadable: list[dict[str, Any]]


def read_events(lines: Iterable[str]) -> Replay:
    """Parse EVENTS.jsonl; each message gets its receipt time (default: the payload's own)."""
    messages: list[tuple[datetime, int, str, bytes]] = []
    unreadable: list[dict[str, Any]] = []
    last: datetime | None = None
    for n, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            item = InputLine.model_validate_json(line)
        except ValidationError as exc:
            reason = f"line {n}: {_line_reason(exc)}"
            unreadable.append({"topic": None, "reason": reason, "event_id": None})
            continue
        at = item.received_at or _own_time(item.payload) or last
        if at is None:
            unreadable.append(
                {
                    "topic": item.topic,
                    "reason": f"line {n}: no received_at and no time in the payload",
                    "event_id": None,
                }
            )
            continue
        body = (
            item.payload.encode()
            if isinstance(item.payload, str)
            else json.dumps(item.payload).encode()
        )
        messages.append((at, n, item.topic, body))
        last = at
    messages.sort(key=lambda m: (m[0], m[1]))
    return Replay(messages, unreadable)


class Simulation:
    """The core on a virtual clock: messages in, published nudges out, in due order."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.profiles = config.profiles()
        self.repo = MemoryRepository()
        self.handler = MessageHandler(config.base_topic, self.profiles, self.repo)
        self.scheduler = VirtualScheduler()
        self.published: list[dict[str, Any]] = []
        self.refused: list[dict[str, Any]] = []

    def _absorb(self, out: Outcome) -> None:
        if out.refused is not None:
            self.refused.append(out.refused.payload())
        for job_id in out.cancelled:
            self.scheduler.cancel(job_id)
        for nudge in out.scheduled:
            self.scheduler.add(nudge.nudge_id, nudge.user, nudge.due_at, nudge)
        self.repo.scheduled.clear()

    def start(self, at: datetime) -> None:
        """As the live service does on start: every user's day is planned now."""
        for user in sorted(self.profiles):
            self._day(user, at)

    def _day(self, user: str, at: datetime) -> None:
        self._absorb(self.handler.day_started(user, at))
        nxt = next_day_start(self.profiles[user], at)
        self.scheduler.add(f"day:{user}", user, nxt, None)

    def advance(self, until: datetime) -> None:
        for job in self.scheduler.due(until):
            if job.nudge is None:
                self._day(job.user, job.due)
                continue
            if job.nudge.nudge_id in self.repo.sent:
                continue
            nudge = self.handler.word(job.nudge, job.due)
            if nudge is None:
                continue
            state = self.handler.nudge_published(job.user, nudge)
            self.repo.states[job.user] = state
            self.repo.sent.add(nudge.nudge_id)
            self.published.append(nudge.payload(self.profiles[job.user].tz))

    def receive(self, at: datetime, topic: str, body: bytes) -> None:
        self.advance(at)
        self._absorb(self.handler.handle(topic, body, at))

    def run(self, replay: Replay, horizon: timedelta) -> None:
        self.refused.extend(replay.unreadable)
        if not replay.messages:
            return
        self.start(replay.messages[0][0])
        for at, _, topic, body in replay.messages:
            self.receive(at, topic, body)
        self.advance(replay.messages[-1][0] + horizon)


def simulate(
    config: Config, lines: Iterable[str], horizon_hours: float, out: IO[str], err: IO[str]
) -> None:
    """Run a replay and print nudges (stdout) and refusals (stderr), one JSON object a line."""
    sim = Simulation(config)
    sim.run(read_events(lines), timedelta(hours=horizon_hours))
    for item in sim.refused:
        err.write(json.dumps(item, ensure_ascii=False, sort_keys=False) + "\n")
    for nudge in sim.published:
        out.write(json.dumps(nudge, ensure_ascii=False) + "\n")
