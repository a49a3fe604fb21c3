"""The cost model's measurement (docs/performance.md): one bench.e2e-shaped run (distributed,
1 api + 2 workers by default) with py-spy on every chainflow process and pg_stat_statements of
the run's database; prints CPU per confirmed tx per process, per step (py-spy samples), and
the statements per step.

Needs a PostgreSQL with `shared_preload_libraries = 'pg_stat_statements'` and the extension
created in its `postgres` database (docs/performance.md "Reproduce"), given by
CHAINFLOW_BENCH_POSTGRES_URL; its CPU is counted from its own processes.

Run: .venv/bin/python -m bench.profile OUT --wallets 32 --requests 3200 [--batch 100] [--spy]
     .venv/bin/python -m bench.profile OUT --report-only     (again, from OUT/result.json)
"""

import argparse
import asyncio
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
from collections import Counter, defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import asyncpg
from aiohttp import web

from bench import e2e, webhooks
from bench.cluster import POSTGRES, run_shape
from bench.ports import serve_here
from chainflow.infra.anvil import run_anvil

PYSPY = str(Path(sys.executable).parent / "py-spy")

# py-spy stacks: the LAST rule (in this order) whose pattern matches any frame wins, so the
# outer steps come first and the finer ones after.
STEPS = [
    ("HTTP: uvicorn", r"uvicorn/protocols"),
    ("HTTP: starlette/fastapi + middleware", r"starlette/|fastapi/|chainflow/api/(app|gate|body)"),
    ("auth + rate limit", r"chainflow/api/(auth|auth_cache|deps)\.py|ratelimit|apikeys/service"),
    ("route: validation, checks, response", r"routes/transactions\.py"),
    ("admit: read chain/wallet/lane", r"find_target"),
    ("admit: insert (CTE or group commit)", r"insert_request|insert_grouped|group_commit"),
    ("admit: doorbell (Redis)", r"doorbell"),
    ("round: lanes with work, registry", r"_chain_loop|run_round \(|_follow_registry"),
    ("drain: nonce counts (RPC)", r"_counts \("),
    ("drain: plan [tx]", r"plan_lanes"),
    ("drain: estimate (RPC)", r"estimate_gas|fail_refused"),
    ("drain: sign + store [tx]", r"sign_lanes"),
    ("drain: send + record [tx]", r"send_and_record"),
    ("tracking", r"tracking\.py|track_chain"),
    ("tracking: read in flight [tx]", r"tracked \("),
    ("tracking: observe (RPC)", r"observe \("),
    ("tracking: record receipts [tx]", r"record \(chainflow/domain/transactions/track/record"),
    ("tracking: send + record [tx]", r"track\.py.*send_and_record"),
    ("outbox sequencer", r"run_outbox|sequencer"),
    ("webhooks loop", r"run_webhooks"),
]
_IDLE = re.compile(r"\.select \(selectors|\.poll \(|epoll|wait \(threading")

# pg_stat_statements: the first pattern that matches a statement's text names its step.
STATEMENTS = [
    ("API admit: read chain/wallet/lane", r"^SELECT chains\.chain_id, chains\.enabled"),
    ("API admit: request + tx_events + outbox (one CTE)", r"^WITH new_tx AS"),
    ("API batch: inserts", r"^INSERT INTO transactions"),
    ("API: key lookup (cached 1 s)", r"FROM api_keys"),
    ("round: lanes with queued work", r"anon_1\.wallet_id, anon_1\.n|sum\(CASE WHEN"),
    # Before the drain's and the read-back's rules, which its texts would match: the
    # requests in flight, joined to their attempts (before item 26: the ORM's SELECT of
    # every column, then its selectinload of the attempts).
    (
        "tracking: in flight",
        r"^SELECT page\.id|ORDER BY transactions\.wallet_id, transactions\.nonce"
        r"|^SELECT tx_attempts\.tx_id, tx_attempts\.id, tx_attempts\.kind",
    ),
    (
        "drain plan: leases, queued rows",
        r"wallet_chains SET lease_owner|FROM wallet_chains|transactions\.kind",
    ),
    ("drain sign: attempts", r"^INSERT INTO tx_attempts"),
    ("drain sign: next nonce", r"UPDATE wallet_chains SET next_nonce"),
    ("status change: UPDATE transactions", r"^UPDATE transactions"),
    ("status change: UPDATE tx_attempts", r"^UPDATE tx_attempts"),
    ("status change: INSERT tx_events", r"^INSERT INTO tx_events"),
    ("status change: INSERT outbox events", r"^INSERT INTO events"),
    ("status change: read back for snapshots", r"transactions\.from_address|tx_attempts\.hash"),
    ("tracking, sends: lock states", r"final_hash, transactions\.block_hash|status IN"),
    (
        "outbox sequencer",
        r"UPDATE events SET cursor|max\(events\.cursor\)|cursor IS NULL|tx_seq\)|advisory",
    ),
    ("webhooks loop", r"webhook_"),
    ("BEGIN / COMMIT", r"^(BEGIN|COMMIT|ROLLBACK)"),
]


