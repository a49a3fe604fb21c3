"""What one outbox sequencer pass costs against the events numbered since the table's last
VACUUM (docs/performance.md item 39), with the pass's scan of ix_events_unsequenced as a
bitmap scan (what the planner picked in a burst: it never marks an entry dead, so every pass
reads the heap page of every numbered event) and as an index scan (what the pass now runs:
the first pass marks the dead entries, later ones skip them).

Per size: an events table (the schema of migration 0013, autovacuum off) with N events, all
numbered by one pass (N stale entries in the index), then 5 passes of 100 new events each,
timed; the two scans alternate, twice. Needs a PostgreSQL of its own
(CHAINFLOW_BENCH_POSTGRES_URL, as bench.profile).

Run: .venv/bin/python -m bench.sequencer_scan 20000 200000
"""

import argparse
import asyncio
import time

import asyncpg

from bench.cluster import POSTGRES
from bench.events_path import _DDL, _LEAN, _sequencer_sql

_PAD = "x" * 900  # a snapshot's size: 516-1,147 bytes
_FILL = (
    "INSERT INTO events (event_id, type, tx_id, data, created_at)"
    " SELECT gen_random_uuid(), 't', md5((g / 5)::text)::uuid,"
    " json_build_object('pad', $2::text), now() FROM generate_series(1, $1) AS g"
)
_SCANS = {
    "bitmap": "SET LOCAL enable_indexscan = off",
    "index": "SET LOCAL enable_bitmapscan = off",
}


async def passes(url: str, stale: int, scan: str) -> list[float]:
    """ms of each of 5 passes of 100 new events after `stale` numbered ones."""
    connection = await asyncpg.connect(url)
    try:
        await connection.execute(
            _DDL + _LEAN + " ALTER TABLE events SET (autovacuum_enabled = off)"
        )
        await connection.execute(_FILL, stale, _PAD)
        await connection.execute(_sequencer_sql().replace("LIMIT 1000", f"LIMIT {stale}"))
        await connection.execute("ANALYZE events")
        found = []
        for _ in range(5):
            await connection.execute(_FILL, 100, _PAD)
            async with connection.transaction():
                await connection.execute(_SCANS[scan])
                start = time.perf_counter()
                await connection.execute(_sequencer_sql())
                found.append((time.perf_counter() - start) * 1000)
        return found
    finally:
        await connection.close()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("sizes", type=int, nargs="+", help="events numbered before the passes")
    parser.add_argument("--database", default="sequencer_scan", help="scratch database (created)")
    args = parser.parse_args()
    admin = await asyncpg.connect(f"{POSTGRES}/postgres")
    if not await admin.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", args.database):
        await admin.execute(f'CREATE DATABASE "{args.database}"')
    await admin.close()
    for stale in args.sizes:
        for scan in ("bitmap", "index", "bitmap", "index"):
            found = await passes(f"{POSTGRES}/{args.database}", stale, scan)
            print(f"{stale} {scan}: " + " ".join(f"{ms:.1f}" for ms in found) + " ms", flush=True)


if __name__ == "__main__":
    asyncio.run(main())
