"""Session-wide fixtures. Others may add fixtures here; keep each one documented."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import settings

from tests.support.mosquitto import BrokerFactory, MosquittoBroker, close_all

# Speed is bench/'s business: hypothesis's per-example deadline is a timed assertion, and a
# busy CI machine (or a first call that imports and caches) trips it without any bug.
settings.register_profile("recovery_coach", deadline=None)
settings.load_profile("recovery_coach")


@pytest.fixture(scope="session")
def mosquitto() -> Iterator[MosquittoBroker]:
    """A plain Mosquitto broker (anonymous access, no TLS) shared by the whole session.

    Do not stop or restart it: use ``mosquitto_factory`` for outages, auth, ACL or TLS.
    Tests sharing it should use unique client ids and topics (e.g. from
    ``request.node.name``) so they don't see each other's messages.
    """
    with MosquittoBroker() as broker:
        yield broker


@pytest.fixture
def mosquitto_factory(tmp_path: Path) -> Iterator[BrokerFactory]:
    """Start brokers of one's own: ``mosquitto_factory(users=..., acl=..., tls=True)``.

    Takes the keyword arguments of ``MosquittoBroker`` and returns it started
    (pass ``start=False`` to get it unstarted). Each broker gets its own directory
    under ``tmp_path`` and is closed when the test ends, whatever it did to it.
    """
    brokers: list[MosquittoBroker] = []

    def factory(*, start: bool = True, **kwargs: Any) -> MosquittoBroker:
        directory = tmp_path / f"mosquitto-{len(brokers)}"
        broker = MosquittoBroker(directory, **kwargs)
        brokers.append(broker)
        if start:
            broker.start()
        return broker

    yield factory
    close_all(brokers)
