"""The store on PostgreSQL: the live service with a PostgreSQL URL survives kill -9 too.

PostgreSQL is checked and started when it is installed but stopped (as on this project's
machines); where it is not installed at all the tests say so and skip.
"""

from __future__ import annotations

import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from mosquitto import BrokerFactory
from service_process import Recorder, ServiceProcess, publish, user_config, workout
from sqlalchemy import create_engine, text
from sqlalchemy.engine import Engine

ADMIN_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"


def _reachable() -> Engine | None:
    for user in ("postgres", "root"):
        engine = create_engine(
            ADMIN_URL.replace("postgres@", f"{user}@"), isolation_level="AUTOCOMMIT"
        )
        try:
            with engine.connect() as conn:
                conn.execute(text("select 1"))
            return engine
        except Exception:
            engine.dispose()
    return None


@pytest.fixture(scope="module")
def pg_url() -> Iterator[str]:
    admin = _reachable()
    if admin is None and shutil.which("pg_ctlcluster") and Path("/etc/postgresql").exists():
        version = sorted(p.name for p in Path("/etc/postgresql").iterdir())[-1]
        subprocess.run(
            ["pg_ctlcluster", "--skip-systemctl-redirect", version, "main", "start"],
            check=False,
            capture_output=True,
        )
        for _ in range(50):
            admin = _reachable()
            if admin is not None:
                break
            time.sleep(0.2)
    if admin is None:
        pytest.skip("PostgreSQL is not installed on this machine (the SQLite store is tested)")
    name = f"rc_test_{uuid.uuid4().hex[:8]}"
    with admin.connect() as conn:
        conn.execute(text(f'create database "{name}"'))
    url = str(admin.url.set(database=name).render_as_string(hide_password=False))
    yield url
    with admin.connect() as conn:
        conn.execute(text(f'drop database if exists "{name}" with (force)'))
    admin.dispose()


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
