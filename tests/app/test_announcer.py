"""What goes out on connect: the announcement is recorded as done only once the broker has
it, so a service stopped with part of it still in paho's queue (a shard handed to another
instance) leaves the next one to announce in full."""

from __future__ import annotations

from datetime import UTC, datetime

from recovery_coach.app.work import Connected, PubAck
from recovery_coach.contract.config import parse_config
from recovery_coach.runtime.simulate import Simulation

from tests.support.service_process import user_config

NOW = datetime(2026, 3, 4, 12, 0, tzinfo=UTC)


def test_a_full_announcement_counts_as_done_only_once_the_broker_has_its_last_message() -> None:
    s = Simulation(parse_config({"users": {u: user_config() for u in ("alex", "sam", "kim")}}))
    s.now = NOW
    s.worker.safely([Connected(session_present=False)])
    states = [m.topic for m in s.transport.sent if m.topic.endswith("/state")]
    assert len(states) == 3
    # The broker has not acknowledged them: other batches commit meanwhile.
    s.worker.safely([Connected(session_present=True)])
    assert not s.worker.announcer.announced_as_now()
    # Its acknowledgements arrive: now a resumed session needs no full announcement.
    mids = list(s.transport._pubacks)  # as the broker answers them
    s.transport._pubacks.clear()
    s.worker.safely([PubAck(mid) for mid in mids])
    assert s.worker.announcer.announced_as_now()
