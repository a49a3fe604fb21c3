"""Lane placement between worker processes (workers/placement.py, issue 17), with two engines
on one PostgreSQL, their heartbeats in the real Redis and a real anvil: each round takes its
share of the chain's lanes, the tracker's holder leaves its lanes to the other worker, and
a lane left for a worker that never comes is still drained, soon, once and without gaps, and
a lane whose signer is down on one worker's host is drained by the other."""

import asyncio
import dataclasses
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import redis.asyncio as redis
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from chainflow.core.clock import utcnow
from chainflow.core.types import TxId, WalletId
from chainflow.domain.chains.models import Chain
from chainflow.domain.transactions.state import TxStatus
from chainflow.domain.wallets import service as wallet_service
from chainflow.domain.wallets.models import Wallet, WalletChain, WalletStatus
from chainflow.infra.db.uow import read_only, unit_of_work
from chainflow.infra.queue.roster import RedisRoster
from chainflow.infra.signing.keystore import MasterKey
from chainflow.infra.signing.pkcs11 import Pkcs11Token
from chainflow.workers.engine import Engine
from chainflow.workers.main import run_round
from chainflow.workers.placement import LEFT_FOR_S
from tests.integration.transactions.test_signer_backends import hsm_wallet
from tests.support.chains import ANVIL_CHAIN_ID
from tests.support.databases import REDIS_URL
from tests.support.engine import EngineHarness, open_engine_harness
from tests.support.polling import eventually
from tests.support.softhsm import SoftHsm

pytestmark = pytest.mark.parametrize("dialect", ["postgresql"], indirect=True)


@asynccontextmanager
async def rosters(engines: list[Engine], *, absent: str | None = None) -> AsyncIterator[None]:
    """The engines' heartbeats on their own prefix, running until each sees them all (and
    `absent`: a worker that beat once and died, as SIGKILL leaves it; long TTLs keep it
    listed for the whole test)."""
    prefix = f"t{uuid.uuid4().hex[:10]}"
    stop = asyncio.Event()
    live = [RedisRoster(REDIS_URL, owner=e.ports.owner, prefix=prefix, ttl_s=60) for e in engines]
    client = redis.Redis.from_url(REDIS_URL)
    if absent is not None:
        await client.zadd(f"{prefix}:workers:{ANVIL_CHAIN_ID}", {absent: time.time()})
    beats = [asyncio.create_task(r.beat(lambda: [ANVIL_CHAIN_ID], stop)) for r in live]
    expected = len(engines) + (absent is not None)

    async def all_seen() -> bool:
        return all(len(r.workers(ANVIL_CHAIN_ID)) == expected for r in live)

    try:
        await eventually(all_seen, timeout_s=10)
        for engine, roster in zip(engines, live, strict=True):
            engine.state.roster = roster.workers
        yield
    finally:
        stop.set()
        await asyncio.wait_for(asyncio.gather(*beats), timeout=10)
        for roster in live:
            await roster.close()
        await client.delete(f"{prefix}:workers:{ANVIL_CHAIN_ID}")
        await client.aclose()


@asynccontextmanager
async def two_workers(harness: EngineHarness, **ports: Any) -> AsyncIterator[tuple[Engine, Engine]]:
    """The harness's engine and a second worker process on the same database and chain (its
    own owner and state, and `ports` changed), each in the other's roster."""
    ports = {**ports, "owner": uuid.uuid4().hex}
    second = Engine.start(dataclasses.replace(harness.engine.ports, **ports))
    try:
        async with rosters([harness.engine, second]):
            yield harness.engine, second
    finally:
        await second.stop()


async def lane_holders(
    sessionmaker: async_sessionmaker[AsyncSession], wallets: list[Wallet]
) -> dict[WalletId, str | None]:
    """Each lane's live drain lease holder (None: free)."""
    async with read_only(sessionmaker) as session:
        rows = await session.execute(
            select(WalletChain.wallet_id, WalletChain.lease_owner, WalletChain.lease_expires_at)
            .where(WalletChain.chain_id == ANVIL_CHAIN_ID)
            .where(WalletChain.wallet_id.in_([w.id for w in wallets]))
        )
        now = utcnow()
        return {w: owner if until is not None and until > now else None for w, owner, until in rows}


