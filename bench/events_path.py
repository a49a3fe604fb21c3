"""The events table's write path alone, per variant of its storage and indexes: rounds of one
INSERT of 100 events (real snapshots) then one sequencer pass, as the workers and the outbox
run them; the PostgreSQL backend's CPU per event (from /proc, so the server must run on this
machine), WAL bytes per event, and a cursor-paging read of every event (docs/performance.md
item 32). Each variant rebuilds the table; variants alternate within each repetition.

Needs a PostgreSQL of its own (CHAINFLOW_BENCH_POSTGRES_URL, as bench.profile) and a source
of snapshots: a database from `bench.profile --dump` restored into it (`--snapshots`).

Run: .venv/bin/python -m bench.events_path --snapshots ev0 --variants base,lean --rounds 500
"""

import argparse
import asyncio
import datetime
import os
import uuid
from pathlib import Path
from typing import Any, cast

import asyncpg

from bench.cluster import POSTGRES

_DDL = """
DROP TABLE IF EXISTS events;
CREATE TABLE events (
    id bigserial NOT NULL, event_id uuid NOT NULL, type varchar(64) NOT NULL, cursor bigint,
    tx_id uuid, tx_seq integer, wallet_id uuid, chain_id bigint, data json NOT NULL,
    created_at timestamptz NOT NULL, CONSTRAINT pk_events PRIMARY KEY (id));
CREATE INDEX ix_events_created_at ON events (created_at);
CREATE INDEX ix_events_tx_seq ON events (tx_id, tx_seq);
CREATE INDEX ix_events_unsequenced ON events (id) WHERE cursor IS NULL;
CREATE UNIQUE INDEX uq_events_cursor ON events (cursor) WHERE cursor IS NOT NULL;
"""
_LEAN = (
    "DROP INDEX ix_events_created_at;"
    " CREATE INDEX ix_events_created_at ON events (created_at) WHERE cursor IS NOT NULL;"
    " DROP INDEX ix_events_tx_seq;"
    " CREATE INDEX ix_events_tx_seq ON events (tx_id, tx_seq) WHERE tx_seq IS NOT NULL;"
)
_TOAST = "ALTER TABLE events SET (toast_tuple_target = 128);"
VARIANTS = {
    "base": "",  # the schema before migration 0013_events_lean
    "lean": _LEAN,  # after it
    "toast_external": _TOAST + " ALTER TABLE events ALTER COLUMN data SET STORAGE EXTERNAL;",
    "toast_pglz": _TOAST + " ALTER TABLE events ALTER COLUMN data SET COMPRESSION pglz;",
    "toast_lz4": _TOAST + " ALTER TABLE events ALTER COLUMN data SET COMPRESSION lz4;",
    "lean_ff80": _LEAN + " ALTER TABLE events SET (fillfactor = 80);",
    "lean_ff50": _LEAN + " ALTER TABLE events SET (fillfactor = 50);",
    # the sequencer's scan of the unsequenced rows as an index scan, not a bitmap scan
    "lean_index_scan": _LEAN + " SET enable_bitmapscan = off;",
    "lean_ff50_index_scan": _LEAN
    + " ALTER TABLE events SET (fillfactor = 50); SET enable_bitmapscan = off;",
}
_INSERT = (
    "INSERT INTO events (event_id, type, tx_id, wallet_id, chain_id, data, created_at)"
    " SELECT * FROM unnest($1::uuid[], $2::text[], $3::uuid[], $4::uuid[], $5::bigint[],"
    " $6::json[], $7::timestamptz[])"
)
_READ = (
    "SELECT event_id, type, created_at, cursor, data, wallet_id, chain_id FROM events"
    " WHERE cursor > $1 ORDER BY cursor LIMIT 200"
)


