"""When the worker wakes APScheduler: only for jobs due before it wakes by itself, and always
after a batch that cancelled jobs (the cancelled one may have been what it would wake for)."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from pytest_mock import MockerFixture
from recovery_coach.contract.config import BrokerConfig, parse_config
from recovery_coach.contract.transport import Inbound
from recovery_coach.runtime.service import Service

from tests.support.service_process import user_config


def _service(tmp_path: Path) -> Service:
    cfg = parse_config(
        {
            "store": f"sqlite:///{tmp_path / 'coach.db'}",
            "users": {"alex": user_config(), "sam": user_config()},
        }
    )
    return Service(cfg, BrokerConfig(host="127.0.0.1", port=1))  # never connected


def _msg(topic: str, payload: dict[str, Any], user: str = "alex") -> Inbound:
    return Inbound(0, 0, f"recovery_coach/{user}/{topic}", json.dumps(payload).encode(), False)


def test_wakes_only_for_earlier_jobs_and_always_after_a_cancel(
    tmp_path: Path, mocker: MockerFixture
) -> None:
    svc = _service(tmp_path)
    wakeup = mocker.spy(svc.scheduler, "wakeup")
    now = datetime.now(UTC)

    def iso(t: datetime) -> str:
        return t.isoformat()

    checkin = {"at": iso(now - timedelta(minutes=60)), "event_id": "in"}
    svc.worker.safely([_msg("gym/checkin", checkin)])
    assert wakeup.call_count == 1  # tonight's wind-down and bedtime: the first jobs
    svc.worker.safely(
        [_msg("gym/checkout", {"at": iso(now - timedelta(minutes=9)), "event_id": "out"})]
    )
    assert wakeup.call_count == 2  # the visit's nudges, due in a minute: earlier than bedtime

    # sam's cooldown-done is due in 5 minutes: after the job APScheduler already wakes for
    upper = {"ended_at": iso(now), "kind": "strength", "focus": "upper"}
    svc.worker.safely([_msg("workout/completed", {**upper, "event_id": "w-sam"}, user="sam")])
    assert svc.repo.queries.counts()["jobs"] > 4  # sam's jobs were written
    assert wakeup.call_count == 2  # later jobs only: APScheduler wakes for the earlier ones

    # The watch syncs the visit's real workout, upper body: the leg-day advice is cancelled.
    real = {"event_id": "w-real", "ended_at": iso(now - timedelta(minutes=12)), "kind": "strength"}
    svc.worker.safely([_msg("workout/completed", {**real, "focus": "upper"})])  # R2 cancelled
    assert wakeup.call_count == 3
    svc.engine.dispose()


def test_a_retained_event_is_ignored_not_applied_at_every_reconnect(
    tmp_path: Path, mocker: MockerFixture
) -> None:
    """A misconfigured automation retains {"grams": 25}: the broker hands it over again on
    every connect, so it is acknowledged and ignored (with a warning), never counted."""
    svc = _service(tmp_path)
    now = datetime.now(UTC)
    body = json.dumps({"grams": 25, "at": now.isoformat(), "event_id": "p1"}).encode()
    retained = Inbound(0, 0, "recovery_coach/alex/protein/logged", body, True)
    warn = mocker.spy(logging.getLogger("recovery_coach.app.worker"), "warning")
    svc.worker.safely([retained])
    assert svc.repo.load("alex").protein == ()
    assert "retained" in warn.call_args.args[0]
    fresh = Inbound(0, 0, "recovery_coach/alex/protein/logged", body, False)
    svc.worker.safely([fresh])
    assert [p.grams for p in svc.repo.load("alex").protein] == [25]  # the same message, live
    svc.engine.dispose()
