"""Wallets of every signer backend (local, PKCS#11 on SoftHSM2, AWS KMS on LocalStack) on one
chain, through the real engine and anvil: every request confirms once with contiguous nonces,
and a token that goes away, or a KMS that stops answering, pauses only its wallet's lane,
which resumes with no nonce gap when the backend returns."""

import asyncio
import dataclasses
import shutil
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import AbstractContextManager, asynccontextmanager, contextmanager

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from chainflow.domain.transactions.attempts import PROBE_TASK
from chainflow.domain.transactions.state import TxStatus
from chainflow.domain.wallets import service as wallets
from chainflow.domain.wallets.binding import SignerRequest
from chainflow.domain.wallets.kinds import SignerKind
from chainflow.domain.wallets.models import Wallet
from chainflow.infra.db.uow import unit_of_work
from chainflow.infra.signing.aws_kms import AwsKms
from chainflow.infra.signing.keystore import MasterKey
from chainflow.infra.signing.pkcs11 import Pkcs11Token
from chainflow.workers.engine import Engine
from chainflow.workers.main import run_round
from tests.support.chains import ANVIL_CHAIN_ID
from tests.support.chaos import (
    check_a_gap_waits_for_its_filler,
    paused_reason,
)
from tests.support.engine import EngineHarness, has_status, open_engine_harness
from tests.support.localstack import LocalStack, kms_config
from tests.support.polling import eventually
from tests.support.softhsm import SoftHsm

PER_WALLET = 8


@pytest.fixture
def token(softhsm: SoftHsm) -> Iterator[Pkcs11Token]:
    token = Pkcs11Token(softhsm.config)
    yield token
    token.close()


@pytest.fixture
async def harness(
    sessionmaker: async_sessionmaker[AsyncSession],
    anvil_url: str,
    master_key: MasterKey,
    token: Pkcs11Token,
    kms: AwsKms,
) -> AsyncIterator[EngineHarness]:
    async with (
        open_engine_harness(sessionmaker, anvil_url, master_key) as value,
        with_signers(value, token, kms) as harness,
    ):
        yield harness


@pytest.fixture
async def fast_stuck_harness(
    fast_stuck_harness: EngineHarness, token: Pkcs11Token, kms: AwsKms
) -> AsyncIterator[EngineHarness]:
    """Stuck after 1 s (the conftest's), with these signers: for a bump while nothing mines."""
    async with with_signers(fast_stuck_harness, token, kms) as harness:
        yield harness


@asynccontextmanager
async def with_signers(
    harness: EngineHarness, token: Pkcs11Token, kms: AwsKms
) -> AsyncIterator[EngineHarness]:
    """`harness` on an engine that signs with the PKCS#11 token and KMS too."""
    ports = dataclasses.replace(harness.engine.ports, pkcs11=token, aws_kms=kms)
    engine = Engine.start(ports)
    yield dataclasses.replace(harness, engine=engine)
    await engine.stop()


@pytest.fixture
def kms(localstack: LocalStack) -> AwsKms:
    # A stopped LocalStack accepts connections and never answers: each call waits this long.
    return AwsKms(kms_config(localstack.url, timeout_s=1.0))


async def kms_wallet(harness: EngineHarness, kms: AwsKms) -> Wallet:
    return await remote_wallet(harness, SignerKind.AWS_KMS, aws_kms=kms)


async def hsm_wallet(harness: EngineHarness, token: Pkcs11Token) -> Wallet:
    return await remote_wallet(harness, SignerKind.PKCS11, pkcs11=token)


async def remote_wallet(
    harness: EngineHarness,
    kind: SignerKind,
    *,
    pkcs11: Pkcs11Token | None = None,
    aws_kms: AwsKms | None = None,
) -> Wallet:
    """A funded wallet on the test chain whose key is generated in the backend."""
    async with unit_of_work(harness.sessionmaker) as session:
        wallet = await wallets.bind_wallet(
            session,
            SignerRequest(kind=kind, generate=True),
            pkcs11=pkcs11,
            aws_kms=aws_kms,
            chain_ids=[ANVIL_CHAIN_ID],
        )
    await harness.rpc.call("anvil_setBalance", [wallet.address, hex(10**21)])
    return wallet


async def submit_many(harness: EngineHarness, wallet: Wallet, count: int) -> list[uuid.UUID]:
    return [await harness.submit(wallet, value=str(i + 1)) for i in range(count)]


