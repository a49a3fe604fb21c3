"""The clock leases are taken and judged by: on PostgreSQL the database server's, one clock
for every process whatever their hosts' clocks say; on SQLite (one process) the process's."""

from datetime import datetime, timedelta

from sqlalchemy import ColumnElement, DateTime, func
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from chainflow.core.clock import utcnow

LeaseTime = datetime | ColumnElement[datetime]


def lease_times(db: AsyncSession | AsyncConnection, ttl_s: float) -> tuple[LeaseTime, LeaseTime]:
    """(now, now + ttl_s) for a statement that takes a lease, as SQL on PostgreSQL.

    A worker whose host clock ran 30 s ahead wrote leases that ran 35 s (for other hosts), so
    once it died its lanes and its chain's tracking waited 35 s instead of the lease's 5 s
    (10 s); one behind took leases that were still running. The server's
    `statement_timestamp()` is the time of the statement itself, not of its transaction."""
    now = lease_now(db)
    return now, now + timedelta(seconds=ttl_s)


def lease_now(db: AsyncSession | AsyncConnection) -> LeaseTime:
    """Now on the lease clock, to judge whether a lease still runs: SQL on PostgreSQL (a
    lease written on the server's clock and judged on a host's 60 s behind looked live for a
    minute after it ran out), the process's clock on SQLite."""
    dialect = db.dialect if isinstance(db, AsyncConnection) else db.get_bind().dialect
    if dialect.name == "postgresql":
        return func.statement_timestamp(type_=DateTime(timezone=True))
    return utcnow()
