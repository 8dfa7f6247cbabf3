"""Shards across instances (shards.py, cluster.py): the balance as a pure function, the leases
and fences on a real PostgreSQL, and instances as real processes on a real mosquitto and
PostgreSQL, killed (-9), restarted, rolled and stalled (SIGSTOP) while events and reminders
flow.

Every write of the service is audited by a PostgreSQL trigger that records which instance
committed it (each instance names its connections) and when: a nudge decided twice would be
inserted twice, and a stalled instance's write after it woke would be there to see.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from hypothesis import given
from hypothesis import strategies as st
from paho.mqtt.enums import CallbackAPIVersion
from recovery_coach.contract.config import ConfigError, parse_config
from recovery_coach.contract.shards import (
    LEASE_S,
    Shard,
    application_name,
    fair_share,
    rebalance,
    shard_of,
)
from recovery_coach.jobs import rows as job_rows
from recovery_coach.jobs.rows import JOBS_TABLE, day_job_user
from recovery_coach.store import Members, SqlRepository, make_engine
from recovery_coach.store.reshard import ShardCountInUseError, reshard
from recovery_coach.store.schema import jobs_table
from recovery_coach.store.shard_leases import LIVE_INSTANCES, SCHEMA, Fence, FencedError, Leases
from sqlalchemy import Engine, create_engine, insert, inspect, text

from tests.support.mosquitto import BrokerFactory, MosquittoBroker
from tests.support.postgres import new_database
from tests.support.service_process import Recorder, ServiceProcess, user_config, workout

# ---------------------------------------------------------------- the balance (pure)


@given(st.integers(1, 64), st.sets(st.text("abcdefgh", min_size=1, max_size=3), min_size=1))
def test_fair_shares_sum_to_the_shard_count_and_differ_by_at_most_one(
    count: int, live: set[str]
) -> None:
    shares = [fair_share(sorted(live), me, count) for me in live]
    assert sum(shares) == count
    assert max(shares) - min(shares) <= 1


@given(
    st.integers(1, 20),
    st.lists(st.sets(st.sampled_from("abcde"), min_size=1), min_size=1, max_size=8),
)
def test_rebalancing_never_gives_a_shard_two_owners_and_settles_on_fair_shares(
    count: int, memberships: list[set[str]]
) -> None:
    """Instances come and go (each set is who is live for a while); each takes and releases
    as `rebalance` says, a take succeeding only on a shard nobody holds (the advisory lock)."""
    held: dict[str, set[int]] = {}
    for live in memberships:
        for gone in set(held) - live:
            del held[gone]  # died: its locks went with its connection
        for _round in range(3):
            for me in sorted(live):
                owners = {k: o for o, ks in held.items() for k in ks}
                release, take = rebalance(me, count, sorted(live), held.get(me, set()), owners)
                mine = held.setdefault(me, set())
                mine -= set(release)
                for k in take:
                    if all(k not in ks for ks in held.values()):
                        mine.add(k)
                everyone = [k for ks in held.values() for k in ks]
                assert len(everyone) == len(set(everyone)), "a shard with two owners"
        assert {me: len(ks) for me, ks in held.items()} == {
            me: fair_share(sorted(live), me, count) for me in live
        }
        assert set().union(*held.values()) == set(range(count))


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        ({"shards": 4}, "shards: more than one shard needs a PostgreSQL store"),
        ({"shards": 4, "store": "sqlite:///x.db"}, "shards: more than one shard needs"),
        ({"shards": 0}, "shards: must be between 1 and 1024"),
        ({"instance": "a/b"}, "instance:"),
        ({"instance": "shards"}, "instance: must not be 'shards'"),
    ],
)
def test_check_config_names_what_sharding_needs(data: dict[str, Any], problem: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_config(data)
    assert problem in str(err.value)


def test_shards_on_postgresql_is_a_valid_config() -> None:
    cfg = parse_config({"shards": 16, "store": "postgresql+psycopg://db/coach", "instance": "a"})
    assert (cfg.shards, cfg.instance) == (16, "a")


def test_a_user_shard_is_the_same_in_another_process() -> None:
    users = [f"user{i}" for i in range(200)]
    here = [shard_of(u, 16) for u in users]
    code = (
        "import json,sys; from recovery_coach.contract.shards import shard_of; "
        "print(json.dumps([shard_of(u, 16) for u in json.loads(sys.argv[1])]))"
    )
    there = subprocess.run(
        [sys.executable, "-c", code, json.dumps(users)], capture_output=True, check=True, text=True
    )
    assert json.loads(there.stdout) == here
    assert set(here) == set(range(16))  # 200 users reach every shard


# ---------------------------------------------------------------- leases on PostgreSQL


@pytest.fixture
def pg_url() -> Iterator[str]:
    with new_database() as url:
        yield url


def test_a_taken_over_shard_fences_its_old_owner(pg_url: str) -> None:
    a, b = Leases(pg_url, "a", 4), Leases(pg_url, "b", 4)
    engine = create_engine(pg_url)
    try:
        a.connect()
        b.connect()
        token_a = a.take(0)
        assert token_a is not None
        assert b.take(0) is None  # a holds the lock
        with engine.begin() as conn:
            Fence(0, "a", token_a).on_connection(conn)  # a may write
        a.drop()  # a's connection is gone (a process that died): PostgreSQL frees the lock
        token_b = b.take(0)
        assert token_b == token_a + 1
        with engine.begin() as conn, pytest.raises(FencedError):
            Fence(0, "a", token_a).on_connection(conn)
        with engine.begin() as conn:
            Fence(0, "b", token_b).on_connection(conn)
        # The old owner's batch commit and start-up writes are refused, and write nothing.
        shard = Shard(0, 4)
        user = next(u for u in (f"p{i}" for i in range(100)) if shard.owns(u))
        store = make_engine(pg_url)
        old = SqlRepository(store, {}, shard, Fence(0, "a", token_a).on_cursor)
        old.uow.meta("written-by", "a")
        with pytest.raises(FencedError):
            old.uow.commit()
        old.uow.rollback()
        with pytest.raises(FencedError):
            Members(store, shard, Fence(0, "a", token_a).on_connection).record([user])
        new = SqlRepository(store, {}, shard, Fence(0, "b", token_b).on_cursor)
        new.uow.meta("written-by", "b")
        new.uow.commit()
        Members(store, shard, Fence(0, "b", token_b).on_connection).record([user])
        assert new.queries.get_meta("written-by") == "b"
        assert Members(store, shard).known() == {user}
        old.sql.drop()
        new.sql.drop()
        store.dispose()
    finally:
        a.drop()
        b.drop()
        engine.dispose()


def test_a_stale_holder_has_its_connections_ended_by_the_taker(pg_url: str) -> None:
    """A holder that stopped renewing (stalled) keeps its lock: the taker ends its backends,
    including one that sits in a transaction holding the fence's row lock."""
    a, b = Leases(pg_url, "a", 2), Leases(pg_url, "b", 2)
    a_writer = create_engine(pg_url, connect_args={"application_name": application_name("a")})
    try:
        a.connect()
        b.connect()
        token = a.take(1)
        assert token is not None
        stuck = a_writer.connect()
        stuck.begin()
        Fence(1, "a", token).on_connection(stuck)  # a write of a's, stalled mid-transaction
        assert b.take(1) is None  # a's lease is current: b waits
        assert b.beat() == set()
        b_side = create_engine(pg_url, isolation_level="AUTOCOMMIT")
        with b_side.connect() as conn:  # a's heartbeat goes stale
            conn.execute(text("UPDATE rc_instances SET expires_at = now() WHERE instance = 'a'"))
        assert "a" not in b.live()
        assert b.take(1) is None  # this try ends a's backends
        deadline = time.monotonic() + 5
        taken = None
        while taken is None and time.monotonic() < deadline:
            taken = b.take(1)
        assert taken == token + 1
        with pytest.raises(Exception, match=r"terminat|closed|connection"):
            stuck.execute(text("SELECT 1"))
        b_side.dispose()
    finally:
        a.drop()
        b.drop()
        a_writer.dispose()


