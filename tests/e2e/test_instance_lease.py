"""One store, one live unsharded instance: the same config started twice does not lose or
double nudges. The second stands by, naming the holder, and takes over when it dies or
stalls; a stalled holder that wakes up stops serving."""

from __future__ import annotations

import signal
from collections import Counter
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from tests.support.mosquitto import BrokerFactory
from tests.support.postgres import new_database
from tests.support.service_process import Recorder, ServiceProcess, publish, user_config, workout

BASE = "rc_lease"


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'shared.db'}"
        return
    with new_database() as url:
        yield url


def _pair(tmp_path: Path, port: int, store: str, users: int) -> tuple[ServiceProcess, ...]:
    people = {f"p{i}": user_config() for i in range(users)}
    return tuple(
        ServiceProcess(tmp_path / name, port=port, base=BASE, users=people, extra={"store": store})
        for name in ("first", "second")
    )


def _counts(rec: Recorder, rule: str) -> Counter[str]:
    return Counter(n["source_event_id"] for n in rec.all_nudges(BASE) if n["rule"] == rule)


def test_a_second_instance_stands_by_and_nothing_is_lost_or_doubled(
    tmp_path: Path, mosquitto_factory: BrokerFactory, store: str
) -> None:
    """Both started on one store; a burst of workouts, each its own person, with a
    reminder due seconds later; then the holder is killed and the standby serves."""
    broker = mosquitto_factory()
    rec = Recorder(broker.host, broker.port, [f"{BASE}/+/nudge", f"{BASE}/status"]).start()
    first, second = _pair(tmp_path, broker.port, store, 120)
    try:
        first.start().wait_connected()
        second.start()
        second.wait_log("another instance serves this store", 30)
        assert "connected to" not in second.log()
        # R8's reminder falls due 60 min after the workout: these in 5 to 15 s.
        burst = [
            workout(f"b-{i}", ago=timedelta(minutes=60) - timedelta(seconds=5 + i / 10))
            for i in range(100)
        ]
        for i, e in enumerate(burst):
            publish(broker.port, f"{BASE}/p{i}/workout/completed", e)
        ids = {e["event_id"] for e in burst}
        rec.wait_for(lambda r: set(_counts(r, "R8")) >= ids, 60, "every reminder")
        first.kill()
        second.wait_log("the other instance is gone: this one serves the store now", 30)
        second.wait_connected(30)
        late = workout("after-takeover")
        publish(broker.port, f"{BASE}/p0/workout/completed", late)
        rec.wait_for(lambda r: "after-takeover" in _counts(r, "R1"), 30, "the standby serving")
        # The standby's start sent what was overdue (nothing) and nothing again.
        assert {k: v for k, v in _counts(rec, "R8").items() if v != 1} == {}
        assert set(_counts(rec, "R8")) == ids
        assert {k: v for k, v in _counts(rec, "R1").items() if v > 2} == {}  # start + done
    finally:
        first.close()
        second.close()
        rec.stop()


def test_a_stalled_holder_is_taken_over_and_stops_serving_when_it_wakes(
    tmp_path: Path, mosquitto_factory: BrokerFactory
) -> None:
    broker = mosquitto_factory()
    store = f"sqlite:///{tmp_path / 'shared.db'}"
    rec = Recorder(broker.host, broker.port, [f"{BASE}/+/nudge"]).start()
    first, second = _pair(tmp_path, broker.port, store, 4)
    try:
        first.start().wait_connected()
        second.start()
        second.wait_log("another instance serves this store", 30)
        assert first.proc is not None
        first.proc.send_signal(signal.SIGSTOP)
        second.wait_log("the other instance is gone", 40)
        second.wait_connected(30)
        first.proc.send_signal(signal.SIGCONT)
        first.wait_log("another instance took this store over", 30)
        publish(broker.port, f"{BASE}/p1/workout/completed", workout("after-stall"))
        rec.wait_for(lambda r: "after-stall" in _counts(r, "R1"), 30, "the new holder serving")
        # The woken one does not take the broker session back: the new holder stays on.
        publish(broker.port, f"{BASE}/p2/workout/completed", workout("later"))
        rec.wait_for(lambda r: "later" in _counts(r, "R1"), 30, "the new holder still serving")
        assert second.log().count("connected to") == 1, second.log()[-3000:]
        assert _counts(rec, "R1")["after-stall"] == 1
    finally:
        if first.proc is not None and first.proc.poll() is None:
            first.proc.send_signal(signal.SIGCONT)
        first.close()
        second.close()
        rec.stop()
