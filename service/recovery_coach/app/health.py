"""The service's own figures, as published on `<base>/diagnostics` and read by `status`."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any


@dataclass
class Health:
    started_at: float = field(default_factory=time.time)
    events_handled: int = 0
    events_refused: int = 0
    duplicates: int = 0
    nudges_published: int = 0
    nudges_expired: int = 0
    last_event_at: float | None = None
    last_error: str | None = None
    last_error_at: float | None = None
    store_error: str | None = None  # why a batch is held while the store refuses writes
    nudges_waiting: int = 0  # due nudges held while the store cannot be read (outbox.py)

    def error(self, reason: str) -> None:
        self.last_error = reason
        self.last_error_at = time.time()

    def figures(self) -> dict[str, Any]:
        return {
            "events_handled": self.events_handled,
            "events_refused": self.events_refused,
            "duplicates_dropped": self.duplicates,
            "nudges_published": self.nudges_published,
            "nudges_expired": self.nudges_expired,
            "last_event_at": _iso(self.last_event_at),
            "last_error": self.last_error,
            "store_error": self.store_error,
            "nudges_waiting_for_store": self.nudges_waiting,
            "last_error_at": _iso(self.last_error_at),
            "started_at": _iso(self.started_at),
        }


def _iso(t: float | None) -> str | None:
    return None if t is None else datetime.fromtimestamp(t, UTC).isoformat()
