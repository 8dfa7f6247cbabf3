"""The store on PostgreSQL: the live service with a PostgreSQL URL survives kill -9 too.

PostgreSQL is checked and started when it is installed but stopped (as on this project's
machines); where it is not installed at all the tests say so and skip.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import psycopg
import pytest
from recovery_coach.core.models import UserState
from recovery_coach.jobs.rows import JobRow
from recovery_coach.store import (
    EVENT_IDS_KEPT_S,
    NUDGES_KEPT_S,
    SqlRepository,
    handled_events,
    jobs,
    make_engine,
    nudges,
    user_states,
)
from sqlalchemy import create_engine, func, insert, select, text

from tests.support.mosquitto import BrokerFactory
from tests.support.postgres import admin_engine, new_database
from tests.support.service_process import Recorder, ServiceProcess, publish, user_config, workout


@pytest.fixture(scope="module")
def pg_url() -> Iterator[str]:
    with new_database() as url:
        yield url


def test_service_on_postgresql_fires_a_scheduled_nudge_once_across_kill_9(
    tmp_path: Path, mosquitto_factory: BrokerFactory, pg_url: str
) -> None:
    broker = mosquitto_factory()
    base = "rc_pg"
    rec = Recorder(broker.host, broker.port, [f"{base}/#"]).start()
    svc = ServiceProcess(
        tmp_path,
        port=broker.port,
        base=base,
        users={"alex": user_config()},
        extra={"store": pg_url},
    )
    try:
        svc.start().wait_connected()
        # Protein reminder (R8) due 6 s from now: the workout ended 59 min 54 s ago.
        event = workout(ago=timedelta(minutes=60) - timedelta(seconds=6))
        publish(broker.port, f"{base}/alex/workout/completed", event)
        engine = create_engine(pg_url)
        deadline = time.time() + 10
        stored = False
        while time.time() < deadline and not stored:
            with engine.connect() as conn:
                stored = bool(
                    conn.execute(
                        text("select 1 from rc_handled_events where event_id = :e"),
                        {"e": f"workout:{event['event_id']}"},  # dedupe is per kind
                    ).first()
                )
            time.sleep(0.05)
        engine.dispose()
        assert stored
        svc.kill()
        svc.start().wait_connected()

        def reminders(r: Recorder) -> list[dict[str, object]]:
            return [
                n
                for n in r.nudges("alex", base)
                if n["rule"] == "R8" and n["source_event_id"] == event["event_id"]
            ]

        rec.wait_for(lambda r: len(reminders(r)) >= 1, 20, "the reminder from PostgreSQL")
        time.sleep(1.5)
        assert len(reminders(rec)) == 1
    finally:
        svc.close()
        rec.stop()


@pytest.fixture
def own_pg_url(pg_url: str) -> Iterator[str]:
    """A database of the test's own: a service finds no other test's pending nudges."""
    with new_database() as url:
        yield url


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'coach.db'}"
    return str(request.getfixturevalue("pg_url"))


def test_housekeeping_prunes_old_ids_and_finished_nudges_in_the_batch_transaction(
    store_url: str,
) -> None:
    """The database is shared with the module's other tests: only user "prune" is looked at."""
    engine = make_engine(store_url)
    repo = SqlRepository(engine, {})
    now = time.time()
    day = 24 * 3600.0
    old_event, new_event = now - EVENT_IDS_KEPT_S - 60, now - EVENT_IDS_KEPT_S + 60
    past, recent = now - NUDGES_KEPT_S - day, now - NUDGES_KEPT_S + day
    with engine.begin() as conn:
        conn.execute(
            insert(handled_events),
            [
                {"user_id": "prune", "event_id": "old", "handled_at": old_event},
                {"user_id": "prune", "event_id": "new", "handled_at": new_event},
            ],
        )
        rows = [
            ("published-old", "published", past, past),
            ("published-recent", "published", recent, recent),
            ("cancelled-old", "cancelled", past, None),
            ("pending-dead", "pending", past, past),  # its useful life ended a week ago
            ("pending-open", "pending", past, None),  # no expiry: a job still sends it
        ]
        conn.execute(
            insert(nudges),
            [
                {
                    "nudge_id": i,
                    "user_id": "prune",
                    "due_at": due,
                    "expires_at": exp,
                    "status": status,
                    "payload": "{}",
                    "nudge": b"",
                }
                for i, status, due, exp in rows
            ],
        )
    repo.uow.prune(now)
    assert repo.uow.pending()
    repo.uow.commit()
    with engine.connect() as conn:
        events = {
            r[0]
            for r in conn.execute(
                select(handled_events.c.event_id).where(handled_events.c.user_id == "prune")
            )
        }
        kept = {
            r[0] for r in conn.execute(select(nudges.c.nudge_id).where(nudges.c.user_id == "prune"))
        }
    with engine.begin() as conn:  # the module's other tests share the database
        conn.execute(nudges.delete().where(nudges.c.user_id == "prune"))
        conn.execute(handled_events.delete().where(handled_events.c.user_id == "prune"))
    engine.dispose()
    assert events == {"new"}
    assert kept == {"published-recent", "pending-open"}


