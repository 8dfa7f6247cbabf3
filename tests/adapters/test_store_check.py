"""A bad store is named in one line with the fix (exit 2), never a traceback; check-config
looks at the store read-only; an unreachable PostgreSQL is retried at start."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from recovery_coach.cli import main

SERVICE = Path(__file__).parents[2] / "service"


def config(tmp_path: Path, store: str) -> Path:
    path = tmp_path / "coach.yaml"
    # A broker nobody listens on: `run` must stop at the store, before any connection.
    path.write_text(
        f"store: '{store}'\nbroker: {{host: 127.0.0.1, port: 1}}\n"
        "users: {alex: {timezone: Europe/Berlin}}\n"
    )
    return path


def check(capsys: pytest.CaptureFixture[str], path: Path) -> tuple[int, str]:
    code = main(["check-config", "--config", str(path)])
    return code, capsys.readouterr().err


def run_service(path: Path) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(SERVICE)}
    return subprocess.Popen(
        [sys.executable, "-m", "recovery_coach.cli", "run", "--config", str(path)],
        env=env,
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
    )


def test_a_corrupt_sqlite_file_is_one_line_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = tmp_path / "coach.db"
    db.write_bytes(b"this is no database, just some bytes " * 200)
    path = config(tmp_path, f"sqlite:///{db}")
    code, err = check(capsys, path)
    assert code == 2
    assert "store: sqlite:///" in err
    assert "not a usable SQLite database" in err
    assert "move it aside" in err
    proc = run_service(path)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 2
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) <= 3, err
    assert "not a usable SQLite database" in lines[-1]


@pytest.mark.parametrize(
    ("store", "words"),
    [
        ("sqlite:////no/such/folder/coach.db", "does not exist: create it first"),
        ("nonsense", "is not a database URL"),
        ("postgresql+nosuchdriver://h/db", "cannot use this database driver"),
    ],
)
def test_check_config_names_the_store_and_the_fix(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], store: str, words: str
) -> None:
    code, err = check(capsys, config(tmp_path, store))
    assert code == 2
    assert words in err


def test_check_config_opens_the_store_read_only(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = tmp_path / "new.db"
    code, _ = check(capsys, config(tmp_path, f"sqlite:///{db}"))
    assert code == 0
    assert not db.exists()  # nothing created by a check


def test_an_unreachable_postgresql_is_retried_and_a_stop_still_stops(tmp_path: Path) -> None:
    path = config(tmp_path, "postgresql+psycopg://coach@127.0.0.1:1/coach")
    proc = run_service(path)
    assert proc.stderr is not None
    seen: list[str] = []
    deadline = time.time() + 20
    while time.time() < deadline and sum("retrying" in line for line in seen) < 2:
        line = proc.stderr.readline()
        if not line:
            break
        seen.append(line)
    assert sum("retrying in" in line for line in seen) >= 2, seen  # logged at each attempt
    assert "cannot connect" in seen[-1]
    proc.send_signal(signal.SIGTERM)
    _, rest = proc.communicate(timeout=10)
    assert proc.returncode == 0
    assert "Traceback" not in "".join(seen) + rest
