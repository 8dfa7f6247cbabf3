"""The worker with fakes (MemoryTransport, an in-memory store): the order of commit,
acknowledgement and publish, under a store that fails."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import given
from hypothesis import strategies as st
from pytest_mock import MockerFixture
from recovery_coach.app.announcer import MAX_HOLD_S, STATE_EVERY_S
from recovery_coach.app.work import DayStart
from recovery_coach.contract.config import parse_config
from recovery_coach.contract.transport import Inbound
from recovery_coach.runtime.simulate import Simulation
from recovery_coach.store import PENDING, PUBLISHED
from sqlalchemy.exc import OperationalError

from tests.support.service_process import user_config


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


NOON = datetime(2026, 3, 2, 11, 0, tzinfo=UTC)  # midday in the config's Berlin
TOPIC = "recovery_coach/alex/workout/completed"
NUDGES = "recovery_coach/alex/nudge"

workouts = st.lists(
    st.fixed_dictionaries(
        {
            "kind": st.sampled_from(["strength", "cardio", "mobility"]),
            "focus": st.sampled_from(["legs", "upper", None]),
            "rpe": st.integers(min_value=1, max_value=10),
            "duration_min": st.integers(min_value=5, max_value=120),
            "minutes_ago": st.integers(min_value=0, max_value=180),
        }
    ),
    min_size=2,
    max_size=5,
)


def inbound(i: int, w: dict[str, Any], now: datetime = NOON) -> Inbound:
    body = {k: v for k, v in w.items() if k != "minutes_ago"}
    body["event_id"] = f"w{i}"
    body["ended_at"] = (now - timedelta(minutes=w["minutes_ago"])).isoformat()
    if body["kind"] != "strength":
        body["focus"] = None
    return Inbound(i + 1, 1, TOPIC, json.dumps(body).encode(), False)


@given(workouts)
def test_a_batch_sends_what_it_stores_once_and_records_it_sent(batch: list[dict[str, Any]]) -> None:
    """Several events of one person in one batch: a nudge that one event plans and a later
    one cancels or rewords goes out as the batch leaves it, or not at all. Every nudge sent
    has its stored row, none is sent twice, the committed state already names them sent,
    and their PUBACKs change only the outbox."""
    sim = Simulation(parse_config({"users": {"alex": user_config()}}))
    sim.now = NOON
    states = states_written(sim)
    sim.worker.safely([inbound(i, w) for i, w in enumerate(batch)])
    sent = [json.loads(s.payload)["nudge_id"] for s in sim.transport.on(NUDGES)]
    rows = dict(sim.repo.sql.query("SELECT nudge_id, status FROM rc_nudges", ()))
    assert len(sent) == len(set(sent))
    due = sim.repo.sql.query("SELECT nudge_id, due_at FROM rc_nudges", ())
    assert set(sent) == {i for i, at in due if at <= NOON.timestamp() + 0.05}
    assert {i for i in sent if rows.get(i) != PENDING} == set()
    recent = {n.nudge_id for n in sim.repo.peek("alex").recent_nudges}
    assert set(sent) <= recent
    planned = {p.nudge_id: p.sent for p in sim.repo.peek("alex").planned}
    assert all(planned.get(i) for i in sent)
    before = len(states)
    sim.transport.pump(0.0)  # the PUBACKs
    sim.worker.safely([sim.queue.get_nowait() for _ in range(sim.queue.qsize())])
    rows = dict(sim.repo.sql.query("SELECT nudge_id, status FROM rc_nudges", ()))
    assert {i for i in sent if rows[i] != PUBLISHED} == set()
    assert states[before:] == []  # no state written for the PUBACKs


def states_written(sim: Simulation) -> list[str]:
    """The users whose state each commit writes (hypothesis and function fixtures do not mix)."""
    written: list[str] = []
    real = sim.repo.uow.on_commit

    def on_commit(states: dict[str, Any], removed: set[str]) -> None:
        written.extend(states)
        real(states, removed)

    sim.repo.uow.on_commit = on_commit
    return written


def test_states_wait_behind_the_nudges_and_the_last_change_always_goes_out() -> None:
    """A person's events in quick succession: the state goes out after the nudges, at most
    once per STATE_EVERY_S while they keep coming, and the last one names the last event.
    A busy worker holds states back up to MAX_HOLD_S; a stop sends what is held."""
    sim = Simulation(parse_config({"users": {"alex": user_config()}}))
    states = "recovery_coach/alex/state"
    step = timedelta(seconds=STATE_EVERY_S / 5)
    lift = {"kind": "strength", "focus": "legs", "rpe": 7, "duration_min": 50, "minutes_ago": 0}
    for i in range(3):
        sim._step([inbound(i, lift, NOON + i * step)], NOON + i * step)
    topics = [s.topic for s in sim.transport.sent]
    assert topics.count(states) == 1  # the first event's; the others are held
    assert topics.index(states) > topics.index(NUDGES)  # after the nudges
    worker = sim.worker
    later = NOON + timedelta(seconds=STATE_EVERY_S)
    worker.announcer.release(later, idle=False)  # busy, and held less than MAX_HOLD_S
    assert [s.topic for s in sim.transport.sent].count(states) == 1
    worker.announcer.release(NOON + step + timedelta(seconds=MAX_HOLD_S), idle=False)
    last = json.loads(sim.transport.on(states)[-1].payload)
    assert len(sim.transport.on(states)) == 2
    assert last["last_workout"]["event_id"] == "w2"
    walk = {"kind": "cardio", "focus": None, "rpe": 3, "duration_min": 20, "minutes_ago": 0}
    sim._step([inbound(3, walk, later)], later)
    assert len(sim.transport.on(states)) == 2  # held: the last went out a moment ago
    worker.stopping.set()
    worker.drain()  # a clean stop: retained, so the held one must stand
    assert json.loads(sim.transport.on(states)[-1].payload)["last_workout"]["event_id"] == "w3"