def _jobs_by_table(engine: Engine) -> dict[str, set[str]]:
    with engine.connect() as conn:
        names = [
            t
            for t in inspect(conn).get_table_names()
            if t == JOBS_TABLE or t.startswith("rc_jobs_shard_")
        ]
        return {t: {r[0] for r in conn.execute(text(f"SELECT id FROM {t}"))} for t in names}


def test_a_new_shard_count_moves_every_job_to_its_users_shard_and_back(pg_url: str) -> None:
    """Pending reminders of a store run as one process go with their users to the shards
    (and back), and a change is refused while an instance runs with the old count."""
    engine = make_engine(pg_url)
    users = [f"r{i:02d}" for i in range(40)]
    at = datetime.now(UTC) + timedelta(hours=1)
    rows = [job_rows.day_row(u, at) for u in users]
    with engine.begin() as conn:
        conn.execute(
            insert(jobs_table(JOBS_TABLE)),
            [
                {"id": r.job_id, "next_run_time": r.next_run_time, "job_state": r.state}
                for r in rows
            ],
        )
    every = {r.job_id for r in rows}
    try:
        for count in (16, 4, 1):
            before = _jobs_by_table(engine)
            must_move = sum(
                1
                for table, ids in before.items()
                for job_id in ids
                if Shard(shard_of(str(day_job_user(job_id)), count), count).jobs_table != table
            )
            assert must_move > 0
            assert reshard(engine, count) == must_move
            placed = _jobs_by_table(engine)
            assert set().union(*placed.values()) == every  # none lost
            assert sum(len(ids) for ids in placed.values()) == len(every)  # none doubled
            for table, ids in placed.items():
                for job_id in ids:
                    user = job_rows.day_job_user(job_id)
                    assert user is not None
                    assert Shard(shard_of(user, count), count).jobs_table == table
            assert reshard(engine, count) == 0  # the count is remembered
        running = Leases(pg_url, "old", 1)
        running.connect()
        try:
            with pytest.raises(ShardCountInUseError, match="stop every instance"):
                reshard(engine, 8)
        finally:
            running.drop()
    finally:
        engine.dispose()