def test_a_nul_id_among_good_events_in_one_batch_on_postgresql_blocks_none(
    tmp_path: Path, mosquitto_factory: BrokerFactory, own_pg_url: str
) -> None:
    """PostgreSQL text cannot hold NUL: the message carrying one is refused at the edge, and
    the good events of its batch get their nudges (before, the whole batch failed at every
    restart)."""
    broker = mosquitto_factory()
    base = "rc_pg_nul"
    rec = Recorder(broker.host, broker.port, [f"{base}/#"]).start()
    users = {f"u{i}": user_config() for i in range(20)}
    svc = ServiceProcess(
        tmp_path, port=broker.port, base=base, users=users, extra={"store": own_pg_url}
    )
    try:
        svc.start().wait_connected()
        client = broker.paho_client("burst", mqtt5=False)
        client.connect(broker.host, broker.port)
        client.loop_start()
        bodies = [(f"u{i}", workout(f"good-{i}")) for i in range(20)]
        bodies.insert(10, ("u3", workout("bad\x00id")))
        infos = [
            client.publish(f"{base}/{u}/workout/completed", json.dumps(b), qos=1) for u, b in bodies
        ]
        for info in infos:
            info.wait_for_publish(5)
        client.disconnect()
        client.loop_stop()

        def sources(r: Recorder) -> set[str]:
            return {n["source_event_id"] for n in r.all_nudges(base)}

        rec.wait_for(
            lambda r: {f"good-{i}" for i in range(20)} <= sources(r), 15, "all good nudges"
        )
        rec.wait_for(lambda r: bool(r.on(f"{base}/u3/error")), 10, "the refusal")
        assert "NUL" in rec.on(f"{base}/u3/error")[0].json()["reason"]
    finally:
        svc.close()
        rec.stop()


