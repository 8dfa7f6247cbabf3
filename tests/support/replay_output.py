"""What `simulate` printed: the nudges (stdout) and the refusals (stderr), one JSON a line."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any


@dataclass
class Output:
    out: str
    err: str

    @property
    def nudges(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.out.splitlines()]

    @property
    def errors(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.err.splitlines()]

    def of(
        self, user: str, rule: str | None = None, kind: str | None = None
    ) -> list[dict[str, Any]]:
        return [
            n
            for n in self.nudges
            if n["user"] == user and rule in (None, n["rule"]) and kind in (None, n["kind"])
        ]

    def one(self, user: str, rule: str, kind: str | None = None) -> dict[str, Any]:
        found = self.of(user, rule, kind)
        assert len(found) == 1, found
        return found[0]

    def rules(self, user: str, source: str) -> list[str]:
        return sorted(
            {n["rule"] for n in self.of(user) if n["source_event_id"].startswith(source)},
            key=lambda r: int(r[1:]),
        )
