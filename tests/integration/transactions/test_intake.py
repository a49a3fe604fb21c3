"""Storing a submission: one statement per write, idempotency races, on both databases."""

import asyncio
import dataclasses
import uuid

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from chainflow.core.types import TxId
from chainflow.domain.transactions import service
from chainflow.domain.transactions.models import Transaction, TxEventRow
from chainflow.domain.transactions.repository import intake
from chainflow.domain.transactions.schemas import TxCreate
from chainflow.domain.wallets.models import Wallet
from chainflow.infra.db.uow import single_statements, unit_of_work
from tests.support.chains import ANVIL_CHAIN_ID
from tests.support.engine import SINK, EngineHarness
from tests.support.polling import eventually

API_KEY = uuid.uuid4()  # the column has no foreign key; any id scopes the idempotency key


def _engine(sessionmaker: async_sessionmaker[AsyncSession]) -> AsyncEngine:
    engine = sessionmaker.kw["bind"]
    assert isinstance(engine, AsyncEngine)
    return engine


def _body(wallet: Wallet, value: str = "1") -> TxCreate:
    return TxCreate.model_validate(
        {"chain_id": ANVIL_CHAIN_ID, "wallet": str(wallet.id), "to": SINK, "value": value}
    )


async def _counts(sessionmaker: async_sessionmaker[AsyncSession]) -> tuple[int, int]:
    async with unit_of_work(sessionmaker) as session:
        rows = await session.scalar(select(func.count()).select_from(Transaction))
        events = await session.scalar(select(func.count()).select_from(TxEventRow))
    return rows or 0, events or 0


async def _submit(
    sessionmaker: async_sessionmaker[AsyncSession], body: TxCreate, key: str
) -> service.Submitted:
    async with single_statements(_engine(sessionmaker)) as db:
        return await service.submit(db, body, api_key_id=API_KEY, idempotency_key=key)


class TestInsertRequest:
    async def test_a_taken_key_stores_nothing_and_says_so(self, harness: EngineHarness) -> None:
        wallet = await harness.wallet()
        first = await _submit(harness.sessionmaker, _body(wallet), "k-1")
        assert isinstance(first, service.Created)
        # The same key under a new id, as a racing request would store it.
        again = dataclasses.replace(first.request, id=TxId(uuid.uuid4()), request_hash="other")
        async with single_statements(_engine(harness.sessionmaker)) as db:
            assert await intake.insert_request(db, again) is False
        assert await _counts(harness.sessionmaker) == (1, 1)


class TestSingleStatements:
    @pytest.mark.parametrize("dialect", ["postgresql"], indirect=True)
    async def test_each_statement_commits_on_its_own_on_postgresql(
        self, harness: EngineHarness
    ) -> None:
        wallet = await harness.wallet()
        async with single_statements(_engine(harness.sessionmaker)) as db:
            result = await service.submit(
                db, _body(wallet), api_key_id=API_KEY, idempotency_key=None
            )
            assert isinstance(result, service.Created)
            # Visible to everyone before the block ends: nothing is left to commit.
            assert await _counts(harness.sessionmaker) == (1, 1)

    @pytest.mark.parametrize("dialect", ["sqlite"], indirect=True)
    async def test_is_one_transaction_on_sqlite(self, harness: EngineHarness) -> None:
        wallet = await harness.wallet()
        with pytest.raises(RuntimeError):
            async with single_statements(_engine(harness.sessionmaker)) as db:
                await service.submit(db, _body(wallet), api_key_id=API_KEY, idempotency_key=None)
                raise RuntimeError("after the insert")
        assert await _counts(harness.sessionmaker) == (0, 0)


class TestIdempotencyRace:
    @pytest.mark.parametrize("dialect", ["postgresql"], indirect=True)
    async def test_the_loser_of_a_key_race_replays_the_winner(self, harness: EngineHarness) -> None:
        """The winner's insert is not committed when the loser checks the key, so the loser
        passes its check, waits on the unique index, then finds the winner's row."""
        wallet = await harness.wallet()
        body = _body(wallet)
        async with harness.sessionmaker() as winner, winner.begin():
            won = await service.submit(winner, body, api_key_id=API_KEY, idempotency_key="race")
            assert isinstance(won, service.Created)
            loser = asyncio.create_task(_submit(harness.sessionmaker, body, "race"))

            async def loser_waits_on_the_winner() -> bool:
                async with unit_of_work(harness.sessionmaker) as session:
                    waiting = await session.scalar(
                        text(
                            "SELECT count(*) FROM pg_stat_activity "
                            "WHERE wait_event_type = 'Lock' AND query LIKE '%new_tx%'"
                        )
                    )
                return bool(waiting)

            await eventually(loser_waits_on_the_winner)
            assert not loser.done()
        lost = await asyncio.wait_for(loser, timeout=10)
        assert isinstance(lost, service.Replayed)
        assert lost.earlier.id == won.request.id
        assert await _counts(harness.sessionmaker) == (1, 1)