def _sequencer_sql() -> str:
    """The sequencer's pass of the code on the path, as PostgreSQL receives it."""
    from sqlalchemy import BindParameter, ClauseElement, func
    from sqlalchemy.ext.asyncio import create_async_engine
    from sqlalchemy.sql.visitors import replacement_traverse

    from chainflow.domain.events.sequencer import numbering

    def server_now(element: Any, **_kw: Any) -> ClauseElement | None:
        """The lag's `:now` (the worker's clock) as now(): a statement without parameters."""
        return func.now() if isinstance(element, BindParameter) and element.key == "now" else None

    dialect = create_async_engine("postgresql+asyncpg://unused/unused").dialect  # no connection
    statement = replacement_traverse(numbering(1000, "postgresql"), {}, server_now)
    compiled = cast(ClauseElement, statement).compile(
        dialect=dialect, compile_kwargs={"literal_binds": True}
    )
    return str(compiled)


def _cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def run(
    url: str, variant: str, samples: list[tuple[str, str]], rounds: int, per_round: int = 100
) -> dict[str, Any]:
    connection = await asyncpg.connect(url)
    try:
        await connection.execute(_DDL + VARIANTS[variant])
        pid = await connection.fetchval("SELECT pg_backend_pid()")
        start = await connection.fetchval("SELECT pg_current_wal_lsn()::text")
        insert = await connection.prepare(_INSERT)
        sequence = await connection.prepare(_sequencer_sql())
        inserting = sequencing = 0.0
        wallet = uuid.uuid4()
        for r in range(rounds):
            txs = [uuid.uuid4() for _ in range(per_round // 5)]
            now = datetime.datetime.now(datetime.UTC)
            picked = [samples[(r * per_round + i) % len(samples)] for i in range(per_round)]
            columns: list[list[Any]] = [
                [uuid.uuid4() for _ in picked],
                [kind for kind, _ in picked],
                [txs[i // 5] for i in range(per_round)],
                [wallet] * per_round,
                [31337] * per_round,
                [data for _, data in picked],
                [now] * per_round,
            ]
            before = _cpu_s(pid)
            async with connection.transaction():
                await insert.fetch(*columns)
            between = _cpu_s(pid)
            async with connection.transaction():
                await connection.execute("SELECT pg_advisory_xact_lock(1)")
                await sequence.fetch()
            inserting += between - before
            sequencing += _cpu_s(pid) - between
        wal = float(
            await connection.fetchval("SELECT pg_current_wal_lsn() - $1::text::pg_lsn", start)
        )
        n = rounds * per_round
        before = _cpu_s(pid)
        read = await connection.prepare(_READ)
        after_cursor = 0
        while page := await read.fetch(after_cursor):
            after_cursor = page[-1]["cursor"]
        reading = _cpu_s(pid) - before
        heap = await connection.fetchval("SELECT pg_relation_size('events')")
        toast = await connection.fetchval(
            "SELECT pg_relation_size(reltoastrelid) FROM pg_class WHERE relname = 'events'"
        )
        return {
            "variant": variant,
            "insert_us": inserting / n * 1e6,
            "sequence_us": sequencing / n * 1e6,
            "wal_bytes": wal / n,
            "read_us": reading / n * 1e6,
            "heap_mb": heap / 2**20,
            "toast_mb": toast / 2**20,
        }
    finally:
        await connection.close()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--snapshots", required=True, help="database holding real events")
    parser.add_argument("--database", default="events_path", help="scratch database (created)")
    parser.add_argument("--variants", default="base,lean")
    parser.add_argument("--repetitions", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=500)
    args = parser.parse_args()
    source = await asyncpg.connect(f"{POSTGRES}/{args.snapshots}")
    samples = [
        (row["type"], row["data"])
        for row in await source.fetch(
            "SELECT type, data::text AS data FROM events ORDER BY id LIMIT 5000"
        )
    ]
    if not await source.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", args.database):
        await source.execute(f'CREATE DATABASE "{args.database}"')
    await source.close()
    for _ in range(args.repetitions):
        for variant in args.variants.split(","):
            result = await run(f"{POSTGRES}/{args.database}", variant, samples, args.rounds)
            print(
                " ".join(
                    f"{k}={v:.2f}" if isinstance(v, float) else f"{k}={v}"
                    for k, v in result.items()
                ),
                flush=True,
            )


if __name__ == "__main__":
    asyncio.run(main())