async def submit_many(harness: EngineHarness, wallets: list[Wallet], per_wallet: int) -> list[TxId]:
    return [await harness.submit(w, value="1") for w in wallets for _ in range(per_wallet)]


async def assert_gapless(harness: EngineHarness, tx_ids: list[TxId], per_wallet: int) -> None:
    """Every request confirmed, each wallet's nonces 0..n-1 exactly once."""
    rows = [await harness.get(tx_id) for tx_id in tx_ids]
    assert {tx.status for tx in rows} == {TxStatus.CONFIRMED}
    by_wallet: dict[WalletId, list[int]] = {}
    for tx in rows:
        assert tx.nonce is not None
        by_wallet.setdefault(tx.wallet_id, []).append(tx.nonce)
    assert all(sorted(n) == list(range(per_wallet)) for n in by_wallet.values())


async def finish_both(
    harness: EngineHarness,
    other: Engine,
    tx_ids: list[TxId],
    per_wallet: int,
    *,
    timeout_s: float = 60,
) -> None:
    """Rounds of both workers at once until every request is final, then assert_gapless."""

    async def final() -> bool:
        await asyncio.gather(
            run_round(harness.engine, ANVIL_CHAIN_ID), run_round(other, ANVIL_CHAIN_ID)
        )
        rows = [await harness.get(tx_id) for tx_id in tx_ids]
        return all(tx.status is TxStatus.CONFIRMED for tx in rows)

    await eventually(final, timeout_s=timeout_s)
    await assert_gapless(harness, tx_ids, per_wallet)


@asynccontextmanager
async def eight_deep_lanes(
    sessionmaker: async_sessionmaker[AsyncSession], anvil_url: str, master_key: MasterKey
) -> AsyncIterator[tuple[EngineHarness, list[Wallet], list[TxId]]]:
    """A harness with 8 wallets of 100 queued each: 800 is worth spreading, and more than a
    round signs (64 a lane)."""
    async with open_engine_harness(sessionmaker, anvil_url, master_key) as harness:
        wallets = [await harness.wallet() for _ in range(8)]
        yield harness, wallets, await submit_many(harness, wallets, 100)