async def confirmed_nonces(harness: EngineHarness, tx_ids: list[uuid.UUID]) -> list[int]:
    rows = await harness.run_until(tx_ids, has_status(TxStatus.CONFIRMED), timeout_s=60)
    return sorted(tx.nonce for tx in rows if tx.nonce is not None)


async def test_mixed_backends_confirm_every_request_once_with_contiguous_nonces(
    harness: EngineHarness, token: Pkcs11Token, kms: AwsKms
) -> None:
    mixed = [
        await harness.wallet(),
        await hsm_wallet(harness, token),
        await kms_wallet(harness, kms),
    ]
    submitted = [await submit_many(harness, wallet, PER_WALLET) for wallet in mixed]
    for wallet, tx_ids in zip(mixed, submitted, strict=True):
        assert await confirmed_nonces(harness, tx_ids) == list(range(PER_WALLET))
        assert await harness.chain_nonce(wallet) == PER_WALLET


async def check_an_outage_pauses_only_its_lane(
    harness: EngineHarness, remote: Wallet, outage: AbstractContextManager[None]
) -> None:
    """While `outage` holds, the remote wallet's new requests stay queued without a nonce
    while a local wallet's confirm; afterwards they confirm at the next nonces, no gap."""
    local = await harness.wallet()
    assert await confirmed_nonces(harness, await submit_many(harness, remote, 2)) == [0, 1]
    with outage:
        remote_ids = await submit_many(harness, remote, 3)
        local_ids = await submit_many(harness, local, 3)
        assert await confirmed_nonces(harness, local_ids) == [0, 1, 2]
        for _ in range(3):  # more rounds: the lane keeps waiting, nothing is signed
            await run_round(harness.engine, ANVIL_CHAIN_ID)
        waiting = [await harness.get(tx_id) for tx_id in remote_ids]
        assert [(tx.status, tx.nonce) for tx in waiting] == [(TxStatus.QUEUED, None)] * 3
        assert await paused_reason(harness, remote) == "signer_unavailable"
        assert await paused_reason(harness, local) is None
    assert await confirmed_nonces(harness, remote_ids) == [2, 3, 4]
    assert await paused_reason(harness, remote) is None

    async def chain_caught_up() -> bool:
        return await harness.chain_nonce(remote) == 5

    assert await eventually(chain_caught_up, timeout_s=10)


@contextmanager
def token_removed(softhsm: SoftHsm) -> Iterator[None]:
    away = softhsm.tokens.with_name("tokens.removed")
    shutil.move(softhsm.tokens, away)  # the token is gone for the running module
    try:
        yield
    finally:
        shutil.move(away, softhsm.tokens)


@contextmanager
def kms_stopped(localstack: LocalStack) -> Iterator[None]:
    localstack.pause()  # SIGSTOP: KMS calls time out (1 s) instead of answering
    try:
        yield
    finally:
        localstack.resume()


async def test_a_removed_token_pauses_only_its_lane_and_it_resumes_without_a_gap(
    harness: EngineHarness, token: Pkcs11Token, softhsm: SoftHsm
) -> None:
    hsm = await hsm_wallet(harness, token)
    await check_an_outage_pauses_only_its_lane(harness, hsm, token_removed(softhsm))


async def test_a_stopped_kms_pauses_only_its_lane_and_it_resumes_without_a_gap(
    harness: EngineHarness, kms: AwsKms, localstack: LocalStack
) -> None:
    remote = await kms_wallet(harness, kms)
    await check_an_outage_pauses_only_its_lane(harness, remote, kms_stopped(localstack))


async def test_a_nonce_gap_waits_for_a_stopped_kms_and_is_filled_when_it_returns(
    harness: EngineHarness, kms: AwsKms, localstack: LocalStack
) -> None:
    """A filler that KMS must sign: while it is stopped the lane shows signer_unavailable."""
    remote = await kms_wallet(harness, kms)
    await check_a_gap_waits_for_its_filler(
        harness, remote, kms_stopped(localstack), reason="signer_unavailable"
    )