# ---------------------------------------------------------------- instances as processes

SHARDS = 16
AUDITED = ("rc_nudges", "rc_user_states", "rc_handled_events")


def prepare(url: str, shards: int) -> None:
    """The schema made before any instance starts, with an audit trigger on every table the
    service writes: who committed each row change, and when."""
    engine = make_engine(url)
    with engine.begin() as conn:
        for ddl in SCHEMA:
            conn.execute(text(ddl))
        for k in range(shards):
            jobs_table(f"rc_jobs_shard_{k}").create(conn, checkfirst=True)
        conn.execute(
            text(
                "CREATE TABLE audit (tbl TEXT, op TEXT, nudge_id TEXT, app TEXT, "
                "at TIMESTAMPTZ DEFAULT clock_timestamp())"
            )
        )
        conn.execute(
            text(
                "CREATE FUNCTION audit_row() RETURNS trigger AS $$ BEGIN "
                "INSERT INTO audit (tbl, op, nudge_id, app) VALUES (TG_TABLE_NAME, TG_OP, "
                "COALESCE(to_jsonb(NEW), to_jsonb(OLD)) ->> 'nudge_id', "
                "current_setting('application_name')); RETURN NULL; END $$ LANGUAGE plpgsql"
            )
        )
        tables = [*AUDITED, *(f"rc_jobs_shard_{k}" for k in range(shards))]
        for t in tables:
            conn.execute(
                text(
                    f"CREATE TRIGGER audit_{t} AFTER INSERT OR UPDATE OR DELETE ON {t} "
                    "FOR EACH ROW EXECUTE FUNCTION audit_row()"
                )
            )
    engine.dispose()