class TestPlacement:
    async def test_two_workers_split_the_lanes_then_the_tracker_holder_hands_its_over(
        self, sessionmaker: async_sessionmaker[AsyncSession], anvil_url: str, master_key: MasterKey
    ) -> None:
        async with (
            eight_deep_lanes(sessionmaker, anvil_url, master_key) as (
                harness,
                wallets,
                tx_ids,
            ),
            two_workers(harness) as (first, second),
        ):
            # Nobody tracks the chain yet: the lanes are shared by both
            await run_round(first, ANVIL_CHAIN_ID)  # its round takes the tracker lease too
            held = await lane_holders(sessionmaker, wallets)
            assert list(held.values()).count(first.ports.owner) == 4  # its share
            assert list(held.values()).count(None) == 4  # left to the other
            await run_round(second, ANVIL_CHAIN_ID)
            held = await lane_holders(sessionmaker, wallets)
            assert list(held.values()).count(second.ports.owner) == 4
            assert list(held.values()).count(first.ports.owner) == 4
            # Now the first tracks: it frees its lanes, and the second drains every lane
            await run_round(first, ANVIL_CHAIN_ID)
            held = await lane_holders(sessionmaker, wallets)
            assert first.ports.owner not in held.values()
            await run_round(second, ANVIL_CHAIN_ID)
            held = await lane_holders(sessionmaker, wallets)
            assert set(held.values()) == {second.ports.owner}
            await finish_both(harness, second, tx_ids, 100)

    async def test_the_tracker_holder_leaves_a_lone_lane_to_the_other_worker(
        self, sessionmaker: async_sessionmaker[AsyncSession], anvil_url: str, master_key: MasterKey
    ) -> None:
        async with open_engine_harness(sessionmaker, anvil_url, master_key) as harness:
            (wallet,) = wallets = [await harness.wallet()]
            async with two_workers(harness) as (first, second):
                await run_round(first, ANVIL_CHAIN_ID)  # nothing queued: it takes the tracker
                tx_ids = await submit_many(harness, wallets, 150)
                await run_round(first, ANVIL_CHAIN_ID)
                assert await lane_holders(sessionmaker, wallets) == {wallet.id: None}
                assert (await harness.get(tx_ids[0])).status is TxStatus.QUEUED
                await run_round(second, ANVIL_CHAIN_ID)
                assert await lane_holders(sessionmaker, wallets) == {wallet.id: second.ports.owner}
                async with read_only(sessionmaker) as session:
                    chain = await session.get(Chain, ANVIL_CHAIN_ID)
                    assert chain is not None
                    assert chain.tracker_owner == first.ports.owner
                await finish_both(harness, second, tx_ids, 150)

    async def test_a_lane_left_for_a_worker_that_never_comes_is_drained_soon(
        self, sessionmaker: async_sessionmaker[AsyncSession], anvil_url: str, master_key: MasterKey
    ) -> None:
        # The tracker's holder's share of one lane is none: only the liveness rule drains it
        # while the dead worker is still listed.
        async with open_engine_harness(sessionmaker, anvil_url, master_key) as harness:
            engine = harness.engine
            (wallet,) = wallets = [await harness.wallet()]
            async with rosters([engine], absent="killed-worker"):
                await run_round(engine, ANVIL_CHAIN_ID)  # nothing queued: it takes the tracker
                tx_ids = await submit_many(harness, wallets, 150)
                await run_round(engine, ANVIL_CHAIN_ID)
                left_at = time.monotonic()
                assert await lane_holders(sessionmaker, wallets) == {wallet.id: None}
                assert (await harness.get(tx_ids[-1])).status is TxStatus.QUEUED
                # Taken anyway after LEFT_FOR_S: its first request leaves `queued` a round
                # later (the time of the 150 confirmations is the machine's, not the rule's).
                await harness.run_until(tx_ids[:1], lambda tx: tx.status is not TxStatus.QUEUED)
                assert time.monotonic() - left_at < LEFT_FOR_S + 5
                await harness.run_until_final(tx_ids, timeout_s=30)
                assert len(engine.workers(ANVIL_CHAIN_ID)) == 2  # still listed all along
            await assert_gapless(harness, tx_ids, 150)


@asynccontextmanager
async def checked_in_apart(harness: EngineHarness) -> AsyncIterator[tuple[Engine, Engine]]:
    """Two workers whose heartbeats are a minute apart (ttl longer still), as run_engine wires
    them (roster and re-read), the first checked in before the second: the first's roster
    lists itself alone until it reads it again."""
    prefix = f"t{uuid.uuid4().hex[:10]}"
    first = harness.engine
    second = Engine.start(dataclasses.replace(first.ports, owner=uuid.uuid4().hex))
    live = [
        RedisRoster(
            REDIS_URL,
            owner=e.ports.owner,
            prefix=prefix,
            every_s=60,
            ttl_s=120,
            reread_s=0,
            reread_timeout_s=30,  # a slow CI host must not leave the first worker alone
        )
        for e in (first, second)
    ]
    try:
        for engine, roster in zip((first, second), live, strict=True):
            engine.state.roster, engine.state.reread = roster.workers, roster.reread
        assert await live[0].reread(ANVIL_CHAIN_ID) == (first.ports.owner,)
        yield first, second
    finally:
        client = redis.Redis.from_url(REDIS_URL)
        await client.delete(f"{prefix}:workers:{ANVIL_CHAIN_ID}")
        await client.aclose()
        for roster in live:
            await roster.close()
        await second.stop()