def test_a_terminated_store_connection_mid_traffic_loses_and_doubles_nothing(
    tmp_path: Path, mosquitto_factory: BrokerFactory, own_pg_url: str
) -> None:
    """pg_terminate_backend of the service's connections: the batch that meets the dead
    connection fails, is retried by itself on a new one, and every event gets its nudges
    once, with no reconnect to the broker."""
    broker = mosquitto_factory()
    base = "rc_pg_term"
    rec = Recorder(broker.host, broker.port, [f"{base}/+/nudge"]).start()
    users = {f"u{i}": user_config() for i in range(60)}
    svc = ServiceProcess(
        tmp_path, port=broker.port, base=base, users=users, extra={"store": own_pg_url}
    )
    admin = admin_engine()
    database = own_pg_url.rsplit("/", 1)[1]
    try:
        svc.start().wait_connected()
        first = [(f"u{i}", workout(f"a-{i}")) for i in range(30)]
        for u, e in first:
            publish(broker.port, f"{base}/{u}/workout/completed", e)
        rec.wait_for(lambda r: len(r.on(f"{base}/+/nudge")) >= 30, 15, "the first nudges")
        with admin.connect() as conn:
            killed = conn.execute(
                text(
                    "select count(pg_terminate_backend(pid)) from pg_stat_activity "
                    "where datname = :d and pid <> pg_backend_pid()"
                ),
                {"d": database},
            ).scalar()
        assert killed
        second = [(f"u{i}", workout(f"b-{i}")) for i in range(30, 60)]
        for u, e in second:
            publish(broker.port, f"{base}/{u}/workout/completed", e)

        def cooldowns(r: Recorder) -> list[str]:
            return [n["source_event_id"] for n in r.all_nudges(base, "cooldown_start")]

        expected = {e["event_id"] for _, e in first + second}
        rec.wait_for(lambda r: expected <= set(cooldowns(r)), 30, "every event's cooldown")
        time.sleep(0.5)  # a doubled nudge would follow its first copy within milliseconds
        assert sorted(cooldowns(rec)) == sorted(expected)
        assert "disconnected from the broker" not in svc.log()
    finally:
        svc.close()
        rec.stop()
        admin.dispose()


def test_a_schema_1_store_is_read_and_marked_current_and_a_newer_one_is_refused(
    store_url: str,
) -> None:
    """Schema 1 pickled each outbox Nudge; schema 2 reads the payload JSON every row holds.
    A row written by schema 1 (pickle and all) is read after the upgrade; a store from a
    newer release is refused with the fix, not misread."""
    import pickle

    from recovery_coach.core.models import Nudge
    from recovery_coach.store import SCHEMA_VERSION, SchemaTooNewError, meta, migrate

    engine = make_engine(store_url)
    nudge = Nudge(
        nudge_id="v1-nudge",
        user="migrate",
        rule="R8",
        kind="protein",
        title="Protein for recovery",
        message="Aim for 1.2 to 2.0 g/kg today.",
        speech="Protein time.",
        due_at=datetime(2026, 3, 2, 19, 0, tzinfo=UTC),
        expires_at=None,
        source_event_id="w1",
        evidence=("Morton 2018",),
        data=(("protein_target_g", 96),),
    )
    payload = json.dumps(nudge.payload(ZoneInfo("Europe/Berlin")))
    with engine.begin() as conn:
        conn.execute(meta.delete().where(meta.c.key == "schema"))  # as schema 1 left it
        conn.execute(
            insert(nudges).values(
                nudge_id=nudge.nudge_id,
                user_id="migrate",
                due_at=nudge.due_at.timestamp(),
                expires_at=None,
                status="pending",
                payload=payload,
                nudge=pickle.dumps(nudge),
            )
        )
    migrate(engine)
    with engine.connect() as conn:
        version = conn.execute(select(meta.c.value).where(meta.c.key == "schema")).scalar()
    assert version == str(SCHEMA_VERSION) == "3"
    row = SqlRepository(engine, {}).queries.outbox("v1-nudge")
    assert row is not None
    assert row.nudge.due_at == nudge.due_at
    assert (row.nudge.title, row.nudge.evidence, row.nudge.data) == (
        nudge.title,
        nudge.evidence,
        nudge.data,
    )
    with engine.begin() as conn:
        conn.execute(meta.update().where(meta.c.key == "schema").values(value="4"))
    with pytest.raises(SchemaTooNewError, match=r"schema 4.*reads up to 3"):
        migrate(engine)
    with engine.begin() as conn:
        conn.execute(meta.update().where(meta.c.key == "schema").values(value="3"))
        conn.execute(nudges.delete().where(nudges.c.user_id == "migrate"))
    engine.dispose()