@dataclass
class Cluster:
    """Instances of one sharded service, and what the database says of them."""

    tmp: Path
    broker: MosquittoBroker
    url: str
    users: dict[str, dict[str, Any]]
    base: str
    shards: int = SHARDS
    procs: dict[str, ServiceProcess] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.db: Engine = create_engine(self.url, isolation_level="AUTOCOMMIT")
        self.status = Recorder(self.broker.host, self.broker.port, [f"{self.base}/status/#"])
        self.status.start()

    def start(self, name: str) -> None:
        if name not in self.procs:
            self.procs[name] = ServiceProcess(
                self.tmp / name,
                port=self.broker.port,
                base=self.base,
                users=self.users,
                extra={
                    "store": self.url,
                    "shards": self.shards,
                    "instance": name,
                    "log_level": "DEBUG",
                },
            )
        self.procs[name].start()

    def serving(self) -> set[int]:
        """Shards whose owner has said `online` on the shard's status since it took it."""
        with self.db.connect() as conn:
            taken = {
                int(s): t.timestamp()
                for s, t in conn.execute(text("SELECT shard, taken_at FROM rc_shards"))
                if t is not None
            }
        said = {}
        for m in self.status.on(f"{self.base}/status/shards/+"):
            said[int(m.topic.rsplit("/", 1)[1])] = (m.payload, m.at)
        return {
            k
            for k, at in taken.items()
            if k in said and said[k][0] == b"online" and said[k][1] >= at
        }

    def owners(self) -> dict[int, str | None]:
        """Each shard's owner, where that owner is live (None otherwise)."""
        with self.db.connect() as conn:
            live = {r[0] for r in conn.execute(text(LIVE_INSTANCES))}
            rows = conn.execute(text("SELECT shard, owner FROM rc_shards")).all()
        return {int(s): (o if o in live else None) for s, o in rows}

    def wait_balanced(self, names: list[str], timeout: float = 30.0) -> float:
        """Until every shard is owned by one of `names`, each with its fair share, and each
        owner's client for it is connected; returns how long that took."""
        t0 = time.monotonic()
        want = {n: fair_share(names, n, self.shards) for n in names}
        while time.monotonic() - t0 < timeout:
            owners = self.owners()
            if len(owners) == self.shards and all(o is not None for o in owners.values()):
                got = Counter(o for o in owners.values() if o is not None)
                if dict(got) == want and len(self.serving()) == self.shards:
                    return time.monotonic() - t0
            time.sleep(0.05)
        logs = "\n".join(f"--- {n}\n{p.log()[-3000:]}" for n, p in self.procs.items())
        raise AssertionError(f"not balanced over {names}: {self.owners()}\n{logs}")

    def shards_of(self, name: str) -> set[int]:
        return {k for k, o in self.owners().items() if o == name}

    def audit(self, sql: str, **params: Any) -> list[Any]:
        with self.db.connect() as conn:
            return list(conn.execute(text(sql), params).all())

    def decided_twice(self) -> list[Any]:
        """Nudges whose outbox row was inserted more than once: (id, inserts)."""
        return self.audit(
            "SELECT nudge_id, count(*) FROM audit WHERE tbl = 'rc_nudges' AND op = 'INSERT' "
            "GROUP BY nudge_id HAVING count(*) > 1"
        )

    def close(self) -> None:
        for p in self.procs.values():
            p.close()
        self.status.stop()
        self.db.dispose()


class Publisher:
    """One persistent QoS 1 publisher for the stream of events."""

    def __init__(self, port: int) -> None:
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=f"pub-{uuid.uuid4().hex[:8]}"
        )
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()

    def send(self, topic: str, payload: dict[str, Any]) -> None:
        self.client.publish(topic, json.dumps(payload), qos=1).wait_for_publish(5)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def fast_user() -> dict[str, Any]:
    # A one-minute cooldown: each workout's second nudge is a reminder due a minute later.
    return user_config(settings={"cooldown_minutes": 1})


