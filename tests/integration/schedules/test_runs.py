"""Exactly one run per occurrence: concurrent passes, a crash before commit, overlap and
misfire; runs are finished from their transaction's terminal status."""

import asyncio
import json
import threading
import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import func, select, text

from chainflow.core.crashpoints import Crasher, CrashPoint
from chainflow.domain.apikeys import service as apikeys
from chainflow.domain.apikeys.service import KeyLimits
from chainflow.domain.audit.models import AuditEntry
from chainflow.domain.events import EventRow
from chainflow.domain.policies import service as policies
from chainflow.domain.policies.schemas import PolicyRules
from chainflow.domain.schedules import outcomes, planner, repository, runner, service
from chainflow.domain.schedules.errors import (
    InvalidSchedule,
    ScheduleActionExpired,
    ScheduleOwnerKeyInactive,
)
from chainflow.domain.schedules.models import RunStatus, Schedule, ScheduleRun, ScheduleStatus
from chainflow.domain.schedules.schemas import ScheduleCreate
from chainflow.domain.transactions.models import Transaction
from chainflow.domain.transactions.state import TxStatus
from chainflow.domain.wallets.models import Wallet
from chainflow.infra.db.engine import create_engine, create_sessionmaker
from chainflow.infra.db.uow import unit_of_work
from chainflow.workers.engine import Engine, ScheduleConfig
from chainflow.workers.main import run_engine
from chainflow.workers.schedules import schedule_pass
from tests.support.chains import ANVIL_CHAIN_ID
from tests.support.engine import SINK, EngineHarness, deploy
from tests.support.polling import eventually

SENDING = ["schedules", "transactions:write"]  # what creating a schedule needs
T0 = datetime(2030, 1, 1, tzinfo=UTC)  # far from now: passes are given their `now`
# Deploys the runtime 60006000fd (PUSH1 0 PUSH1 0 REVERT): every call to it reverts.
ALWAYS_REVERTS_INIT_CODE = "0x6005600c60003960056000f3" + "60006000fd"


async def _create(
    harness: EngineHarness,
    wallet: Wallet,
    now: datetime,
    *,
    api_key_id: uuid.UUID | None = None,
    **fields: Any,
) -> uuid.UUID:
    body = ScheduleCreate.model_validate(
        {
            "wallet": str(wallet.id),
            "chain_id": ANVIL_CHAIN_ID,
            "trigger": {"interval_s": 10},
            "start_at": now.isoformat(),
            "action": {"type": "transaction", "to": SINK, "value": "7"},
            **fields,
        }
    )
    async with unit_of_work(harness.sessionmaker) as session:
        row = await service.create_schedule(
            session, body, api_key_id=api_key_id, now=now, min_interval_s=1
        )
        return row.id


async def _runs(harness: EngineHarness, schedule_id: uuid.UUID) -> list[ScheduleRun]:
    async with unit_of_work(harness.sessionmaker) as session:
        rows, _ = await service.list_runs(session, schedule_id, limit=500, cursor=None)
        return list(rows)


async def _schedule(harness: EngineHarness, schedule_id: uuid.UUID) -> Schedule:
    async with unit_of_work(harness.sessionmaker) as session:
        return await service.get_schedule(session, schedule_id)


async def _tx_count(harness: EngineHarness) -> int:
    async with unit_of_work(harness.sessionmaker) as session:
        return int(await session.scalar(select(func.count()).select_from(Transaction)) or 0)