def test_a_schema_2_store_gains_the_profiles_table(store_url: str) -> None:
    """Schema 3 adds rc_profiles (people set up over MQTT): a schema-2 store, which has no
    such table, is opened, given it, and marked 3; profiles then round-trip."""
    from recovery_coach.store import meta, profiles

    engine = make_engine(store_url)
    with engine.begin() as conn:
        profiles.drop(conn)
        conn.execute(meta.update().where(meta.c.key == "schema").values(value="2"))
    engine.dispose()
    engine = make_engine(store_url)
    with engine.begin() as conn:
        version = conn.execute(select(meta.c.value).where(meta.c.key == "schema")).scalar()
        conn.execute(
            insert(profiles).values(user_id="schema3", profile='{"name": "S"}', updated_at=1.0)
        )
    assert version == "3"
    assert SqlRepository(engine, {}).queries.profiles()["schema3"] == '{"name": "S"}'
    with engine.begin() as conn:
        conn.execute(profiles.delete().where(profiles.c.user_id == "schema3"))
    engine.dispose()


def profile_for(user: str) -> Any:
    from tests.support.core_builders import profile

    return profile(user_id=user)


def test_a_cancelled_nudge_planned_again_is_stored_and_scheduled_again(store_url: str) -> None:
    """A geofence flap cancels a visit's nudges, and the visit going on plans them again
    under the same ids: they are pending again with their job (they used to be taken for
    'already sent' and silently never went out); a published one is never planned again.
    Found when `simulate` started to run the live worker and store."""
    from recovery_coach.core.models import Nudge, UserState
    from recovery_coach.jobs.rows import nudge_row

    engine = make_engine(store_url)
    repo = SqlRepository(engine, {"again": profile_for("again")})

    def a_nudge(nudge_id: str, hour: int) -> Nudge:
        return Nudge(
            nudge_id=nudge_id, user="again", rule="R1", kind="cooldown_start",
            title="Cool down now", message="Walk easy for 5 minutes.", speech="Cool down.",
            due_at=datetime(2030, 3, 2, hour, 0, tzinfo=UTC), expires_at=None,
            source_event_id="visit", evidence=(),
        )  # fmt: skip

    def plan(n: Nudge, cancel: tuple[str, ...] = ()) -> set[str]:
        repo.save("again", None, UserState(), [n] if not cancel else [], list(cancel))
        dropped = repo.uow.resolve()
        if not cancel:
            repo.uow.job(nudge_row(n))
        repo.uow.commit()
        return dropped

    def status(nudge_id: str) -> tuple[str | None, bool]:
        with engine.connect() as conn:
            row = conn.execute(select(nudges.c.status).where(nudges.c.nudge_id == nudge_id))
            job = conn.execute(
                text("select 1 from apscheduler_jobs where id = :i"), {"i": nudge_id}
            )
            return row.scalar(), job.first() is not None

    first, later = a_nudge("again-cooldown", 18), a_nudge("again-cooldown", 19)
    assert plan(first) == set()
    plan(first, cancel=(first.nudge_id,))
    assert status(first.nudge_id) == ("cancelled", False)
    assert plan(later) == set()  # not taken for sent
    assert status(later.nudge_id) == ("pending", True)
    repo.uow.published(later.nudge_id, time.time())
    repo.uow.commit()
    assert plan(a_nudge("again-cooldown", 20)) == {"again-cooldown"}  # sent: never again
    with engine.begin() as conn:
        conn.execute(nudges.delete().where(nudges.c.user_id == "again"))
    engine.dispose()


def test_a_failing_statement_among_the_batch_writes_rolls_back_all_of_them(
    store_url: str,
) -> None:
    """On PostgreSQL the batch's writes after the states go in one pipeline, whose errors
    arrive only at its end: the failure still surfaces from `commit`, and the state written
    before it in the same transaction is gone with it."""
    engine = make_engine(store_url)
    repo = SqlRepository(engine, {})
    with engine.begin() as conn:  # a job row the batch does not know of: its insert fails
        conn.execute(insert(jobs).values(id="pipe-dup", next_run_time=1e10, job_state=b"x"))
    try:
        repo.uow.state("pipe", UserState())
        repo.uow.job(JobRow("pipe-dup", 1e10, b"y"))
        with pytest.raises((sqlite3.IntegrityError, psycopg.IntegrityError)):
            repo.uow.commit()
        repo.uow.rollback()
        assert _state_rows(engine, "pipe") == 0
        repo.uow.state("pipe", UserState())  # the same batch without the bad row goes in
        repo.uow.commit()
        assert _state_rows(engine, "pipe") == 1
    finally:
        repo.sql.drop()
        with engine.begin() as conn:  # the module's other tests share the database
            conn.execute(jobs.delete().where(jobs.c.id == "pipe-dup"))
            conn.execute(user_states.delete().where(user_states.c.user_id == "pipe"))
        engine.dispose()


