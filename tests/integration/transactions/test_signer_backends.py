"""Wallets of two signer backends (local, PKCS#11 on SoftHSM2) on one chain, through the real
engine and anvil: every request confirms once with contiguous nonces, and a token that goes
away pauses only its wallet's lane, which resumes with no nonce gap when the token returns."""

import dataclasses
import shutil
import uuid
from collections.abc import AsyncIterator, Iterator

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from chainflow.domain.transactions.state import TxStatus
from chainflow.domain.wallets import service as wallets
from chainflow.domain.wallets.binding import SignerRequest
from chainflow.domain.wallets.models import SignerKind, Wallet
from chainflow.infra.db.uow import unit_of_work
from chainflow.infra.signing.keystore import MasterKey
from chainflow.infra.signing.pkcs11 import Pkcs11Token
from chainflow.workers.engine import Engine
from chainflow.workers.main import run_round
from tests.support.chains import ANVIL_CHAIN_ID
from tests.support.engine import EngineHarness, has_status, open_engine_harness
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
) -> AsyncIterator[EngineHarness]:
    async with open_engine_harness(sessionmaker, anvil_url, master_key) as value:
        ports = dataclasses.replace(value.engine.ports, pkcs11=token)
        yield dataclasses.replace(value, engine=Engine.start(ports))


async def hsm_wallet(harness: EngineHarness, token: Pkcs11Token) -> Wallet:
    async with unit_of_work(harness.sessionmaker) as session:
        wallet = await wallets.bind_wallet(
            session,
            SignerRequest(kind=SignerKind.PKCS11, generate=True),
            pkcs11=token,
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
    harness: EngineHarness, token: Pkcs11Token
) -> None:
    local, hsm = await harness.wallet(), await hsm_wallet(harness, token)
    local_ids = await submit_many(harness, local, PER_WALLET)
    hsm_ids = await submit_many(harness, hsm, PER_WALLET)
    assert await confirmed_nonces(harness, local_ids) == list(range(PER_WALLET))
    assert await confirmed_nonces(harness, hsm_ids) == list(range(PER_WALLET))
    assert await harness.chain_nonce(local) == PER_WALLET
    assert await harness.chain_nonce(hsm) == PER_WALLET


async def test_a_removed_token_pauses_only_its_lane_and_it_resumes_without_a_gap(
    harness: EngineHarness, token: Pkcs11Token, softhsm: SoftHsm
) -> None:
    local, hsm = await harness.wallet(), await hsm_wallet(harness, token)
    assert await confirmed_nonces(harness, await submit_many(harness, hsm, 2)) == [0, 1]
    away = softhsm.tokens.with_name("tokens.removed")
    shutil.move(softhsm.tokens, away)  # the token is gone for the running module
    try:
        hsm_ids = await submit_many(harness, hsm, 3)
        local_ids = await submit_many(harness, local, 3)
        assert await confirmed_nonces(harness, local_ids) == [0, 1, 2]
        for _ in range(5):  # more rounds: the lane keeps waiting, nothing is signed
            await run_round(harness.engine, ANVIL_CHAIN_ID)
        waiting = [await harness.get(tx_id) for tx_id in hsm_ids]
        assert [(tx.status, tx.nonce) for tx in waiting] == [(TxStatus.QUEUED, None)] * 3
    finally:
        shutil.move(away, softhsm.tokens)
    assert await confirmed_nonces(harness, hsm_ids) == [2, 3, 4]

    async def chain_caught_up() -> bool:
        return await harness.chain_nonce(hsm) == 5

    assert await eventually(chain_caught_up, timeout_s=10)
