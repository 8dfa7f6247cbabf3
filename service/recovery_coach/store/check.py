"""Can the configured store be used? One sentence naming the store and the fix, or None.

`check-config` asks read-only (it creates nothing); `run` asks before it starts, exits 2 on
a store that cannot work (a corrupt file, a bad URL) and retries one that is unreachable.
"""

from __future__ import annotations

import os
import sqlite3
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError, SQLAlchemyError


@dataclass(frozen=True)
class StoreProblem:
    reason: str
    retry: bool  # unreachable for now (a server down): worth trying again


def shown(url: str) -> str:
    """The URL with any password hidden, for log lines."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return url.split("@")[-1]


def _sqlite(path: str) -> StoreProblem | None:
    if path in ("", ":memory:"):
        return None
    file = Path(path)
    if not file.exists():
        folder = file.parent if str(file.parent) else Path(".")
        if not folder.is_dir():
            return StoreProblem(f"the folder {folder} does not exist: create it first", False)
        if not os.access(folder, os.W_OK):
            return StoreProblem(f"cannot create {file}: the folder is not writable", False)
        return None  # created at the first start
    try:
        with sqlite3.connect(f"file:{file}?mode=ro", uri=True) as db:
            db.execute("PRAGMA schema_version").fetchone()
    except sqlite3.DatabaseError as exc:
        why = str(exc)
        if "not a database" in why or "malformed" in why:
            return StoreProblem(
                f"{file} is not a usable SQLite database ({why}): move it aside to start "
                "with an empty store, or restore it from a backup",
                False,
            )
        if "locked" in why:
            return StoreProblem(f"{file} is locked by another process ({why})", True)
        return StoreProblem(f"cannot read {file} ({why})", False)
    if not os.access(file, os.W_OK):
        return StoreProblem(f"{file} is not writable by this user", False)
    return None


def store_problem(url: str, timeout_s: float = 3.0) -> StoreProblem | None:
    """Why the store at `url` cannot be used now, or None; opens it read-only."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        return StoreProblem(
            "is not a database URL (for example sqlite:///recovery_coach.db or "
            "postgresql+psycopg://user@host/db)",
            False,
        )
    if parsed.get_backend_name() == "sqlite":
        return _sqlite(parsed.database or "")
    try:
        engine = create_engine(url, connect_args={"connect_timeout": int(timeout_s)})
    except (NoSuchModuleError, ArgumentError, ImportError) as exc:
        return StoreProblem(f"cannot use this database driver ({exc})", False)
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    except SQLAlchemyError as exc:
        first = str(getattr(exc, "orig", exc)).strip().splitlines()[0]
        return StoreProblem(f"cannot connect ({first})", True)
    finally:
        engine.dispose()
    return None