async def test_a_bump_that_cannot_be_signed_shows_the_lane_paused_until_it_is(
    fast_stuck_harness: EngineHarness, token: Pkcs11Token, softhsm: SoftHsm
) -> None:
    """The tracker's bump path signs too: a stuck request whose bump meets a removed token
    sets the lane's paused_reason (it used to be set by drains only) and keeps its nonce;
    once the token is back the bump is signed, paused_reason clears and it confirms."""
    harness = fast_stuck_harness
    hsm = await hsm_wallet(harness, token)
    await harness.rpc.call("evm_setAutomine", [False])  # nothing is mined: the request sticks
    try:
        tx_id = await harness.submit(hsm, value="1")
        await harness.run_until([tx_id], has_status(TxStatus.SUBMITTED))
        with token_removed(softhsm):

            async def paused() -> bool:
                await run_round(harness.engine, ANVIL_CHAIN_ID)  # stuck after 1 s: a bump
                return await paused_reason(harness, hsm) == "signer_unavailable"

            assert await eventually(paused, timeout_s=30)
            waiting = await harness.get(tx_id)
            assert (waiting.status, waiting.nonce) == (TxStatus.SUBMITTED, 0)

        async def bumped() -> bool:
            await run_round(harness.engine, ANVIL_CHAIN_ID)
            return await paused_reason(harness, hsm) is None

        assert await eventually(bumped, timeout_s=30)
    finally:
        await harness.rpc.call("evm_setAutomine", [True])
    (done,) = await harness.run_until([tx_id], has_status(TxStatus.CONFIRMED), timeout_s=60)
    assert done.nonce == 0
    assert await harness.chain_nonce(hsm) == 1


async def test_a_stopped_kms_holds_up_no_round_while_its_lane_waits(
    harness: EngineHarness, localstack: LocalStack
) -> None:
    """Once a KMS lane waits (signer_unavailable), its backend is probed in the background:
    no round waits for KMS, so the local wallet drained beside it is never held up. (Before,
    each retry was a Sign call inside the signing transaction: a round waited its 3 s timeout
    every few seconds.)"""
    slow = AwsKms(kms_config(localstack.url, timeout_s=3.0))
    engine = Engine.start(dataclasses.replace(harness.engine.ports, aws_kms=slow))
    harness = dataclasses.replace(harness, engine=engine)
    remote, local = await kms_wallet(harness, slow), await harness.wallet()
    with kms_stopped(localstack):
        waiting = await submit_many(harness, remote, 1)

        async def paused() -> bool:
            await run_round(harness.engine, ANVIL_CHAIN_ID)  # the first Sign times out (3 s)
            return await paused_reason(harness, remote) == "signer_unavailable"

        assert await eventually(paused, timeout_s=30)
        rounds: list[float] = []
        loop = asyncio.get_running_loop()
        until = loop.time() + 7  # past the 2 s cool-off and the 5 s health cache, twice
        while loop.time() < until:
            await harness.submit(local, value="1")
            started = loop.time()
            await run_round(harness.engine, ANVIL_CHAIN_ID)
            rounds.append(loop.time() - started)
        assert max(rounds) < 1.5, rounds
        assert (await harness.get(waiting[0])).status is TxStatus.QUEUED
    assert await confirmed_nonces(harness, waiting) == [0]


async def test_stopping_the_engine_ends_its_background_probes(
    harness: EngineHarness, localstack: LocalStack
) -> None:
    """A lane waiting for KMS is probed in the background; stopping the engine cancels and
    awaits those probes: none outlives it (before, one could still be waiting on KMS, and
    ended as "Task was destroyed but it is pending" when the loop closed)."""
    slow = AwsKms(kms_config(localstack.url, timeout_s=3.0))
    engine = Engine.start(dataclasses.replace(harness.engine.ports, aws_kms=slow))
    harness = dataclasses.replace(harness, engine=engine)
    remote = await kms_wallet(harness, slow)
    with kms_stopped(localstack):
        await submit_many(harness, remote, 1)

        async def probing() -> list[asyncio.Task[object]]:
            await run_round(engine, ANVIL_CHAIN_ID)  # the first Sign times out (3 s)
            return [
                task
                for task in asyncio.all_tasks()
                if task.get_name().startswith(PROBE_TASK) and not task.done()
            ]

        probes = await eventually(probing, timeout_s=30)
        loop = asyncio.get_running_loop()
        started = loop.time()
        await engine.stop()
        assert loop.time() - started < 1  # cancelled, not waited for KMS's answer
        assert all(task.done() for task in probes)