class TestExactlyOnce:
    async def test_concurrent_passes_make_one_transaction_per_occurrence(
        self, harness: EngineHarness, database_url: str
    ) -> None:
        wallet = await harness.wallet()
        ids = [await _create(harness, wallet, T0) for _ in range(12)]
        # Three engines, each on its own connection pool, pass at the same instants.
        engines = [harness.engine]
        disposers = []
        for _ in range(2):
            db = create_engine(database_url, pool_size=2)
            disposers.append(db)
            ports = replace(harness.engine.ports, sessionmaker=create_sessionmaker(db))
            engines.append(Engine.start(ports))
        try:
            for step in range(3):
                now = T0 + timedelta(seconds=10 * step)
                await asyncio.gather(*(schedule_pass(e, ANVIL_CHAIN_ID, now=now) for e in engines))
                # the occurrence's transactions are confirmed before the next one
                await _drain_all(harness)
        finally:
            for db in disposers:
                await db.dispose()
        for schedule_id in ids:
            runs = await _runs(harness, schedule_id)
            assert [r.scheduled_for for r in runs] == [
                T0 + timedelta(seconds=10 * i) for i in range(3)
            ]
            assert {r.transaction_id is not None for r in runs} == {True}
            assert (await _schedule(harness, schedule_id)).runs == 3
        assert await _tx_count(harness) == 36

    async def test_a_crash_before_commit_leaves_nothing_and_the_next_pass_runs_it_once(
        self, harness: EngineHarness
    ) -> None:
        wallet = await harness.wallet()
        schedule_id = await _create(harness, wallet, T0, max_runs=1)
        crashing = Engine.start(replace(harness.engine.ports, crasher=_RaisingCrasher()))
        with pytest.raises(_Crashed):
            await schedule_pass(crashing, ANVIL_CHAIN_ID, now=T0)
        assert await _runs(harness, schedule_id) == []
        assert await _tx_count(harness) == 0
        assert (await _schedule(harness, schedule_id)).next_run_at == T0
        assert await schedule_pass(harness.engine, ANVIL_CHAIN_ID, now=T0) == 1
        assert (
            await schedule_pass(harness.engine, ANVIL_CHAIN_ID, now=T0 + timedelta(seconds=10)) == 0
        )
        (run,) = await _runs(harness, schedule_id)
        assert run.scheduled_for == T0
        assert await _tx_count(harness) == 1
        assert (await _schedule(harness, schedule_id)).status is ScheduleStatus.COMPLETED

    @pytest.mark.timeout(120)
    @pytest.mark.parametrize(
        ("loops", "max_runs"),
        [(2, 4), pytest.param(3, 20, marks=pytest.mark.chaos_full)],
    )
    async def test_engine_loops_at_once_make_max_runs_transactions(
        self, harness: EngineHarness, database_url: str, loops: int, max_runs: int
    ) -> None:
        """Each loop on its own connection pool, as separate workers would be."""
        wallet = await harness.wallet()
        now = datetime.now(UTC)
        schedule_id = await _create(
            harness, wallet, now, trigger={"interval_s": 1}, max_runs=max_runs
        )
        fast = ScheduleConfig(poll_s=0.1, misfire_grace_s=60)
        pools = [create_engine(database_url, pool_size=4) for _ in range(loops - 1)]
        engines = [Engine.start(replace(harness.engine.ports, schedules=fast))] + [
            Engine.start(
                replace(harness.engine.ports, schedules=fast, sessionmaker=create_sessionmaker(db))
            )
            for db in pools
        ]
        stop = asyncio.Event()
        tasks = [asyncio.create_task(run_engine(e, stop, poll_s=0.05)) for e in engines]

        async def done() -> list[ScheduleRun] | None:
            runs = await _runs(harness, schedule_id)
            finished = [r for r in runs if r.status is RunStatus.SUCCEEDED]
            return runs if len(finished) == max_runs else None

        try:
            runs = await eventually(done, timeout_s=max_runs * 5 + 20, interval_s=0.2)
        finally:
            stop.set()
            await asyncio.gather(*tasks)
            for db in pools:
                await db.dispose()
        made = [r for r in runs if r.transaction_id is not None]
        assert len(made) == max_runs
        assert len({r.scheduled_for for r in runs}) == len(runs)
        assert await _tx_count(harness) == max_runs
        assert (await _schedule(harness, schedule_id)).status is ScheduleStatus.COMPLETED


class _Crashed(Exception):
    pass


class _RaisingCrasher(Crasher):
    """In process, a crash before commit is an exception out of the unit of work: the
    database sees the same thing as after a SIGKILL (no COMMIT)."""

    def reached(self, point: str) -> None:
        if point == CrashPoint.SCHEDULE_RUNS_STORED:
            raise _Crashed(point)


async def _drain_all(harness: EngineHarness) -> None:
    async with unit_of_work(harness.sessionmaker) as session:
        ids = (
            await session.scalars(
                select(Transaction.id).where(Transaction.status == TxStatus.QUEUED)
            )
        ).all()
    if ids:
        await harness.run_until_final(list(ids), timeout_s=30)


class TestOverlapAndOutcome:
    async def test_a_pending_run_skips_the_next_occurrence_then_finishes_succeeded(
        self, harness: EngineHarness
    ) -> None:
        wallet = await harness.wallet()
        schedule_id = await _create(harness, wallet, T0)
        assert await schedule_pass(harness.engine, ANVIL_CHAIN_ID, now=T0) == 1
        # not drained: its transaction is still queued at the next occurrence
        assert (
            await schedule_pass(harness.engine, ANVIL_CHAIN_ID, now=T0 + timedelta(seconds=10)) == 0
        )
        first, skipped = await _runs(harness, schedule_id)
        assert (first.status, skipped.status) == (RunStatus.PENDING, RunStatus.SKIPPED)
        assert skipped.reason is not None
        assert "overlap" in skipped.reason
        assert skipped.transaction_id is None
        await _drain_all(harness)
        await schedule_pass(harness.engine, ANVIL_CHAIN_ID, now=T0 + timedelta(seconds=20))
        first, skipped, third = await _runs(harness, schedule_id)
        assert first.status is RunStatus.SUCCEEDED
        assert third.status is RunStatus.PENDING
        tx = await harness.get(first.transaction_id)  # type: ignore[arg-type]
        assert (tx.status, tx.value_wei, tx.to_address) == (TxStatus.CONFIRMED, 7, SINK)
        # each finished run is announced in the outbox, in the same DB transaction
        async with unit_of_work(harness.sessionmaker) as session:
            rows = (
                await session.scalars(
                    select(EventRow)
                    .where(EventRow.type.like("schedule.run.%"))
                    .order_by(EventRow.id)
                )
            ).all()
        assert [(row.type, row.data["run_id"]) for row in rows] == [
            ("schedule.run.skipped", str(skipped.id)),
            ("schedule.run.succeeded", str(first.id)),
        ]
        assert all(row.tx_id is None and row.wallet_id == wallet.id for row in rows)

    async def test_a_refused_request_is_a_failed_run_and_the_schedule_goes_on(
        self, harness: EngineHarness
    ) -> None:
        wallet = await harness.wallet()
        schedule_id = await _create(
            harness,
            wallet,
            T0,
            action={"type": "transaction", "to": SINK, "max_fee_per_gas": "0"},
        )
        await schedule_pass(harness.engine, ANVIL_CHAIN_ID, now=T0)
        (run,) = await _runs(harness, schedule_id)
        assert run.status is RunStatus.FAILED
        assert run.reason is not None
        assert run.reason.startswith("fee_cap_zero")
        assert (await _schedule(harness, schedule_id)).next_run_at == T0 + timedelta(seconds=10)

    async def test_a_run_the_wallets_policy_refuses_fails_with_policy_denied(
        self, harness: EngineHarness
    ) -> None:
        """The wallet's spending policy applies to every run, as to POST /v1/transactions: a
        `schedules` key's schedule moves no more than the policy allows (README "Scopes")."""
        wallet = await harness.wallet()
        async with unit_of_work(harness.sessionmaker) as session:
            rules = PolicyRules.model_validate({"max_value_wei_per_tx": "5"})
            await policies.put_policy(session, wallet.id, rules, key_id=None)
        key = await _schedules_key(harness)
        schedule_id = await _create(harness, wallet, T0, api_key_id=key.id)  # value 7
        assert await schedule_pass(harness.engine, ANVIL_CHAIN_ID, now=T0) == 0
        (run,) = await _runs(harness, schedule_id)
        assert (run.status, run.transaction_id) == (RunStatus.FAILED, None)
        assert (run.reason or "").startswith("policy_denied: ")
        assert await _tx_count(harness) == 0
        row = await _schedule(harness, schedule_id)
        assert (row.status, row.next_run_at) == (ScheduleStatus.ACTIVE, T0 + timedelta(seconds=10))


