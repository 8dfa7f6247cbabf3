"""When the shard count changes: every job row moved to the job table of its user's shard.

Each shard has a job table of its own (`Shard.jobs_table`; unsharded, `apscheduler_jobs`),
so a user whose shard changes would leave their pending reminders where no scheduler reads
them. At start, before any shard runs, the job rows are moved in one transaction, and the
count is remembered in `rc_meta`. Only while no instance runs: instances with another count
would go on writing the old tables.
"""

from __future__ import annotations

import logging

from sqlalchemy import Connection, Engine, delete, insert, inspect, select, text

from recovery_coach.contract.shards import LOCK_SPACE, SCHEMA_LOCK, Shard, shard_of
from recovery_coach.jobs.rows import JOBS_TABLE, job_args
from recovery_coach.store.schema import jobs_table, meta
from recovery_coach.store.shard_leases import LIVE_INSTANCES

log = logging.getLogger(__name__)

SHARD_TABLES = "rc_jobs_shard_"


class ShardCountInUseError(RuntimeError):
    """Instances with another shard count are running: they must all stop first."""


def reshard(engine: Engine, count: int, me: str | None = None) -> int:
    """Move job rows for `count` shards if the store was last run with another count;
    returns how many moved. Raises ShardCountInUseError while other instances run."""
    with engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            # The same lock as the schema's: instances starting together move rows once.
            lock = {"a": LOCK_SPACE, "b": SCHEMA_LOCK}
            conn.execute(text("SELECT pg_advisory_xact_lock(:a, :b)"), lock)
        stored = conn.execute(select(meta.c.value).where(meta.c.key == "shards")).scalar()
        before = int(stored) if stored is not None else 1
        if before == count:
            return 0
        running = _live_instances(conn, me)
        if running:
            raise ShardCountInUseError(
                f"the store is served with shards: {before} by {', '.join(running)}; stop "
                f"every instance before starting with shards: {count}"
            )
        moved = _move_jobs(conn, count)
        conn.execute(delete(meta).where(meta.c.key == "shards"))
        conn.execute(insert(meta).values(key="shards", value=str(count)))
    log.warning("shards: %d -> %d: %d job(s) moved to their users' shards", before, count, moved)
    return moved


def _live_instances(conn: Connection, me: str | None) -> list[str]:
    if "rc_instances" not in inspect(conn).get_table_names():
        return []
    return [r[0] for r in conn.execute(text(LIVE_INSTANCES)) if r[0] != me]


def _move_jobs(conn: Connection, count: int) -> int:
    names = [
        t for t in inspect(conn).get_table_names() if t == JOBS_TABLE or t.startswith(SHARD_TABLES)
    ]
    moved = 0
    for name in sorted(names):
        source = jobs_table(name)
        for row in conn.execute(select(source)).all():
            user = str(job_args(row.job_state)[0])
            target = jobs_table(Shard(shard_of(user, count), count).jobs_table)
            if target.name == name:
                continue
            target.create(conn, checkfirst=True)
            conn.execute(delete(target).where(target.c.id == row.id))
            conn.execute(
                insert(target).values(
                    id=row.id, next_run_time=row.next_run_time, job_state=row.job_state
                )
            )
            conn.execute(delete(source).where(source.c.id == row.id))
            moved += 1
    return moved