def by_event(rec: Recorder, base: str, kind: str) -> Counter[str]:
    return Counter(n["source_event_id"] for n in rec.all_nudges(base, kind))


def wait_nudges(rec: Recorder, base: str, kind: str, events: set[str], timeout: float) -> None:
    """Until every event has its `kind` nudge; fails naming the events still without."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if set(by_event(rec, base, kind)) >= events:
            return
        time.sleep(0.05)
    missing = sorted(events - set(by_event(rec, base, kind)))
    raise AssertionError(f"{len(missing)} event(s) without their {kind}: {missing[:20]}")


@pytest.fixture
def cluster_parts(
    tmp_path: Path, mosquitto_factory: BrokerFactory, pg_url: str
) -> tuple[Path, MosquittoBroker, str]:
    prepare(pg_url, SHARDS)
    return tmp_path, mosquitto_factory(), pg_url


def test_kill_restart_and_rolling_restart_lose_nothing_and_decide_nothing_twice(
    cluster_parts: tuple[Path, MosquittoBroker, str],
) -> None:
    tmp, broker, url = cluster_parts
    base = "rc_shards"
    users = {f"u{i:03d}": fast_user() for i in range(200)}
    cluster = Cluster(tmp, broker, url, users, base)
    rec = Recorder(broker.host, broker.port, [f"{base}/+/nudge"]).start()
    pub = Publisher(broker.port)
    events = [(u, workout(f"e-{u}")) for u in sorted(users)]
    names = ["i0", "i1", "i2"]
    try:
        for n in names:
            cluster.start(n)
        cluster.wait_balanced(names)

        def stream() -> None:
            for u, e in events:
                e["ended_at"] = workout()["ended_at"]
                pub.send(f"{base}/{u}/workout/completed", e)
                time.sleep(0.04)

        sender = threading.Thread(target=stream)
        sender.start()
        time.sleep(2.0)  # a quarter of the stream is in
        killed_shards = cluster.shards_of("i0")
        kill_at = time.time()
        cluster.procs["i0"].kill()
        failover = cluster.wait_balanced(["i1", "i2"], timeout=20)
        online_again = [
            max(
                m.at
                for m in cluster.status.on(f"{base}/status/shards/{k}")
                if m.payload == b"online"
            )
            - kill_at
            for k in killed_shards
        ]
        sender.join()
        cluster.start("i0")  # back: the shards rebalance
        cluster.wait_balanced(names)
        for n in names:  # a rolling restart, while the reminders fall due
            cluster.procs[n].stop()
            cluster.wait_balanced([m for m in names if m != n])
            cluster.start(n)
            cluster.wait_balanced(names)
        every = {e["event_id"] for _u, e in events}
        for kind in ("cooldown_start", "cooldown_done"):
            wait_nudges(rec, base, kind, every, 90)
        config = cluster.procs["i0"].config_path
        shown = subprocess.run(
            [sys.executable, "-m", "recovery_coach.cli", "status", "--config", str(config)],
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert shown.returncode == 0, shown.stdout
        listed = [line for line in shown.stdout.splitlines() if "instance i" in line]
        assert len(listed) == 3
        assert all(": online, shard(s) " in line for line in listed)
        assert "not served" not in shown.stdout
        assert cluster.decided_twice() == [], "nudges decided twice"
        doubled = {
            n["user"]
            for kind in ("cooldown_start", "cooldown_done")
            for n in rec.all_nudges(base, kind)
            if by_event(rec, base, kind)[n["source_event_id"]] > 1
        }
        # On the wire, a nudge published by the killed instance whose PUBACK it had not yet
        # committed is sent again by the next owner: only the killed instance's users.
        assert all(shard_of(u, SHARDS) in killed_shards for u in doubled), doubled
        print(
            f"failover: balanced {failover:.2f} s after kill -9; shards online again "
            f"{min(online_again):.2f}-{max(online_again):.2f} s; {len(doubled)} wire duplicate(s)"
        )
        assert max(online_again) < 10.0
    finally:
        pub.close()
        rec.stop()
        cluster.close()


def test_a_stalled_instance_writes_nothing_after_it_wakes(
    cluster_parts: tuple[Path, MosquittoBroker, str],
) -> None:
    tmp, broker, url = cluster_parts
    base = "rc_stall"
    # Two waves on different users: a second workout soon after the first would make the
    # first one's cooldown reminder moot (the rules drop it), whatever the shards do.
    users = {f"{w}{i:02d}": fast_user() for w in "st" for i in range(20)}
    cluster = Cluster(tmp, broker, url, users, base)
    rec = Recorder(broker.host, broker.port, [f"{base}/+/nudge"]).start()
    pub = Publisher(broker.port)
    try:
        cluster.start("a")
        cluster.start("b")
        cluster.wait_balanced(["a", "b"])
        stalled = cluster.procs["b"]
        assert stalled.proc is not None
        stalled.proc.send_signal(signal.SIGSTOP)
        t_stop = time.monotonic()
        first = [(u, workout(f"f-{u}")) for u in sorted(users) if u.startswith("s")]
        for u, e in first:
            pub.send(f"{base}/{u}/workout/completed", e)
        cluster.wait_balanced(["a"], timeout=LEASE_S + 15)
        takeover = time.monotonic() - t_stop
        wait_nudges(rec, base, "cooldown_start", {e["event_id"] for _, e in first}, 20)
        woke_at = cluster.audit("SELECT now()")[0][0]
        stalled.proc.send_signal(signal.SIGCONT)
        stalled.wait_log("lease connection failed", 20)
        cluster.wait_balanced(["a", "b"], timeout=30)  # b has joined again, anew
        second = [(u, workout(f"g-{u}")) for u in sorted(users) if u.startswith("t")]
        for u, e in second:
            pub.send(f"{base}/{u}/workout/completed", e)
        every = {e["event_id"] for _, e in first + second}
        wait_nudges(rec, base, "cooldown_done", every, 90)
        retaken = cluster.audit(
            "SELECT min(taken_at) FROM rc_shards WHERE owner = 'b' AND taken_at > :t", t=woke_at
        )[0][0]
        assert retaken is not None
        stale_writes = cluster.audit(
            "SELECT tbl, op, at FROM audit WHERE app = :app AND at > :woke AND at < :retaken",
            app=application_name("b"),
            woke=woke_at,
            retaken=retaken,
        )
        assert stale_writes == [], "the stalled instance wrote before it owned a shard again"
        assert cluster.decided_twice() == []
        print(f"stall: shards taken over {takeover:.1f} s after SIGSTOP (lease {LEASE_S:.0f} s)")
    finally:
        pub.close()
        rec.stop()
        cluster.close()


def test_the_database_and_the_broker_going_away_lose_nothing(
    cluster_parts: tuple[Path, MosquittoBroker, str],
) -> None:
    """Every PostgreSQL connection ended at once (a database restart): each instance stops
    its shards and joins again, and what arrived meanwhile is handled. Then the broker is
    restarted: the shards' sessions resume."""
    tmp, broker, url = cluster_parts
    base = "rc_edges"
    users = {f"{w}{i:02d}": fast_user() for w in "pq" for i in range(12)}
    cluster = Cluster(tmp, broker, url, users, base)
    rec = Recorder(broker.host, broker.port, [f"{base}/+/nudge"]).start()
    pub = Publisher(broker.port)
    waves = {w: [(u, workout(f"{w}-{u}")) for u in sorted(users) if u[0] == w] for w in "pq"}
    try:
        cluster.start("a")
        cluster.start("b")
        cluster.wait_balanced(["a", "b"])
        for u, e in waves["p"][:6]:
            pub.send(f"{base}/{u}/workout/completed", e)
        database = url.rsplit("/", 1)[1]
        ended = cluster.audit(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE datname = :d AND application_name LIKE 'recovery-coach:%'",
            d=database,
        )[0][0]
        assert ended > 0
        for u, e in waves["p"][6:]:
            pub.send(f"{base}/{u}/workout/completed", e)
        cluster.procs["a"].wait_log("lease connection failed", 20)
        cluster.wait_balanced(["a", "b"], timeout=30)
        wait_nudges(rec, base, "cooldown_start", {e["event_id"] for _, e in waves["p"]}, 30)
        pub.close()
        broker.restart()
        pub = Publisher(broker.port)
        for u, e in waves["q"]:
            pub.send(f"{base}/{u}/workout/completed", e)
        wait_nudges(rec, base, "cooldown_start", {e["event_id"] for _, e in waves["q"]}, 30)
        every = {e["event_id"] for w in "pq" for _, e in waves[w]}
        wait_nudges(rec, base, "cooldown_done", every, 90)
        assert cluster.decided_twice() == []
    finally:
        pub.close()
        rec.stop()
        cluster.close()