class TestMisfire:
    @pytest.mark.parametrize("policy", ["skip", "run_once"])
    async def test_downtime_never_bursts(self, harness: EngineHarness, policy: str) -> None:
        wallet = await harness.wallet()
        schedule_id = await _create(harness, wallet, T0, misfire=policy)
        # no worker ran for 37 s past the first occurrence: the latest is 7 s late (grace: 5 s)
        late = T0 + timedelta(seconds=37)
        engine = Engine.start(
            replace(harness.engine.ports, schedules=ScheduleConfig(misfire_grace_s=5))
        )
        made = await schedule_pass(engine, ANVIL_CHAIN_ID, now=late)
        runs = await _runs(harness, schedule_id)
        assert [r.scheduled_for for r in runs] == [
            T0 + timedelta(seconds=s) for s in (0, 10, 20, 30)
        ]
        if policy == "skip":
            assert made == 0
            assert {r.status for r in runs} == {RunStatus.SKIPPED}
        else:
            assert made == 1
            assert [r.status for r in runs] == [RunStatus.SKIPPED] * 3 + [RunStatus.PENDING]
        assert all("misfire" in (r.reason or "") for r in runs if r.status is RunStatus.SKIPPED)
        assert await _tx_count(harness) == made
        assert (await _schedule(harness, schedule_id)).next_run_at == T0 + timedelta(seconds=40)

    async def test_a_cron_due_since_2000_is_caught_up_in_bounded_steps(
        self, harness: EngineHarness, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """The audit's case: every minute since 2000 was stepped through one by one (~42 min
        on the event loop, holding the schedules' locks). Now: the listed ones, a bounded
        count, one jump to the latest."""
        wallet = await harness.wallet()
        y2k = datetime(2000, 1, 1, tzinfo=UTC)
        schedule_id = await _create(harness, wallet, y2k, trigger={"cron": "* * * * *"})
        steps = 0
        real = planner.Trigger._next_after
        bound = planner.MAX_MISSED_LISTED + planner.MAX_MISSED_COUNTED + 10

        def counted(trigger: planner.Trigger, moment: datetime, *, anchor: datetime) -> Any:
            nonlocal steps
            steps += 1
            if steps > bound:
                raise AssertionError(f"more than {bound} steps: unbounded catch-up")
            return real(trigger, moment, anchor=anchor)

        monkeypatch.setattr(planner.Trigger, "_next_after", counted)
        # 30 s past T0, within the grace: T0 itself runs; everything before it was missed
        made = await schedule_pass(harness.engine, ANVIL_CHAIN_ID, now=T0 + timedelta(seconds=30))
        assert steps <= bound
        assert made == 1
        runs = await _runs(harness, schedule_id)
        assert [r.status for r in runs] == [RunStatus.SKIPPED] * 100 + [RunStatus.PENDING]
        assert runs[0].scheduled_for == y2k
        assert runs[99].scheduled_for == y2k + timedelta(minutes=99)
        assert runs[-1].scheduled_for == T0
        assert (runs[99].reason or "").endswith(
            "; more than 100 more occurrences missed (not counted)"
        )
        row = await _schedule(harness, schedule_id)
        assert (row.status, row.next_run_at) == (ScheduleStatus.ACTIVE, T0 + timedelta(minutes=1))


class TestOwnerKey:
    """A run submits as the key that created its schedule: a revoked or expired key stops it."""

    @pytest.mark.parametrize("gone", ["revoked", "expired"])
    async def test_a_key_gone_fails_the_run_and_pauses_the_schedule(
        self, harness: EngineHarness, gone: str
    ) -> None:
        wallet = await harness.wallet()
        expiry = T0 + timedelta(seconds=5) if gone == "expired" else None
        limits = KeyLimits(expires_at=expiry)
        async with unit_of_work(harness.sessionmaker) as session:
            key, _ = await apikeys.create_api_key(session, SENDING, limits=limits)
        schedule_id = await _create(harness, wallet, T0, api_key_id=key.id)
        assert await schedule_pass(harness.engine, ANVIL_CHAIN_ID, now=T0) == 1
        await _drain_all(harness)
        if gone == "revoked":
            async with unit_of_work(harness.sessionmaker) as session:
                await apikeys.revoke_api_key(session, key.id)
        at = T0 + timedelta(seconds=10)
        assert await schedule_pass(harness.engine, ANVIL_CHAIN_ID, now=at) == 0
        # the next passes find nothing to run: no money moves in the key's name
        assert (
            await schedule_pass(harness.engine, ANVIL_CHAIN_ID, now=at + timedelta(seconds=10)) == 0
        )
        first, refused = await _runs(harness, schedule_id)
        assert first.status is RunStatus.SUCCEEDED
        assert (refused.status, refused.transaction_id) == (RunStatus.FAILED, None)
        # what became of the key, not which key nor when: `schedules` keys and webhook
        # receivers read this (review: it named the key's id and its revocation time)
        assert refused.reason == f"api_key_{gone}: owner API key {gone}; the schedule is paused"
        assert await _tx_count(harness) == 1
        row = await _schedule(harness, schedule_id)
        assert (row.status, row.runs) == (ScheduleStatus.PAUSED, 1)
        async with unit_of_work(harness.sessionmaker) as session:
            entries = (
                await session.scalars(
                    select(AuditEntry).where(AuditEntry.resource_id == str(schedule_id))
                )
            ).all()
            failed = (
                await session.scalars(
                    select(EventRow).where(EventRow.type == "schedule.run.failed")
                )
            ).all()
        assert [(e.action, e.actor, e.key_id) for e in entries] == [
            ("schedule.paused", "worker", None)
        ]
        (event,) = failed
        assert event.data["reason"] == refused.reason
        assert str(key.id) not in json.dumps(event.data)
        # and it stays paused: resuming it is refused, the row untouched
        with pytest.raises(ScheduleOwnerKeyInactive, match=f"owner API key is {gone}; create"):
            async with unit_of_work(harness.sessionmaker) as session:
                await service.set_status(
                    session, schedule_id, ScheduleStatus.ACTIVE, now=at + timedelta(seconds=20)
                )
        again = await _schedule(harness, schedule_id)
        assert (again.status, again.next_run_at, again.updated_at) == (
            ScheduleStatus.PAUSED,
            row.next_run_at,
            row.updated_at,
        )

    async def test_an_owner_key_without_transactions_write_fails_the_run(
        self, harness: EngineHarness
    ) -> None:
        """A schedule created by a `schedules`-only key before creating one needed
        `transactions:write` (audit: such a key moved funds): its next run sends nothing."""
        wallet = await harness.wallet()
        async with unit_of_work(harness.sessionmaker) as session:
            key, _ = await apikeys.create_api_key(session, ["schedules"])
        schedule_id = await _create(harness, wallet, T0, api_key_id=key.id)
        assert await schedule_pass(harness.engine, ANVIL_CHAIN_ID, now=T0) == 0
        (refused,) = await _runs(harness, schedule_id)
        assert (refused.status, refused.transaction_id) == (RunStatus.FAILED, None)
        assert refused.reason == (
            "insufficient_scope: owner API key without the transactions:write scope;"
            " the schedule is paused"
        )
        assert await _tx_count(harness) == 0
        assert (await _schedule(harness, schedule_id)).status is ScheduleStatus.PAUSED
        with pytest.raises(ScheduleOwnerKeyInactive, match="without the transactions:write"):
            async with unit_of_work(harness.sessionmaker) as session:
                await service.set_status(
                    session, schedule_id, ScheduleStatus.ACTIVE, now=T0 + timedelta(seconds=5)
                )


class TestOwnerKeyRace:
    """PostgreSQL, two connections: a revoke and a run never both commit with the run after
    the revoke (review: a key revoked between the run's check and its commit let one more
    run submit). SQLite has one writer: a pass and a revoke take turns."""

    pytestmark = pytest.mark.parametrize("dialect", ["postgresql"], indirect=True)

    async def test_passes_holding_one_key_take_turns(
        self, harness: EngineHarness, database_url: str
    ) -> None:
        """The owner check's lock is exclusive: a second holder waits (here: gives up at its
        lock_timeout). Share locks were granted past a waiting revoke, so overlapping passes
        could hold a revoke off for ever (review)."""
        key = await _schedules_key(harness)
        db = create_engine(database_url, pool_size=1)
        try:
            async with unit_of_work(harness.sessionmaker) as first:
                assert await apikeys.why_not_live(first, key.id, now=T0, lock=True) is None
                with pytest.raises(Exception, match="lock timeout"):
                    async with unit_of_work(create_sessionmaker(db)) as second:
                        await second.execute(text("SET LOCAL lock_timeout = '200ms'"))
                        await apikeys.why_not_live(second, key.id, now=T0, lock=True)
        finally:
            await db.dispose()

    async def test_a_revoke_in_flight_is_waited_for_and_stops_the_run(
        self, harness: EngineHarness, database_url: str
    ) -> None:
        wallet = await harness.wallet()
        key = await _schedules_key(harness)
        schedule_id = await _create(harness, wallet, T0, api_key_id=key.id)
        db = create_engine(database_url, pool_size=1)
        try:
            async with unit_of_work(create_sessionmaker(db)) as revoking:
                await apikeys.revoke_api_key(revoking, key.id)  # the row locked, not committed
                passing = asyncio.create_task(schedule_pass(harness.engine, ANVIL_CHAIN_ID, now=T0))

                async def blocked_or_done() -> bool:
                    return passing.done() or await _lock_waiters(harness) > 0

                await eventually(blocked_or_done, timeout_s=20)
            # the revoke commits; the pass, waiting on the key's row, then sees it
            made = await asyncio.wait_for(passing, timeout=20)
        finally:
            await db.dispose()
        (run,) = await _runs(harness, schedule_id)
        assert (made, run.status, run.transaction_id) == (0, RunStatus.FAILED, None)
        assert run.reason == "api_key_revoked: owner API key revoked; the schedule is paused"
        assert await _tx_count(harness) == 0
        assert (await _schedule(harness, schedule_id)).status is ScheduleStatus.PAUSED

    async def test_a_revoke_started_before_the_runs_commit_waits_for_it(
        self, harness: EngineHarness, database_url: str
    ) -> None:
        """The revoke starts in another connection at crash point `schedule_runs_stored` (the
        run checked, its transaction stored, not committed yet) and is held open across the
        commit: it must wait for the run's commit, not commit first."""
        wallet = await harness.wallet()
        key = await _schedules_key(harness)
        schedule_id = await _create(harness, wallet, T0, api_key_id=key.id)
        revoker = _RevokeAtCommit(database_url, key.id)
        engine = Engine.start(replace(harness.engine.ports, crasher=revoker))
        try:
            assert await schedule_pass(engine, ANVIL_CHAIN_ID, now=T0) == 1
        finally:
            revoker.join()
        assert revoker.revoked_before_commit is False
        assert revoker.revoked is True  # once the run committed
        await _drain_all(harness)
        assert (
            await schedule_pass(harness.engine, ANVIL_CHAIN_ID, now=T0 + timedelta(seconds=10)) == 0
        )
        first, refused = await _runs(harness, schedule_id)
        assert first.status is RunStatus.SUCCEEDED  # committed before the revoke: its run
        assert (refused.status, refused.transaction_id) == (RunStatus.FAILED, None)
        assert await _tx_count(harness) == 1


class TestPolicyLockOrder:
    pytestmark = pytest.mark.parametrize("dialect", ["postgresql"], indirect=True)

    async def test_a_pass_over_two_policed_wallets_locks_their_policies_in_order(
        self, harness: EngineHarness, database_url: str
    ) -> None:
        """A pass admits its runs in occurrence order, each locking its wallet's policy row:
        holding one and waiting for the other while a batch held them the other way round
        was a deadlock (audit). The pass locks them in wallet id order first."""
        low, high = sorted([await harness.wallet(), await harness.wallet()], key=lambda w: w.id)
        async with unit_of_work(harness.sessionmaker) as session:
            for wallet in (low, high):
                rules = PolicyRules.model_validate({"max_value_wei_per_tx": "100"})
                await policies.put_policy(session, wallet.id, rules, key_id=None)
        await _create(harness, high, T0)  # due first
        await _create(harness, low, T0 + timedelta(seconds=1))
        db = create_engine(database_url, pool_size=1)
        try:
            async with unit_of_work(create_sessionmaker(db)) as batch:
                await policies.read_rules(batch, low.id, lock=True)
                passing = asyncio.create_task(
                    schedule_pass(harness.engine, ANVIL_CHAIN_ID, now=T0 + timedelta(seconds=1))
                )

                async def blocked_or_done() -> bool:
                    return passing.done() or await _lock_waiters(harness) > 0

                await eventually(blocked_or_done, timeout_s=20)
                await policies.read_rules(batch, high.id, lock=True)  # as a batch in id order
            made = await asyncio.wait_for(passing, timeout=20)
        finally:
            await db.dispose()
        assert made == 2
        assert await _tx_count(harness) == 2

    async def test_a_policy_committed_mid_pass_is_not_locked_out_of_order(
        self, harness: EngineHarness, database_url: str
    ) -> None:
        """The pass locks the policies existing at its start; one committed while the pass
        runs was locked later, after the others, by the run of its wallet: with a batch
        holding it and waiting for one the pass held, a deadlock (review). The pass admits
        against the policies it locked at its start only."""
        low, high = sorted([await harness.wallet(), await harness.wallet()], key=lambda w: w.id)
        rules = PolicyRules.model_validate({"max_value_wei_per_tx": "100"})
        async with unit_of_work(harness.sessionmaker) as session:
            await policies.put_policy(session, high.id, rules, key_id=None)
        await _create(harness, high, T0)  # due first
        await _create(harness, low, T0 + timedelta(seconds=1))
        db = create_engine(database_url, pool_size=3)
        try:
            make = create_sessionmaker(db)
            async with unit_of_work(make) as batch:
                async with unit_of_work(make) as holder:
                    # high's run waits to insert its request (its wallet row's key-share
                    # lock), holding high's policy from the pass's start
                    await holder.execute(
                        select(Wallet.id).where(Wallet.id == high.id).with_for_update()
                    )
                    passing = asyncio.create_task(
                        schedule_pass(harness.engine, ANVIL_CHAIN_ID, now=T0 + timedelta(seconds=1))
                    )

                    async def blocked_or_done() -> bool:
                        return passing.done() or await _lock_waiters(harness) > 0

                    await eventually(blocked_or_done, timeout_s=20)
                    async with unit_of_work(make) as session:  # low's first policy, mid-pass
                        await policies.put_policy(session, low.id, rules, key_id=None)
                    await policies.read_rules(batch, low.id, lock=True)
                # the pass goes on to low's run; the batch then wants high, in id order
                await policies.read_rules(batch, high.id, lock=True)
            made = await asyncio.wait_for(passing, timeout=20)
        finally:
            await db.dispose()
        assert made == 2
        assert await _tx_count(harness) == 2


class TestBudgetRace:
    pytestmark = pytest.mark.parametrize("dialect", ["postgresql"], indirect=True)

    async def test_a_run_another_pass_is_recording_counts_as_given_back(
        self, harness: EngineHarness, database_url: str
    ) -> None:
        """Another pass's `finish_runs` holds the failed run's row (it waits for the schedule's
        lock to give the 7 back): the occurrence is judged with the 7 given back, not ended
        for the budget, and the refund then lands on the running schedule."""
        wallet = await harness.wallet()
        reverting = await deploy(harness.rpc, ALWAYS_REVERTS_INIT_CODE)
        action = {"type": "transaction", "to": reverting, "value": "7"}
        schedule_id = await _create(harness, wallet, T0, budget="7", action=action)
        assert await schedule_pass(harness.engine, ANVIL_CHAIN_ID, now=T0) == 1
        await _drain_all(harness)  # the transaction is failed, its run still pending
        due = T0 + timedelta(seconds=10)
        db = create_engine(database_url, pool_size=1)
        try:
            async with unit_of_work(create_sessionmaker(db)) as finishing:
                held = await repository.lock_finished(finishing, ANVIL_CHAIN_ID, limit=10)
                assert len(held) == 1  # as the other pass's finish_runs does first
                async with unit_of_work(harness.sessionmaker) as session:
                    result = await runner.start_due(
                        session, ANVIL_CHAIN_ID, now=due, grace=timedelta(seconds=60)
                    )
                assert ([r.scheduled_for for r in result.started], result.recorded) == ([due], [])
                await outcomes.finish_runs(finishing, ANVIL_CHAIN_ID, now=due)
        finally:
            await db.dispose()
        first, second = await _runs(harness, schedule_id)
        assert (first.status, second.status) == (RunStatus.FAILED, RunStatus.PENDING)
        row = await _schedule(harness, schedule_id)
        assert (row.status, row.runs, row.spent) == (ScheduleStatus.ACTIVE, 2, 7)

    async def test_a_confirmed_run_another_pass_is_recording_gives_nothing_back(
        self, harness: EngineHarness, database_url: str
    ) -> None:
        """The same hold on a run whose transaction confirmed: its 7 stay spent, so the next
        occurrence is over the budget of 7 and ends the schedule (review: counting every
        unrecorded run as given back would have let it overspend, and no test saw it)."""
        wallet = await harness.wallet()
        schedule_id = await _create(harness, wallet, T0, budget="7")
        assert await schedule_pass(harness.engine, ANVIL_CHAIN_ID, now=T0) == 1
        await _drain_all(harness)  # confirmed, its run still pending
        due = T0 + timedelta(seconds=10)
        db = create_engine(database_url, pool_size=1)
        try:
            async with unit_of_work(create_sessionmaker(db)) as finishing:
                held = await repository.lock_finished(finishing, ANVIL_CHAIN_ID, limit=10)
                assert len(held) == 1
                async with unit_of_work(harness.sessionmaker) as session:
                    result = await runner.start_due(
                        session, ANVIL_CHAIN_ID, now=due, grace=timedelta(seconds=60)
                    )
                assert result.started == []
                assert [r.reason for r in result.recorded] == ["budget reached: 7 of 7 spent"]
                await outcomes.finish_runs(finishing, ANVIL_CHAIN_ID, now=due)
        finally:
            await db.dispose()
        assert await _tx_count(harness) == 1
        row = await _schedule(harness, schedule_id)
        assert (row.status, row.spent) == (ScheduleStatus.COMPLETED, 7)


async def _schedules_key(harness: EngineHarness) -> Any:
    async with unit_of_work(harness.sessionmaker) as session:
        key, _ = await apikeys.create_api_key(session, SENDING)
        return key


async def _lock_waiters(harness: EngineHarness) -> int:
    async with unit_of_work(harness.sessionmaker) as session:
        waiting = await session.scalar(
            text(
                "SELECT count(*) FROM pg_stat_activity "
                "WHERE datname = current_database() AND wait_event_type = 'Lock'"
            )
        )
        return int(waiting or 0)


class _RevokeAtCommit(Crasher):
    """At `schedule_runs_stored`, revokes the key from a thread of its own (another event
    loop, another connection) and returns once the revoke is either committed or waiting on a
    lock; the pass's commit follows."""

    def __init__(self, database_url: str, key_id: uuid.UUID) -> None:
        self.database_url, self.key_id = database_url, key_id
        self.revoked_before_commit: bool | None = None
        self.revoked = False
        self._settled = threading.Event()
        self._thread: threading.Thread | None = None

    def reached(self, point: str) -> None:
        if point != CrashPoint.SCHEDULE_RUNS_STORED or self._thread is not None:
            return
        self._thread = threading.Thread(target=asyncio.run, args=(self._revoke(),))
        self._thread.start()
        if not self._settled.wait(timeout=20):
            raise AssertionError("the revoke neither committed nor waited within 20 s")

    async def _revoke(self) -> None:
        db = create_engine(self.database_url, pool_size=2)
        try:
            sessionmaker = create_sessionmaker(db)

            async def revoke() -> None:
                async with unit_of_work(sessionmaker) as session:
                    await apikeys.revoke_api_key(session, self.key_id)

            revoking = asyncio.create_task(revoke())

            async def settled() -> bool:
                if revoking.done():
                    return True
                async with unit_of_work(sessionmaker) as session:
                    waiting = await session.scalar(
                        text(
                            "SELECT count(*) FROM pg_stat_activity WHERE datname = "
                            "current_database() AND wait_event_type = 'Lock'"
                        )
                    )
                return bool(waiting)

            try:
                await eventually(settled, timeout_s=20)
                self.revoked_before_commit = revoking.done()
            finally:
                self._settled.set()
            await revoking
            self.revoked = True
        finally:
            await db.dispose()

    def join(self) -> None:
        if self._thread is not None:
            self._thread.join(timeout=30)


class TestBudgetAndPause:
    async def test_budget_ends_the_schedule(self, harness: EngineHarness) -> None:
        wallet = await harness.wallet()
        schedule_id = await _create(harness, wallet, T0, budget="20")
        for step in range(4):
            await schedule_pass(
                harness.engine, ANVIL_CHAIN_ID, now=T0 + timedelta(seconds=10 * step)
            )
            await _drain_all(harness)
        runs = await _runs(harness, schedule_id)
        assert [r.status for r in runs] == [
            RunStatus.SUCCEEDED,
            RunStatus.SUCCEEDED,
            RunStatus.SKIPPED,
        ]
        assert "budget" in (runs[-1].reason or "")
        row = await _schedule(harness, schedule_id)
        assert (row.status, row.spent, row.next_run_at) == (ScheduleStatus.COMPLETED, 14, None)

    async def test_a_budget_given_back_keeps_the_schedule_running(
        self, harness: EngineHarness
    ) -> None:
        """The audit's case: budget 7, value 7 to a contract that always reverts. The run fails
        at the estimate and its 7 are given back, so the schedule has not ended: it ends only
        when a run would exceed the budget (README)."""
        wallet = await harness.wallet()
        reverting = await deploy(harness.rpc, ALWAYS_REVERTS_INIT_CODE)
        action = {"type": "transaction", "to": reverting, "value": "7"}
        schedule_id = await _create(harness, wallet, T0, budget="7", action=action)
        assert await schedule_pass(harness.engine, ANVIL_CHAIN_ID, now=T0) == 1
        await _drain_all(harness)
        row = await _schedule(harness, schedule_id)
        assert (row.status, row.next_run_at) == (ScheduleStatus.ACTIVE, T0 + timedelta(seconds=10))
        # the next pass records run 1 failed (7 given back), then runs the next occurrence
        assert (
            await schedule_pass(harness.engine, ANVIL_CHAIN_ID, now=T0 + timedelta(seconds=10)) == 1
        )
        first, second = await _runs(harness, schedule_id)
        assert first.status is RunStatus.FAILED
        assert "estimate_reverted" in (first.reason or "")
        assert second.status is RunStatus.PENDING
        row = await _schedule(harness, schedule_id)
        assert (row.status, row.runs, row.spent) == (ScheduleStatus.ACTIVE, 2, 7)

    async def test_a_finished_run_not_yet_recorded_is_recorded_before_the_budget_check(
        self, harness: EngineHarness
    ) -> None:
        """The review's race: the run's transaction failed but no pass has recorded it yet
        when the next occurrence is due. The budget check (7 spent + 7 > 7) must not end the
        schedule before the refund, nor put the occurrence off to a later pass (one after the
        misfire grace recorded it missed): the failure is recorded first, then the occurrence
        runs, and a pass past the grace finds nothing missed."""
        wallet = await harness.wallet()
        reverting = await deploy(harness.rpc, ALWAYS_REVERTS_INIT_CODE)
        action = {"type": "transaction", "to": reverting, "value": "7"}
        schedule_id = await _create(
            harness, wallet, T0, budget="7", action=action, trigger={"interval_s": 3600}
        )
        assert await schedule_pass(harness.engine, ANVIL_CHAIN_ID, now=T0) == 1
        await _drain_all(harness)  # the transaction is failed, its run still pending
        due = T0 + timedelta(hours=1)
        async with unit_of_work(harness.sessionmaker) as session:  # a start with no finish
            result = await runner.start_due(
                session, ANVIL_CHAIN_ID, now=due, grace=timedelta(seconds=5)
            )
        assert [r.scheduled_for for r in result.started] == [due]
        first, second = await _runs(harness, schedule_id)
        assert (first.status, second.status) == (RunStatus.FAILED, RunStatus.PENDING)
        row = await _schedule(harness, schedule_id)
        assert (row.status, row.runs, row.spent) == (ScheduleStatus.ACTIVE, 2, 7)
        assert row.next_run_at == due + timedelta(hours=1)
        # the next pass, long past the grace, has no occurrence to call missed
        late = Engine.start(
            replace(harness.engine.ports, schedules=ScheduleConfig(misfire_grace_s=5))
        )
        assert await schedule_pass(late, ANVIL_CHAIN_ID, now=due + timedelta(seconds=30)) == 0
        assert [(r.scheduled_for, r.status) for r in await _runs(harness, schedule_id)] == [
            (T0, RunStatus.FAILED),
            (due, RunStatus.PENDING),
        ]

    async def test_a_confirmed_run_not_yet_recorded_ends_the_budget_at_once(
        self, harness: EngineHarness
    ) -> None:
        """Its outcome is recorded first, then the budget is judged in the same pass: spent
        exactly, the schedule ends at this occurrence (no pass waited for)."""
        wallet = await harness.wallet()
        schedule_id = await _create(harness, wallet, T0, budget="7")
        assert await schedule_pass(harness.engine, ANVIL_CHAIN_ID, now=T0) == 1
        await _drain_all(harness)  # confirmed, its run still pending
        due = T0 + timedelta(seconds=10)
        async with unit_of_work(harness.sessionmaker) as session:
            result = await runner.start_due(
                session, ANVIL_CHAIN_ID, now=due, grace=timedelta(seconds=60)
            )
        assert (result.started, [r.scheduled_for for r in result.recorded]) == ([], [due])
        first, second = await _runs(harness, schedule_id)
        assert first.status is RunStatus.SUCCEEDED
        assert (second.status, second.reason) == (RunStatus.SKIPPED, "budget reached: 7 of 7 spent")
        row = await _schedule(harness, schedule_id)
        assert (row.status, row.spent, row.next_run_at) == (ScheduleStatus.COMPLETED, 7, None)

    async def test_paused_runs_nothing_and_resumes_at_the_next_occurrence(
        self, harness: EngineHarness
    ) -> None:
        wallet = await harness.wallet()
        schedule_id = await _create(harness, wallet, T0)
        async with unit_of_work(harness.sessionmaker) as session:
            await service.set_status(session, schedule_id, ScheduleStatus.PAUSED, now=T0)
        await schedule_pass(harness.engine, ANVIL_CHAIN_ID, now=T0 + timedelta(seconds=25))
        assert await _runs(harness, schedule_id) == []
        async with unit_of_work(harness.sessionmaker) as session:
            row = await service.set_status(
                session, schedule_id, ScheduleStatus.ACTIVE, now=T0 + timedelta(seconds=25)
            )
            assert row.next_run_at == T0 + timedelta(seconds=30)


class TestValidUntil:
    """A `transaction` action's fixed valid_until (review: past it, the schedule stayed active
    and every run failed as expired)."""

    async def test_one_already_past_is_refused_when_start_at_is_past(
        self, harness: EngineHarness
    ) -> None:
        wallet = await harness.wallet()
        action = {"type": "transaction", "to": SINK, "value": "7"}
        with pytest.raises(InvalidSchedule, match="is not after the first run"):
            await _create(
                harness,
                wallet,
                T0,
                trigger={"cron": "0 * * * *"},
                start_at=(T0 - timedelta(hours=12)).isoformat(),
                action=action | {"valid_until": (T0 - timedelta(hours=1)).isoformat()},
            )

    async def test_the_runner_completes_the_schedule_at_valid_until(
        self, harness: EngineHarness
    ) -> None:
        wallet = await harness.wallet()
        until = T0 + timedelta(seconds=15)
        action = {"type": "transaction", "to": SINK, "value": "7"}
        schedule_id = await _create(
            harness, wallet, T0, action=action | {"valid_until": until.isoformat()}
        )
        await schedule_pass(harness.engine, ANVIL_CHAIN_ID, now=T0)
        await schedule_pass(harness.engine, ANVIL_CHAIN_ID, now=T0 + timedelta(seconds=20))
        first, *_missed, last = await _runs(harness, schedule_id)
        assert first.transaction_id is not None
        assert (last.status, last.transaction_id, last.reason) == (
            RunStatus.SKIPPED,
            None,
            f"action.valid_until {until.isoformat()} is not after this run: every run's "
            "request would expire; the schedule is completed",
        )
        row = await _schedule(harness, schedule_id)
        assert (row.status, row.next_run_at) == (ScheduleStatus.COMPLETED, None)

    async def test_a_resume_after_valid_until_is_refused(self, harness: EngineHarness) -> None:
        wallet = await harness.wallet()
        until = T0 + timedelta(seconds=15)
        action = {"type": "transaction", "to": SINK, "value": "7"}
        schedule_id = await _create(
            harness, wallet, T0, action=action | {"valid_until": until.isoformat()}
        )
        async with unit_of_work(harness.sessionmaker) as session:
            await service.set_status(session, schedule_id, ScheduleStatus.PAUSED, now=T0)
        later = T0 + timedelta(seconds=12)  # its next run would be at T0 + 20 s
        with pytest.raises(ScheduleActionExpired) as raised:
            async with unit_of_work(harness.sessionmaker) as session:
                await service.set_status(session, schedule_id, ScheduleStatus.ACTIVE, now=later)
        assert raised.value.detail == (
            f"schedule {schedule_id} cannot be resumed: its action.valid_until "
            f"{until.isoformat()} is not after its next run "
            f"{(T0 + timedelta(seconds=20)).isoformat()}; create a new schedule with a later "
            "valid_until"
        )
        assert (await _schedule(harness, schedule_id)).status is ScheduleStatus.PAUSED
