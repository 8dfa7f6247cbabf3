"""One back-off policy for everything that retries while something keeps failing: the
broker reconnect, a held batch, the job store, and waiting for the database at start."""

from __future__ import annotations

FIRST_S, MOST_S = 1.0, 30.0


class Backoff:
    """Waits of 1 s, doubling up to 30 s, until `reset` (the thing works again)."""

    def __init__(self, first: float = FIRST_S, most: float = MOST_S) -> None:
        self.first = first
        self.most = most
        self._next = first

    def next(self) -> float:
        """The wait before the next attempt, and the one after grows."""
        wait = self._next
        self._next = min(wait * 2, self.most)
        return wait

    def reset(self) -> None:
        self._next = self.first
