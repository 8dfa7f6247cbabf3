"""Store faults under the live service on SQLite: a full disk (a small tmpfs) and a lock
held by another process. Events are held, not dropped, and go through by themselves once
the store takes writes again, with no reconnect and nothing sent twice."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.faults import HOLD_SQLITE as LOCK_FOR
from tests.support.mosquitto import BrokerFactory
from tests.support.service_process import Recorder, ServiceProcess, publish, user_config, workout

BASE = "rc_full"


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 16 MB tmpfs (the tests run as root on this project's machines; see README)."""
    where = tmp_path / "disk"
    where.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(where)], check=True)
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


def _fill(disk: Path) -> Path:
    """Fill the disk to the last byte; returns the filler to delete."""
    filler = disk / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT)
    try:
        for size in (1 << 20, 4096, 1):
            try:
                while True:
                    os.write(fd, b"\0" * size)
            except OSError:
                pass
    finally:
        os.close(fd)
    return filler


def test_a_full_disk_holds_the_events_and_they_go_through_when_there_is_room(
    tmp_path: Path, mosquitto_factory: BrokerFactory, small_disk: Path
) -> None:
    broker = mosquitto_factory()
    rec = Recorder(broker.host, broker.port, [f"{BASE}/+/nudge", f"{BASE}/diagnostics"]).start()
    users = {f"u{i}": user_config() for i in range(40)}
    svc = ServiceProcess(
        tmp_path / "svc",
        port=broker.port,
        base=BASE,
        users=users,
        extra={"store": f"sqlite:///{small_disk / 'coach.db'}"},
    )
    try:
        svc.start().wait_connected()
        publish(broker.port, f"{BASE}/u0/workout/completed", workout("before"))
        rec.wait_for(lambda r: len(r.on(f"{BASE}/+/nudge")) >= 1, 10, "a first nudge")
        filler = _fill(small_disk)
        events = [(f"u{i}", workout(f"held-{i}")) for i in range(1, 40)]
        for u, e in events:
            publish(broker.port, f"{BASE}/{u}/workout/completed", e)
        svc.wait_log("the store cannot take a batch", 20)
        assert "disk is full" in svc.log()

        def store_error(r: Recorder) -> object:
            diags = r.on(f"{BASE}/diagnostics")
            return diags[-1].json().get("store_error") if diags else None

        rec.wait_for(lambda r: "disk is full" in str(store_error(r)), 10, "store_error")
        filler.unlink()

        def cooldowns(r: Recorder) -> list[str]:
            return [n["source_event_id"] for n in r.all_nudges(BASE, "cooldown_start")]

        expected = {e["event_id"] for _, e in events}
        rec.wait_for(lambda r: expected <= set(cooldowns(r)), 45, "the held events' nudges")
        svc.wait_log("the store works again", 5)
        rec.wait_for(lambda r: store_error(r) is None, 10, "store_error cleared")
        assert sorted(cooldowns(rec)) == sorted([*expected, "before"])
        assert "disconnected from the broker" not in svc.log()
    finally:
        svc.close()
        rec.stop()


def test_a_lock_held_past_the_busy_timeout_delays_the_batch_and_loses_nothing(
    tmp_path: Path, mosquitto_factory: BrokerFactory
) -> None:
    """Another process holds the SQLite file for 12 s, past the 10 s busy timeout: the batch
    that waited fails, is tried again by itself, and every event gets its nudges once (before,
    it waited unacknowledged for the next reconnect)."""
    broker = mosquitto_factory()
    rec = Recorder(broker.host, broker.port, [f"{BASE}/+/nudge"]).start()
    users = {f"u{i}": user_config() for i in range(20)}
    svc = ServiceProcess(tmp_path, port=broker.port, base=BASE, users=users)
    locker: subprocess.Popen[str] | None = None
    try:
        svc.start().wait_connected()
        publish(broker.port, f"{BASE}/u0/workout/completed", workout("before"))
        rec.wait_for(lambda r: len(r.on(f"{BASE}/+/nudge")) >= 1, 10, "a first nudge")
        locker = subprocess.Popen(
            [sys.executable, "-c", LOCK_FOR, str(svc.db), "12"], stdout=subprocess.PIPE, text=True
        )
        assert locker.stdout is not None
        assert locker.stdout.readline().strip() == "locked"
        events = [(f"u{i}", workout(f"locked-{i}")) for i in range(1, 20)]
        for u, e in events:
            publish(broker.port, f"{BASE}/{u}/workout/completed", e)

        def cooldowns(r: Recorder) -> list[str]:
            return [n["source_event_id"] for n in r.all_nudges(BASE, "cooldown_start")]

        expected = {e["event_id"] for _, e in events}
        rec.wait_for(lambda r: expected <= set(cooldowns(r)), 40, "the held events' nudges")
        assert locker.wait(5) == 0  # the lock was held to the end
        assert sorted(cooldowns(rec)) == sorted([*expected, "before"])
        assert "database is locked" in svc.log()
        assert "disconnected from the broker" not in svc.log()
    finally:
        if locker is not None:
            locker.kill()
            locker.wait()
        svc.close()
        rec.stop()