# Writes per table (HOT: an UPDATE that wrote no index entry) and scans per index, over the
# run (pg_stat_reset at its start): which index each UPDATE pays for, which no query uses.
_TABLE_STATS = (
    "SELECT relname, n_tup_ins, n_tup_upd, n_tup_hot_upd, n_tup_del, n_dead_tup, n_live_tup"
    " FROM pg_stat_user_tables ORDER BY relname"
)
_INDEX_STATS = (
    "SELECT relname, indexrelname, idx_scan, idx_tup_read,"
    " pg_relation_size(indexrelid) AS bytes FROM pg_stat_user_indexes"
    " ORDER BY relname, indexrelname"
)


# Each request's first `queued` to its first `confirmed` status change (tx_events), in ms.
_LATENCY = """
SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY ms) AS p50,
       percentile_cont(0.99) WITHIN GROUP (ORDER BY ms) AS p99, max(ms) AS max
FROM (SELECT extract(epoch FROM min(c.at) - min(q.at))::float8 * 1000 AS ms
      FROM tx_events q JOIN tx_events c ON c.tx_id = q.tx_id AND c.to_status = 'confirmed'
      WHERE q.to_status = 'queued' GROUP BY q.tx_id) AS each_tx
"""


# WAL written by the whole server over the run (the benchmark's PostgreSQL is its own):
# the LSN's advance, and pg_stat_wal's records and full-page images since its reset.
_WAL = (
    "SELECT pg_current_wal_lsn() - $1::text::pg_lsn AS lsn_bytes, wal_records, wal_fpi,"
    " $1::text AS lsn_start, pg_current_wal_lsn()::text AS lsn_end"
    " FROM pg_stat_wal"
)


async def _wal_by_relation(database_url: str, start: str, end: str) -> dict[str, float]:
    """WAL bytes of the run per relation of its database (pg_walinspect, if the benchmark's
    server has it in `postgres`; {} if not): which table and index the bytes went to."""
    if not await _admin("SELECT 1 FROM pg_extension WHERE extname = 'pg_walinspect'"):
        return {}
    names = {
        row["node"]: row["name"]
        for row in await _admin(
            "SELECT pg_relation_filenode(oid)::text AS node, relname AS name FROM pg_class"
            " WHERE pg_relation_filenode(oid) IS NOT NULL",
            database=database_url,
        )
    }
    (dboid,) = await _admin(
        "SELECT oid::text AS oid FROM pg_database WHERE datname = $1",
        database_url.rsplit("/", 1)[1],
    )
    await _flushed(end, timeout_s=10)
    rows = await _admin(_WAL_RELATIONS, start, end)
    found: dict[str, float] = defaultdict(float)
    for row in rows:
        db, _, node = (row["rel"] or "/").partition("/")
        name = names.get(node, "other") if db == dboid["oid"] else "other"
        found[name] += float(row["bytes"])
    return dict(found)


async def _flushed(lsn: str, *, timeout_s: float) -> None:
    """Wait until the server has flushed its WAL up to `lsn`: pg_walinspect refuses an end
    past the flush position ("cannot accept future end LSN"), and WAL written without a
    commit (hint bits, pruning) can sit unflushed until the WAL writer's next round."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    query = "SELECT pg_current_wal_flush_lsn() >= $1::text::pg_lsn AS ok"
    while not (await _admin(query, lsn))[0]["ok"]:
        if asyncio.get_running_loop().time() > deadline:
            raise RuntimeError(f"WAL not flushed up to {lsn} after {timeout_s} s")
        await asyncio.sleep(0.05)  # polling the server


_WAL_RELATIONS = (
    "SELECT substring(block_ref from 'rel [0-9]+/([0-9]+/[0-9]+)') AS rel,"
    " sum(record_length) AS bytes"
    " FROM pg_get_wal_records_info($1::text::pg_lsn, $2::text::pg_lsn) GROUP BY 1"
)


async def _all_sequenced(database_url: str, *, timeout_s: float) -> None:
    """Wait until the outbox sequencer has numbered every event: a transaction's last events
    are sequenced up to a pass after it is confirmed, and a run measured at the last
    confirmation counted 70-100% of those UPDATEs depending on where the pass fell (up to
    ~1.4 KB of WAL per transaction between two runs of the same code)."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    connection = await asyncpg.connect(database_url)
    try:
        while await connection.fetchval("SELECT count(*) FROM events WHERE cursor IS NULL"):
            if asyncio.get_running_loop().time() > deadline:
                raise RuntimeError(f"events still unsequenced after {timeout_s} s")
            await asyncio.sleep(0.05)  # polling the database
    finally:
        await connection.close()