def _retained_states(broker: MosquittoBroker, base: str) -> set[str]:
    """The users whose state the broker holds, as a client subscribing now sees them."""
    fresh = Recorder(broker.host, broker.port, [f"{base}/+/state"]).start()
    try:
        # The broker sends what it retains right after the SUBACK; a marker published after
        # the subscription arrives after all of them (one connection, in order).
        marker = f"{base}/marker/state"
        fresh.client.publish(marker, b"end", qos=1).wait_for_publish(5)
        fresh.wait_for(lambda r: bool(r.on(marker)), 10, "the marker")
        return {m.topic.split("/")[1] for m in fresh.messages if m.retain and m.payload}
    finally:
        fresh.stop()


def test_the_shared_status_stays_online_and_every_state_appears_at_a_sharded_start(
    cluster_parts: tuple[Path, MosquittoBroker, str],
) -> None:
    """Three instances of 16 shards start together with 340 people: every person's retained
    state is there within 30 s, whoever owns their shard. Then the instance that keeps the
    shared status (the owner of shard 0) is killed: `<base>/status` never says `offline`
    while an instance lives, and says it once the last one stops."""
    tmp, broker, url = cluster_parts
    base = "rc_keep"
    users = {f"p{i:03d}": user_config() for i in range(340)}
    cluster = Cluster(tmp, broker, url, users, base)
    names = ["i0", "i1", "i2"]
    try:
        t0 = time.monotonic()
        # One instance first, which takes every shard and starts announcing; the others
        # join at once, and most shards move to them mid-announcement.
        cluster.start("i0")
        while len(cluster.shards_of("i0")) < cluster.shards and time.monotonic() - t0 < 20:
            time.sleep(0.02)  # polling the lease table
        for n in names[1:]:
            cluster.start(n)
        states: set[str] = set()
        while time.monotonic() - t0 < 30 and states != set(users):
            states = _retained_states(broker, base)
        assert sorted(set(users) - states) == [], f"{len(states)} of 340 states after 30 s"
        cluster.wait_balanced(names)
        keeper = cluster.owners()[0]
        assert keeper is not None
        cluster.procs[keeper].kill()
        survivors = [n for n in names if n != keeper]
        cluster.wait_balanced(survivors, timeout=30)
        so_far = [m.payload for m in cluster.status.on(f"{base}/status")]
        assert b"offline" not in so_far, "offline while two instances live"
        took = next(n for n in survivors if 0 in cluster.shards_of(n))
        # The new keeper resumed the dead one's session: the broker drops its delayed will.
        cluster.procs[took].wait_log("status keeper connected (session resumed", 30)
        for n in survivors:
            cluster.procs[n].stop()
        cluster.status.wait_for(
            lambda r: [m.payload for m in r.on(f"{base}/status")][-1:] == [b"offline"],
            10,
            "offline once the last instance stopped",
        )
        shared = [m.payload for m in cluster.status.on(f"{base}/status")]
        assert shared[-1] == b"offline"
        assert b"offline" not in shared[:-1], shared
    finally:
        cluster.close()
