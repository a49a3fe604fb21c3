"""Lane drain: estimate, then assign nonces and sign under the lane lock, then broadcast.

Order of a round (DESIGN §6): gas is estimated and caps applied before any nonce is taken, so
a revert never burns a nonce; nonces, signed bytes and hashes are committed together before
the first send; sends go out in nonce order in one JSON-RPC batch.
"""

import asyncio
import uuid
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession

from chainflow.core.clock import utcnow
from chainflow.core.crashpoints import CrashPoint
from chainflow.core.logging import get_logger
from chainflow.domain.transactions import repository
from chainflow.domain.transactions.estimate import Estimate, estimate_gas
from chainflow.domain.transactions.fees import FeeCaps, Fees, clamp
from chainflow.domain.transactions.gas import chain_caps, market_fees
from chainflow.domain.transactions.lifecycle import apply
from chainflow.domain.transactions.models import AttemptKind, Transaction
from chainflow.domain.transactions.runtime import ChainConfig, Engine
from chainflow.domain.transactions.sending import SentAttempt, record_sends
from chainflow.domain.transactions.signing import sign_attempt
from chainflow.domain.transactions.state import TxEvent
from chainflow.domain.wallets.models import Wallet, WalletStatus
from chainflow.domain.wallets.service import claim_lane, get_wallet, lock_lane
from chainflow.infra.db.uow import unit_of_work

log = get_logger(__name__)


@dataclass(frozen=True)
class Planned:
    rows: list[Transaction]  # queued requests of the lane, in submission order (a snapshot)
    wallet: Wallet

    @property
    def tx_ids(self) -> list[uuid.UUID]:
        return [tx.id for tx in self.rows]


async def drain_lane(engine: Engine, chain: ChainConfig, wallet_id: uuid.UUID) -> int:
    """One round for one (wallet, chain) lane; returns how many requests were signed.

    A lane this process is already draining is skipped: the running drain or the next poll
    round takes what is new, and estimating the same requests twice would only waste a round
    trip (the lane lock in the database is what keeps other processes out of the nonces).
    """
    busy = engine.lane_locks.setdefault((wallet_id, chain.chain_id), asyncio.Lock())
    if busy.locked():
        return 0
    async with busy:
        return await _drain(engine, chain, wallet_id)


async def _drain(engine: Engine, chain: ChainConfig, wallet_id: uuid.UUID) -> int:
    rpc = engine.rpc[chain.chain_id]
    planned = await _plan(engine, chain, wallet_id)
    if planned is None:
        return 0
    estimates = await estimate_gas(engine, rpc, planned.rows)
    if not estimates:
        return 0
    market = await market_fees(engine, chain)
    pending = int(
        await rpc.call("eth_getTransactionCount", [planned.wallet.address, "pending"]), 16
    )
    sent = await _sign(engine, chain, planned.wallet, estimates, market, chain_pending=pending)
    if sent:
        engine.crasher.reached(CrashPoint.ATTEMPT_STORED)
        await record_sends(engine, chain, sent)
    return len(sent)


async def _plan(engine: Engine, chain: ChainConfig, wallet_id: uuid.UUID) -> Planned | None:
    async with unit_of_work(engine.sessionmaker) as session:
        lease_s = engine.config.lane_lease_s
        if not await claim_lane(
            session, wallet_id, chain.chain_id, owner=engine.owner, ttl_s=lease_s
        ):
            return None  # another process drains this lane now
        wallet = await get_wallet(session, wallet_id, lanes=False)
        if wallet.status is WalletStatus.DISABLED:
            await _fail_queued(session, chain, wallet)
            return None
        if wallet.status is not WalletStatus.ACTIVE:
            return None
        in_flight, blocked = await repository.lane_load(session, chain.chain_id, wallet.id)
        if blocked:  # an attempt waits for funds: later requests must not overtake it
            return None
        room = min(engine.config.max_in_flight_per_lane - in_flight, engine.config.batch_size)
        if room <= 0:
            return None
        rows = await repository.queued_for_lane(session, chain.chain_id, wallet.id, limit=room)
        live = [tx for tx in rows if not _expired(session, tx)]
        return Planned(live, wallet) if live else None


def _expired(session: AsyncSession, tx: Transaction) -> bool:
    if tx.valid_until is None or tx.valid_until > utcnow():
        return False
    apply(session, tx, TxEvent.EXPIRED, reason="valid_until passed before signing")
    return True


async def _fail_queued(session: AsyncSession, chain: ChainConfig, wallet: Wallet) -> None:
    rows = await repository.queued_for_lane(session, chain.chain_id, wallet.id, limit=1000)
    for tx in rows:
        tx.error_code, tx.error_message = "wallet_disabled", "the wallet was disabled"
        apply(session, tx, TxEvent.FAILED, code="wallet_disabled")


def _fees_for(tx: Transaction, market: Fees, chain: ChainConfig) -> Fees:
    """Market fees lowered to the chain's and the request's caps."""
    caps = chain_caps(chain).merged(
        FeeCaps(tx.max_fee_per_gas_cap, tx.max_priority_fee_per_gas_cap)
    )
    return clamp(market, caps)


async def _sign(
    engine: Engine,
    chain: ChainConfig,
    wallet: Wallet,
    estimates: Sequence[Estimate],
    market: Fees,
    *,
    chain_pending: int,
) -> list[SentAttempt]:
    signer = engine.signer(wallet)
    async with unit_of_work(engine.sessionmaker) as session:
        lane = await lock_lane(session, wallet.id, chain.chain_id)
        if chain_pending > lane.next_nonce:
            # The key was used outside Chainflow (DESIGN §6.7-8): never reuse those nonces.
            log.warning(
                "lane.fast_forwarded",
                wallet=wallet.address,
                chain_id=chain.chain_id,
                from_nonce=lane.next_nonce,
                to_nonce=chain_pending,
            )
            lane.next_nonce = chain_pending
        gas = {e.tx_id: e.gas_limit for e in estimates}
        rows = await repository.lock_queued(session, list(gas))
        sent: list[SentAttempt] = []
        for tx in rows:
            nonce = lane.next_nonce
            attempt = await sign_attempt(
                session,
                tx,
                signer=signer,
                chain=chain,
                nonce=nonce,
                gas_limit=gas[tx.id],
                fees=_fees_for(tx, market, chain),
                kind=AttemptKind.ORIGINAL,
            )
            tx.nonce, tx.gas_limit = nonce, gas[tx.id]
            apply(session, tx, TxEvent.SIGNED, nonce=nonce, hash=attempt.hash)
            lane.next_nonce = nonce + 1
            sent.append(SentAttempt(tx.id, attempt.id, attempt.raw, nonce))
        if sent:
            engine.crasher.reached(CrashPoint.NONCE_TAKEN)
        return sent