async def _admin(query: str, *args: object, database: str = "") -> list[asyncpg.Record]:
    connection = await asyncpg.connect(database or f"{POSTGRES}/postgres")
    try:
        return list(await connection.fetch(query, *args))
    finally:
        await connection.close()


async def measure(args: argparse.Namespace, out: Path) -> None:
    folder = Path(tempfile.mkdtemp(prefix="cf-profile-"))
    per_wallet = args.requests // args.wallets
    settings = dict(kv.split("=", 1) for kv in args.set)
    hook, hook_url, receiver = None, "", None
    if args.webhook:  # one endpoint on transaction.confirmed, its receiver in this process
        hook, receiver = webhooks.Receiver(), web.AppRunner(web.Application(), access_log=None)
        receiver.app.router.add_post("/hook", hook.handle)
        await receiver.setup()
        port = await serve_here(receiver)
        hook_url = f"http://127.0.0.1:{port}/hook"
        settings = webhooks.SETTINGS | settings
    async with (
        run_anvil() as anvil,
        run_shape(
            "distributed",
            anvil,
            args.wallets,
            folder,
            settings=settings,
            workers=args.workers,
            apis=args.apis,
        ) as run,
    ):
        if hook is not None:
            await webhooks.add_endpoint(run, hook_url)
        await asyncio.sleep(2)  # the workers' first rounds
        spies = [
            subprocess.Popen(  # noqa: ASYNC220 - returns at once
                [
                    PYSPY,
                    "record",
                    "--pid",
                    str(proc.pid),
                    "--rate",
                    "100",
                    "--format",
                    "raw",
                    "--nonblocking",
                    "-o",
                    str(out / f"{name}.txt"),
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            for name, proc in (run.procs.items() if args.spy else [])
        ]
        await _admin("SELECT pg_stat_statements_reset()")
        await _admin("SELECT pg_stat_reset()", database=run.database_url)
        await _admin("SELECT pg_stat_reset_shared('wal')")
        (lsn_before,) = await _admin("SELECT pg_current_wal_lsn()::text AS lsn")
        load = os.getloadavg()
        before = run.cpu_seconds()
        _, errors = await e2e.submit_all(run, per_wallet, args.concurrency, args.batch)
        n = args.wallets * per_wallet - errors
        await e2e.wait_confirmed(run.database_url, n, 900)
        if hook is not None:
            hook.expect(n)
            await asyncio.wait_for(hook.all_in.wait(), timeout=120)
        await _all_sequenced(run.database_url, timeout_s=120)
        after = run.cpu_seconds()
        (wal,) = await _admin(_WAL, lsn_before["lsn"])
        wal_by_relation = await _wal_by_relation(run.database_url, wal["lsn_start"], wal["lsn_end"])
        statements = await _admin(
            "SELECT s.calls, s.rows, s.total_exec_time, s.query FROM pg_stat_statements s"
            " JOIN pg_database d ON d.oid = s.dbid WHERE d.datname = $1",
            run.database_url.rsplit("/", 1)[1],
        )
        tables = await _admin(_TABLE_STATS, database=run.database_url)
        indexes = await _admin(_INDEX_STATS, database=run.database_url)
        if args.dump:
            await asyncio.to_thread(
                subprocess.run, ["pg_dump", "-Fc", "-f", args.dump, run.database_url], check=True
            )
        for spy in spies:
            spy.send_signal(signal.SIGINT)
        for spy in spies:
            spy.wait(timeout=60)
        span, *_ = await e2e.lifecycle(run.database_url)
        latency = await _admin(_LATENCY, database=run.database_url)
    if receiver is not None:
        await receiver.cleanup()
    result = {
        "n": n,
        "errors": errors,
        "batch": args.batch,
        "wallets": args.wallets,
        "tx_per_s": n / span,
        "loadavg": load,
        "queued_to_confirmed_ms": dict(latency[0]),
        "cpu_ms_per_tx": {k: (after[k] - before.get(k, 0.0)) * 1000 / n for k in after},
        "wal": {k: v if isinstance(v, str) else float(v) for k, v in dict(wal).items()},
        "wal_by_relation": wal_by_relation,
        "statements": [dict(row) for row in statements],
        "tables": [dict(row) for row in tables],
        "indexes": [dict(row) for row in indexes],
    }
    (out / "result.json").write_text(json.dumps(result, indent=1))


def report(out: Path) -> None:
    result = json.loads((out / "result.json").read_text())
    cpu: dict[str, float] = result["cpu_ms_per_tx"]
    shown = {k: v for k, v in cpu.items() if k != "client"}
    print(
        f"{result['n']} tx, {result['tx_per_s']:.0f} tx/s, load {result['loadavg'][0]:.1f}; "
        "CPU ms per confirmed tx: "
        + ", ".join(f"{k} {v:.2f}" for k, v in shown.items())
        + f"; all but anvil {sum(v for k, v in shown.items() if k != 'anvil'):.2f}"
    )
    if wal := result.get("wal"):
        n = result["n"]
        print(
            f"WAL per confirmed tx (whole server: {wal['lsn_bytes'] / n:.0f} bytes,"
            f" {wal['wal_records'] / n:.1f} records, {wal['wal_fpi'] / n:.2f} full pages)"
        )
    if by_relation := result.get("wal_by_relation"):
        top = sorted(by_relation.items(), key=lambda item: -item[1])[:12]
        print(
            "WAL bytes per tx by relation: "
            + ", ".join(f"{name} {b / result['n']:.0f}" for name, b in top)
        )
    if latency := result.get("queued_to_confirmed_ms"):
        print(
            "queued -> confirmed ms: "
            + ", ".join(f"{k} {v:.0f}" for k, v in latency.items() if v is not None)
        )
    for spy in sorted(out.glob("*.txt")):
        _steps(spy, cpu.get(spy.stem, 0.0))
    _statements(result["statements"], result["n"])
    if result.get("tables"):
        _writes(result["tables"], result.get("indexes", []), result["n"])


def _steps(spy: Path, ms: float) -> None:
    steps: Counter[str] = Counter()
    for line in spy.read_text().splitlines():
        text, _, samples = line.rpartition(" ")
        stack = text.split(";")
        if not samples.isdigit() or _IDLE.search(stack[-1]):
            continue
        found = "event loop (uvloop) and other"
        for step, pattern in STEPS:
            if any(re.search(pattern, frame) for frame in stack):
                found = step
        steps[found] += int(samples)
    total = sum(steps.values()) or 1
    print(f"\n{spy.stem}: {ms:.2f} ms CPU per confirmed tx, {total} busy samples")
    for step, share in steps.most_common():
        print(f"  {ms * share / total:6.3f} ms  {share / total * 100:4.1f}%  {step}")


def _statements(rows: Sequence[dict[str, Any]], n: int) -> None:
    found: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0, 0.0])
    for row in rows:
        text = " ".join(str(row["query"]).split())
        step = next((name for name, pattern in STATEMENTS if re.search(pattern, text)), "other")
        found[step][0] += row["calls"] / n
        found[step][1] += row["rows"] / n
        found[step][2] += row["total_exec_time"] / n
    print("\nPostgreSQL per confirmed tx: statements / rows / execution ms")
    for step, (calls, count, ms) in sorted(found.items(), key=lambda kv: -kv[1][0]):
        print(f"  {calls:6.2f} / {count:6.2f} / {ms:6.3f}  {step}")
    calls, count, ms = (sum(v[i] for v in found.values()) for i in range(3))
    print(f"  {calls:6.2f} / {count:6.2f} / {ms:6.3f}  total")


