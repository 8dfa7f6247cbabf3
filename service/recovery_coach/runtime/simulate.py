"""`recovery-coach simulate`: replay inbound messages on a virtual clock, with no broker.

It runs what runs live: the same Worker (parse, dedupe, decide, one commit per batch, publish,
PUBACK marks), the same Outbox (nudges worded when they go out) and the same store, on an
in-memory SQLite database, with an in-memory transport and the job table read on a virtual
clock instead of by APScheduler's thread. Output is deterministic.
"""

from __future__ import annotations

import json
import queue
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import IO, Any

from pydantic import AwareDatetime, BaseModel, ConfigDict, ValidationError
from sqlalchemy import Engine, delete, select

from recovery_coach.app.announcer import Announcer
from recovery_coach.app.health import Health
from recovery_coach.app.message_handler import MessageHandler
from recovery_coach.app.outbox import Outbox
from recovery_coach.app.people import People
from recovery_coach.app.work import DayStart, Fire, PubAck, Work
from recovery_coach.app.worker import Worker
from recovery_coach.contract.config import Config
from recovery_coach.contract.inbound import Refused
from recovery_coach.contract.reasons import what_is_wrong
from recovery_coach.contract.topics import Topics
from recovery_coach.contract.transport import Inbound, MemoryTransport
from recovery_coach.jobs import rows as job_rows
from recovery_coach.store import SqlRepository, make_engine
from recovery_coach.store import jobs as job_table


class VirtualJobs:
    """The job table on a virtual clock: rows are written by the worker's commit as live,
    and read here when the clock reaches them (APScheduler's part, without its thread)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def nudge_row(self, nudge: Any) -> job_rows.JobRow:
        return job_rows.nudge_row(nudge)

    def day_row(self, user: str, at: datetime) -> job_rows.JobRow:
        return job_rows.day_row(user, at)

    def committed(self, earliest: float | None, *, cancelled: bool) -> None:
        """Nothing to wake: `next_due` reads the table."""

    def next_due(self, until: datetime) -> tuple[datetime, Work] | None:
        """The soonest job due by `until`, removed from the table as APScheduler removes a
        date job it runs; None when nothing is due."""
        with self.engine.begin() as conn:
            row = conn.execute(
                select(job_table.c.id, job_table.c.next_run_time, job_table.c.job_state)
                .where(job_table.c.next_run_time <= until.timestamp())
                .order_by(job_table.c.next_run_time, job_table.c.id)
                .limit(1)
            ).first()
            if row is None:
                return None
            conn.execute(delete(job_table).where(job_table.c.id == row.id))
        at = datetime.fromtimestamp(row.next_run_time, UTC)
        user = job_rows.day_job_user(row.id)
        if user is not None:
            return at, DayStart(user)
        args = job_rows.job_args(row.job_state)
        return at, Fire(args[0], args[1])


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
    if where == "received_at":
        return "received_at must be an ISO 8601 time with an offset, e.g. 2026-03-01T18:30:00+01:00"
    if where.startswith("payload"):
        return "payload must be a JSON object, or a string holding the raw message body"
    words = what_is_wrong(
        err, mapping="a JSON object", unknown_key="a line has topic, payload and received_at"
    )
    return f"{where} {words}"


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
    """The live worker on a virtual clock: messages in, published nudges out, in order."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.profiles = config.profiles()
        self.now = datetime(1970, 1, 1, tzinfo=UTC)
        self.published: list[dict[str, Any]] = []
        self.refused: list[dict[str, Any]] = []
        self.queue: queue.SimpleQueue[Work] = queue.SimpleQueue()
        self.engine = make_engine("sqlite://")
        self.repo = SqlRepository(self.engine, self.profiles)
        topics = Topics(config.base_topic)
        self.topics = topics
        self.transport = MemoryTransport(on_published=lambda mid: self.queue.put(PubAck(mid)))
        handler = MessageHandler(config.base_topic, self.profiles, self.repo)
        health = Health()
        self.jobs = VirtualJobs(self.engine)
        self.worker = Worker(
            transport=self.transport,
            topics=topics,
            repo=self.repo,
            handler=handler,
            scheduler=self.jobs,
            profiles=self.profiles,
            outbox=Outbox(self.transport, topics, self.repo, handler, self.profiles, health),
            announcer=Announcer(
                self.transport,
                topics,
                self.repo,
                self.profiles,
                with_discovery=False,
                enqueue=self.queue.put,
                finished=lambda: None,
            ),
            health=health,
            rate_limit=config.rate_limit,
            work=self.queue,
            stopping=threading.Event(),
            diagnostics=lambda _force: None,
            people=People(config, self.profiles),
            clock=lambda: self.now,
            on_refused=self._refused,
        )
        self._seen = 0  # messages of the transport already looked at

    def _refused(self, r: Refused) -> None:
        self.refused.append(r.payload())

    def _step(self, items: list[Work], at: datetime) -> None:
        """One batch at `at`, then what it sets off (PUBACKs, more announcing) until quiet."""
        self.now = at
        while items:
            self.worker.safely(items)
            self.transport.pump(0.0)  # the "broker" acknowledges what was published
            items = []
            while not self.queue.empty():
                items.append(self.queue.get_nowait())
        self.worker.announcer.release(at, idle=True)  # quiet until the next step
        for sent in self.transport.sent[self._seen :]:
            user = self.topics.user_of(sent.topic) if sent.payload else None
            if user is not None and sent.topic == self.topics.nudge(user):
                self.published.append(json.loads(sent.payload))
        self._seen = len(self.transport.sent)

    def start(self, at: datetime) -> None:
        """As the live service does on start: every user's day is planned now."""
        self._step([DayStart(user) for user in sorted(self.profiles)], at)

    def advance(self, until: datetime) -> None:
        """Run every job due by `until`, each at its own time."""
        while (due := self.jobs.next_due(until)) is not None:
            self._step([due[1]], due[0])

    def receive(self, at: datetime, topic: str, body: bytes) -> None:
        self.advance(at)
        self._step([Inbound(0, 0, topic, body, False)], at)

    def run(self, replay: Replay, horizon: timedelta) -> None:
        self.refused.extend(replay.unreadable)
        if not replay.messages:
            return
        self.start(replay.messages[0][0])
        for at, _, topic, body in replay.messages:
            self.receive(at, topic, body)
        self.advance(replay.messages[-1][0] + horizon)
        self.engine.dispose()


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