class TestJoining:
    """A worker that checks in after another gets lanes within one round of the other's
    (item 54: the roster is beaten once a second, and the tracker's holder drained a whole
    round of 2,048 while its roster still listed it alone)."""

    async def test_two_workers_started_together_split_the_first_round(
        self, sessionmaker: async_sessionmaker[AsyncSession], anvil_url: str, master_key: MasterKey
    ) -> None:
        async with (
            eight_deep_lanes(sessionmaker, anvil_url, master_key) as (
                harness,
                wallets,
                tx_ids,
            ),
            checked_in_apart(harness) as (first, second),
        ):
            await second.workers_now(ANVIL_CHAIN_ID)  # its check-in
            assert first.workers(ANVIL_CHAIN_ID) == (first.ports.owner,)  # not seen yet
            await run_round(first, ANVIL_CHAIN_ID)  # nobody tracks yet: shared by both
            held = await lane_holders(sessionmaker, wallets)
            assert list(held.values()).count(first.ports.owner) == 4
            await run_round(second, ANVIL_CHAIN_ID)
            held = await lane_holders(sessionmaker, wallets)
            assert list(held.values()).count(second.ports.owner) == 4
            await finish_both(harness, second, tx_ids, 100)

    async def test_a_worker_that_joins_while_another_drains_every_lane_gets_them(
        self, sessionmaker: async_sessionmaker[AsyncSession], anvil_url: str, master_key: MasterKey
    ) -> None:
        async with (
            eight_deep_lanes(sessionmaker, anvil_url, master_key) as (
                harness,
                wallets,
                tx_ids,
            ),
            checked_in_apart(harness) as (first, second),
        ):
            await run_round(first, ANVIL_CHAIN_ID)  # alone: every lane, and the tracker
            held = await lane_holders(sessionmaker, wallets)
            assert set(held.values()) == {first.ports.owner}
            await second.workers_now(ANVIL_CHAIN_ID)  # joins: its check-in
            await run_round(second, ANVIL_CHAIN_ID)  # every lane held by the first
            # One round of the first: it sees the second and, holding the tracker lease,
            # frees its lanes; the second's next round takes them all.
            await run_round(first, ANVIL_CHAIN_ID)
            await run_round(second, ANVIL_CHAIN_ID)
            held = await lane_holders(sessionmaker, wallets)
            assert set(held.values()) == {second.ports.owner}
            await finish_both(harness, second, tx_ids, 100)


@asynccontextmanager
async def tokens(softhsm: SoftHsm) -> AsyncIterator[tuple[Pkcs11Token, Pkcs11Token]]:
    """The test token, and the same module on a host where that token is not present (it
    answers every wallet of the token: SignerUnavailable)."""
    here = Pkcs11Token(softhsm.config)
    away = Pkcs11Token(dataclasses.replace(softhsm.config, token_label="not-on-this-host"))
    try:
        yield here, away
    finally:
        away.close()
        here.close()


@asynccontextmanager
async def first_without_token(
    sessionmaker: async_sessionmaker[AsyncSession],
    anvil_url: str,
    master_key: MasterKey,
    softhsm: SoftHsm,
) -> AsyncIterator[tuple[EngineHarness, Pkcs11Token, Pkcs11Token]]:
    """A harness whose engine (the first worker) runs on a host with the token's module but
    not the token, the token, and that module without it (for a second worker)."""
    async with (
        tokens(softhsm) as (token, away),
        open_engine_harness(sessionmaker, anvil_url, master_key) as plain,
    ):
        first = Engine.start(dataclasses.replace(plain.engine.ports, pkcs11=away))
        try:
            yield dataclasses.replace(plain, engine=first), token, away
        finally:
            await first.stop()