def _writes(tables: Sequence[dict[str, Any]], indexes: Sequence[dict[str, Any]], n: int) -> None:
    print("\nRows written per confirmed tx: inserted / updated (HOT) / deleted; index scans")
    scans: dict[str, list[str]] = defaultdict(list)
    for row in indexes:
        scans[row["relname"]].append(f"{row['indexrelname']} {row['idx_scan'] / n:.2f}")
    for row in tables:
        if row["n_tup_ins"] or row["n_tup_upd"] or row["n_tup_del"]:
            print(
                f"  {row['relname']:<20} {row['n_tup_ins'] / n:5.2f} / {row['n_tup_upd'] / n:5.2f}"
                f" ({row['n_tup_hot_upd'] / n:5.2f}) / {row['n_tup_del'] / n:5.2f};"
                f" {', '.join(scans[row['relname']])}"
            )


def parse(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("out", help="folder for result.json and the py-spy files")
    parser.add_argument("--wallets", type=int, default=32)
    parser.add_argument("--requests", type=int, default=3200)
    parser.add_argument("--batch", type=int, default=0, help="POST /v1/transactions/batch of N")
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--apis", type=int, default=1)
    parser.add_argument("--spy", action="store_true", help="py-spy record every process")
    parser.add_argument("--set", action="append", default=[], help="CHAINFLOW_X=value")
    parser.add_argument(
        "--webhook", action="store_true", help="one endpoint on transaction.confirmed"
    )
    parser.add_argument("--report-only", action="store_true")
    parser.add_argument("--dump", default="", help="pg_dump -Fc the run's database to this file")
    return parser.parse_args(argv)


if __name__ == "__main__":
    arguments = parse()
    folder = Path(arguments.out)
    folder.mkdir(parents=True, exist_ok=True)
    if not arguments.report_only:
        asyncio.run(measure(arguments, folder))
    report(folder)
