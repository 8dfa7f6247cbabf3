"""The worker's own DBAPI connection, for the hot path: plain SQL, no SQL compilation and no
pool checkout per statement (that overhead was most of an event's cost). `?` marks are
rewritten for drivers that use `%s`; an IN list of any length is chunked here only."""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from typing import Any

from sqlalchemy import Engine

from recovery_coach.store.checkpoint import Checkpointer

CHUNK = 400  # ids per IN (...) list: well under SQLite's 999 bound parameters


def marks(n: int) -> str:
    return ", ".join("?" * n)


class RawSql:
    def __init__(self, engine: Engine, checkpointer: Checkpointer | None = None) -> None:
        self.engine = engine
        self.checkpointer = checkpointer  # SQLite: copies the log back off the commit path
        self._raw: Any = None
        self._qmark = engine.dialect.paramstyle == "qmark"

    def _sql(self, text: str) -> str:
        return text if self._qmark else text.replace("?", "%s")

    def cursor(self) -> Any:
        if self._raw is None:
            self._raw = self.engine.raw_connection()
            if self.checkpointer is not None:
                self.checkpointer.adopt(self._raw)
        return self._raw.cursor()

    def query(self, text: str, params: Sequence[Any] = ()) -> list[Any]:
        cur = self.cursor()
        try:
            cur.execute(self._sql(text), params)
            return list(cur.fetchall())
        finally:
            cur.close()

    def select_in(
        self,
        template: str,
        ids: Sequence[str],
        before: tuple[Any, ...] = (),
        after: tuple[Any, ...] = (),
    ) -> list[Any]:
        """The rows of `template` (one `{}` for the IN list) over ids, CHUNK at a time."""
        rows: list[Any] = []
        for i in range(0, len(ids), CHUNK):
            chunk = list(ids[i : i + CHUNK])
            rows += self.query(template.format(marks(len(chunk))), [*before, *chunk, *after])
        return rows

    def execute(self, cur: Any, text: str, params: Sequence[Any]) -> None:
        cur.execute(self._sql(text), params)

    def many(self, cur: Any, text: str, rows: Sequence[Sequence[Any]]) -> None:
        if rows:
            cur.executemany(self._sql(text), rows)

    def execute_in(
        self,
        cur: Any,
        template: str,
        ids: Sequence[str],
        before: tuple[Any, ...] = (),
        after: tuple[Any, ...] = (),
    ) -> None:
        """Run `template` (one `{}` for the IN list) over ids, CHUNK at a time."""
        for i in range(0, len(ids), CHUNK):
            chunk = list(ids[i : i + CHUNK])
            self.execute(cur, template.format(marks(len(chunk))), [*before, *chunk, *after])

    def pipelined(self) -> contextlib.AbstractContextManager[Any]:
        """Statements sent without waiting for each answer, where the driver can (psycopg's
        pipeline mode: one round trip instead of one per statement); an error surfaces at
        the end of the block at the latest."""
        if self._qmark or self._raw is None:
            return contextlib.nullcontext()
        return self._raw.driver_connection.pipeline()  # type: ignore[no-any-return]

    def commit(self) -> None:
        self._raw.commit()
        if self.checkpointer is not None:
            self.checkpointer.committed()

    def end_reads(self) -> None:
        """End the read transaction a driver may have opened (PostgreSQL), between batches."""
        if self._raw is not None:
            try:
                self._raw.rollback()
            except Exception:
                self.drop()
                raise

    def abort(self) -> None:
        """Roll back; a connection that cannot even do that is dropped."""
        try:
            if self._raw is not None:
                self._raw.rollback()
        except Exception:
            self.drop()

    def drop(self) -> None:
        raw, self._raw = self._raw, None
        if raw is not None:
            with contextlib.suppress(Exception):  # already gone
                raw.invalidate()  # a broken connection is not returned to the pool
