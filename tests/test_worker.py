"""The worker with fakes (MemoryTransport, an in-memory store): the order of commit,
acknowledgement and publish, under a store that fails."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

from pytest_mock import MockerFixture
from recovery_coach.config import parse_config
from recovery_coach.mqtt_link import Inbound
from recovery_coach.simulate import Simulation
from recovery_coach.work import DayStart
from service_process import user_config
from sqlalchemy.exc import OperationalError


def test_nothing_is_acknowledged_or_published_before_its_commit(mocker: MockerFixture) -> None:
    """The first commit fails ("disk is full") and the store refuses a test write: the
    batch is held, with nothing acknowledged and nothing published, then committed on the
    retry, and only then acknowledged and its nudges sent, once each."""
    sim = Simulation(parse_config({"users": {"alex": user_config()}}))
    now = datetime.now(UTC)
    sim.now = now
    real_commit = sim.repo.uow.commit
    at_failure: list[tuple[int, int]] = []

    def commit() -> None:
        if not at_failure:
            at_failure.append((len(sim.transport.acked), len(sim.transport.sent)))
            raise OperationalError("INSERT ...", {}, Exception("database or disk is full"))
        real_commit()

    mocker.patch.object(sim.repo.uow, "commit", side_effect=commit)
    mocker.patch.object(sim.repo, "writable", side_effect=[False, True])
    body: dict[str, Any] = {
        "event_id": "w1",
        "ended_at": (now - timedelta(minutes=1)).isoformat(),
        "kind": "strength",
        "focus": "legs",
    }
    topic = "recovery_coach/alex/workout/completed"
    sim.worker.safely([Inbound(7, 1, topic, json.dumps(body).encode(), False)])
    assert at_failure == [(0, 0)]  # the failed attempt had acknowledged and sent nothing
    assert sim.transport.acked == [7]  # after the retry committed it
    nudges = [json.loads(s.payload) for s in sim.transport.on("recovery_coach/alex/nudge")]
    ids = [n["nudge_id"] for n in nudges]
    assert ids
    assert len(ids) == len(set(ids))
    assert {n["kind"] for n in nudges} >= {"cooldown_start"}
    assert sim.worker.health.store_error is None  # recovered, and says so


def test_a_batch_of_day_starts_reads_its_handled_ids_in_one_query(mocker: MockerFixture) -> None:
    """At start every user's day may begin at once: one query for the batch (on
    PostgreSQL each was a round trip: a quarter of the start-up's worker time)."""
    users = [f"u{i}" for i in range(50)]
    sim = Simulation(parse_config({"users": {u: user_config() for u in users}}))
    sim.now = datetime(2026, 3, 2, 7, 0, tzinfo=UTC)
    query = mocker.spy(sim.repo.sql, "query")
    sim.worker.safely([DayStart(u) for u in users])
    reads = [c for c in query.call_args_list if "rc_handled_events" in c.args[0]]
    assert len(reads) == 1
    assert sim.worker.health.events_handled == len(users)
    sim.worker.safely([DayStart(u) for u in users])  # the same ticks again: duplicates
    assert sim.worker.health.duplicates == len(users)