def _state_rows(engine: Any, user: str) -> int:
    with engine.connect() as conn:
        q = select(func.count()).select_from(user_states).where(user_states.c.user_id == user)
        return int(conn.execute(q).scalar() or 0)


def _service_connections(database: str) -> str:
    return (
        "select count(pg_terminate_backend(pid)) from pg_stat_activity "
        f"where datname = '{database}' and pid <> pg_backend_pid()"
    )


def test_reminders_due_while_the_database_drops_connections_all_arrive_once(
    tmp_path: Path, mosquitto_factory: BrokerFactory, own_pg_url: str
) -> None:
    """A database restart, a failover or a pooler's idle kill is an ordinary event: 60
    people's protein reminders fall due, one every 0.3 s, while every connection of the
    service is ended every 0.3 s for 22 s. Each arrives once, without a restart."""
    broker = mosquitto_factory()
    base = "rc_pg_kills"
    rec = Recorder(broker.host, broker.port, [f"{base}/+/nudge", f"{base}/diagnostics"]).start()
    users = {f"u{i}": user_config() for i in range(60)}
    svc = ServiceProcess(
        tmp_path, port=broker.port, base=base, users=users, extra={"store": own_pg_url}
    )
    admin = admin_engine()
    database = own_pg_url.rsplit("/", 1)[1]
    events: dict[str, str] = {}
    try:
        svc.start().wait_connected()
        # R8's reminder is due 60 min after the workout: these fall due 3 s to 21 s from now.
        for i in range(60):
            e = workout(f"k-{i}", ago=timedelta(minutes=60) - timedelta(seconds=3 + 0.3 * i))
            events[f"u{i}"] = e["event_id"]
            publish(broker.port, f"{base}/u{i}/workout/completed", e)

        def handled(r: Recorder) -> int:
            figures = [m.json() for m in r.on(f"{base}/diagnostics") if m.payload]
            return max((f["events_handled"] for f in figures), default=0)

        rec.wait_for(lambda r: handled(r) >= 60, 20, "every workout handled")
        kills = 0
        until = time.monotonic() + 22
        with admin.connect() as conn:
            while time.monotonic() < until:
                kills += conn.execute(text(_service_connections(database))).scalar() or 0
                time.sleep(0.3)  # the fault's own rhythm, not a wait for an outcome
        assert kills > 30

        def reminders(r: Recorder) -> list[tuple[str, str]]:
            return [
                (n["user"], n["source_event_id"])
                for n in r.all_nudges(base)
                if n["rule"] == "R8" and n["source_event_id"].startswith("k-")
            ]

        expected = sorted(events.items())
        rec.wait_for(lambda r: set(reminders(r)) >= set(expected), 60, "every reminder")
        # Nothing left that could send one again: no R8 nudge pending, none in flight.
        engine = create_engine(own_pg_url)
        try:

            def settled() -> bool:
                with engine.connect() as conn:
                    return not conn.execute(
                        text("select 1 from rc_nudges where status = 'pending' and due_at <= :t"),
                        {"t": time.time()},
                    ).first()

            deadline = time.monotonic() + 20
            while not settled() and time.monotonic() < deadline:
                time.sleep(0.1)
            assert settled()
        finally:
            engine.dispose()
        assert sorted(reminders(rec)) == expected
    finally:
        svc.close()
        rec.stop()
        admin.dispose()
