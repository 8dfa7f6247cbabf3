"""Nudges handed to paho and not yet acknowledged by the broker (PUBACK).

paho resends what it holds after a reconnect, so a nudge in here must not be published
again by us; once its PUBACK's mark is committed it leaves, and the outbox row's status
(published) is what keeps it from going out twice. Bounded by what is on the wire.
"""

from __future__ import annotations

from .models import Nudge


class InFlight:
    def __init__(self) -> None:
        self._by_mid: dict[int, Nudge] = {}
        self._ids: set[str] = set()
        self._per_user: dict[str, int] = {}

    def add(self, mid: int, nudge: Nudge) -> None:
        self._by_mid[mid] = nudge
        self._ids.add(nudge.nudge_id)
        self._per_user[nudge.user] = self._per_user.get(nudge.user, 0) + 1

    def get(self, mid: int) -> Nudge | None:
        return self._by_mid.get(mid)

    def done(self, mid: int) -> None:
        """The PUBACK for `mid` is stored: forget it."""
        nudge = self._by_mid.pop(mid, None)
        if nudge is None:
            return
        self._ids.discard(nudge.nudge_id)
        left = self._per_user.pop(nudge.user, 1) - 1
        if left > 0:
            self._per_user[nudge.user] = left

    def holds(self, nudge_id: str) -> bool:
        return nudge_id in self._ids

    def waiting(self, user: str) -> bool:
        """Whether a nudge of `user` still awaits its PUBACK."""
        return user in self._per_user

    def __len__(self) -> int:
        return len(self._by_mid)