class TestSignerDownOnOneWorker:
    # 150 requests: worth placing, and the tracker's holder (the second) leaves the lane to
    # the first; 5: too few to place, each round takes every lane and the first got it first.
    @pytest.mark.parametrize("requests", [150, 5])
    async def test_the_lane_goes_to_the_worker_that_can_sign_it(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        anvil_url: str,
        master_key: MasterKey,
        softhsm: SoftHsm,
        requests: int,
    ) -> None:
        async with first_without_token(sessionmaker, anvil_url, master_key, softhsm) as (
            harness,
            token,
            _,
        ):
            first = harness.engine
            wallets = [await hsm_wallet(harness, token)]
            async with two_workers(harness, pkcs11=token) as (_, second):
                await run_round(second, ANVIL_CHAIN_ID)  # nothing queued: it takes the tracker
                tx_ids = await submit_many(harness, wallets, requests)
                await run_round(first, ANVIL_CHAIN_ID)  # takes the lane, cannot sign it
                assert await lane_holders(sessionmaker, wallets) == {
                    wallets[0].id: first.ports.owner
                }
                assert first.state.signers.is_down(wallets[0].id)
                await finish_both(harness, second, tx_ids, requests, timeout_s=30)
                assert first.state.signers.is_down(wallets[0].id)  # it never signed one

    async def test_a_lane_down_on_every_worker_stays_free_yet_expires_and_fails(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        anvil_url: str,
        master_key: MasterKey,
        softhsm: SoftHsm,
    ) -> None:
        # Nobody takes the lanes nor signs, yet what needs no signature still happens: a
        # request past its valid_until expires, and a wallet disabled during the outage (its
        # key deleted) has its queued requests failed, not left queued until a signer is back.
        async with first_without_token(sessionmaker, anvil_url, master_key, softhsm) as (
            harness,
            token,
            away,
        ):
            first = harness.engine
            wallets = [await hsm_wallet(harness, token) for _ in range(2)]
            (down, disabled) = wallets
            async with two_workers(harness, pkcs11=away) as (_, second):
                both = (first, second)
                tx_ids = await submit_many(harness, [down], 5)
                soon = await harness.submit(down, value="1", valid_until=in_s(3))
                orphan = await harness.submit(disabled, value="1")
                for _ in range(2):  # each tries once (the lane's first holder), then frees it
                    for engine in both:
                        await run_round(engine, ANVIL_CHAIN_ID)
                assert all(e.state.signers.is_down(down.id) for e in both)
                # no drain work: each loop idles as with none, not a round every poll_s
                rounds = [await run_round(e, ANVIL_CHAIN_ID) for e in both]
                assert all(done.empty for done in rounds)
                for _ in range(10):  # nobody takes the lanes again
                    await asyncio.gather(*(run_round(e, ANVIL_CHAIN_ID) for e in both))
                    assert set((await lane_holders(sessionmaker, wallets)).values()) == {None}
                async with unit_of_work(sessionmaker) as session:
                    loaded = await wallet_service.get_wallet(session, disabled.id)
                    changes: dict[str, object] = {"status": WalletStatus.DISABLED}
                    await wallet_service.update_wallet(
                        session, loaded, changes=changes, is_admin=True
                    )

                async def settled() -> bool:
                    await asyncio.gather(*(run_round(e, ANVIL_CHAIN_ID) for e in both))
                    rows = [await harness.get(tx_id) for tx_id in (soon, orphan)]
                    return [(tx.status, tx.error_code) for tx in rows] == [
                        (TxStatus.EXPIRED, None),
                        (TxStatus.FAILED, "wallet_disabled"),
                    ]

                await eventually(settled, timeout_s=20, interval_s=0.2)
                assert set((await lane_holders(sessionmaker, wallets)).values()) == {None}
                rows = [await harness.get(tx_id) for tx_id in tx_ids]
                assert [(tx.status, tx.nonce) for tx in rows] == [(TxStatus.QUEUED, None)] * 5


def in_s(seconds: float) -> str:
    return (datetime.now(UTC) + timedelta(seconds=seconds)).isoformat()
