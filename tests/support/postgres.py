"""PostgreSQL for the tests: checked, started when installed but stopped (as on this
project's machines), and a database of each test's own; where PostgreSQL is not installed
at all, the tests that need it say so and skip."""

from __future__ import annotations

import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import Engine

ADMIN_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"


def reachable() -> Engine | None:
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


def admin_engine() -> Engine:
    """An AUTOCOMMIT engine on the server, which is started first if it is stopped."""
    admin = reachable()
    if admin is None and shutil.which("pg_ctlcluster") and Path("/etc/postgresql").exists():
        version = sorted(p.name for p in Path("/etc/postgresql").iterdir())[-1]
        subprocess.run(
            ["pg_ctlcluster", "--skip-systemctl-redirect", version, "main", "start"],
            check=False,
            capture_output=True,
        )
        for _ in range(50):
            admin = reachable()
            if admin is not None:
                break
            time.sleep(0.2)
    if admin is None:
        pytest.skip("PostgreSQL is not installed on this machine (the SQLite store is tested)")
    return admin


@contextmanager
def new_database() -> Iterator[str]:
    """The URL of a fresh database, dropped afterwards."""
    admin = admin_engine()
    name = f"rc_test_{uuid.uuid4().hex[:8]}"
    with admin.connect() as conn:
        conn.execute(text(f'create database "{name}"'))
    try:
        yield str(admin.url.set(database=name).render_as_string(hide_password=False))
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'drop database if exists "{name}" with (force)'))
        admin.dispose()
