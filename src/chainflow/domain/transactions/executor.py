"""Lane drains: estimate, then assign nonces and sign under the lane locks, then broadcast.

Order of a round (DESIGN §6): gas is estimated and caps applied before any nonce is taken, so
a revert never burns a nonce; nonces, signed bytes and hashes are committed together before
the first send; sends go out in nonce order in one JSON-RPC batch.
"""

import uuid
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession

from chainflow.core.clock import utcnow
from chainflow.core.crashpoints import CrashPoint
from chainflow.core.logging import get_logger
from chainflow.core.types import Nonce
from chainflow.domain.transactions import bulk, repository
from chainflow.domain.transactions.config import ChainConfig
from chainflow.domain.transactions.counts import nonce_counts
from chainflow.domain.transactions.estimate import Estimate, estimate_gas
from chainflow.domain.transactions.fee_floor import expire_priced_out, floor_of
from chainflow.domain.transactions.fees import FeeCaps, FeeFloor, Fees, clamp
from chainflow.domain.transactions.gas import chain_caps, market
from chainflow.domain.transactions.models import AttemptKind, Transaction
from chainflow.domain.transactions.rows import signed_update
from chainflow.domain.transactions.runtime import ChainRpc, Engine
from chainflow.domain.transactions.sending import SentAttempt, record_sends
from chainflow.domain.transactions.signing import signed_attempt
from chainflow.domain.transactions.state import TxEvent
from chainflow.domain.transactions.transitions import apply, step
from chainflow.domain.wallets.models import Wallet, WalletChain, WalletStatus
from chainflow.domain.wallets.service import addresses_of, claim_lanes, get_wallets, lock_lanes
from chainflow.infra.db.uow import unit_of_work
from chainflow.infra.rpc.client import RpcTransportError

log = get_logger(__name__)


@dataclass(frozen=True)
class Planned:
    rows: list[Transaction]  # queued requests of the lane, in submission order (a snapshot)
    wallet: Wallet


@dataclass(frozen=True)
class Counts:
    """A lane's transaction counts on the node: mined (`latest`) and with its pool (`pending`)."""

    mined: int
    pending: int


@dataclass(frozen=True)
class Ready:
    """A lane cleared for signing: its estimated prefix and the node's counts."""

    wallet: Wallet
    estimates: list[Estimate]
    counts: Counts


async def drain_lane(engine: Engine, chain: ChainConfig, wallet_id: uuid.UUID) -> int:
    """One round for one (wallet, chain) lane; returns how many requests were signed."""
    return await drain_lanes(engine, chain, [wallet_id])


async def drain_lanes(engine: Engine, chain: ChainConfig, wallet_ids: Sequence[uuid.UUID]) -> int:
    """One round for these lanes of one chain, batched: one planning read, one estimate batch,
    one signing transaction, one send batch and one record for all of them (the fixed cost
    of a round no longer grows with the number of wallets). Returns how many were signed.

    A lane this process is already draining is skipped: the running drain or the next round
    takes what is new, and estimating the same requests twice would only waste a round trip
    (the lane lock in the database is what keeps other processes out of the nonces).
    """
    lanes = [(w, chain.chain_id) for w in dict.fromkeys(wallet_ids)]
    mine = [lane for lane in lanes if lane not in engine.draining]
    if not mine:
        return 0
    engine.draining.update(mine)
    try:
        return await _drain(engine, chain, [wallet_id for wallet_id, _ in mine])
    finally:
        engine.draining.difference_update(mine)


async def _drain(engine: Engine, chain: ChainConfig, wallet_ids: list[uuid.UUID]) -> int:
    rpc = engine.rpc[chain.chain_id]
    counts = await _chain_counts(engine, rpc, wallet_ids)
    if not counts:
        return 0
    now = await market(engine, chain)
    plans = await _plan(engine, chain, counts, base_fee_wei=now.base_fee_wei)
    if not plans:
        return 0
    estimates = await estimate_gas(engine, rpc, [plan.rows for plan in plans])
    ready = [
        Ready(plan.wallet, found, counts[plan.wallet.id])
        for plan, found in zip(plans, estimates, strict=True)
        if found
    ]
    if not ready:
        return 0
    sent = await _sign(engine, chain, ready, now.fees)
    if sent:
        engine.crasher.reached(CrashPoint.ATTEMPT_STORED)
        await record_sends(engine, chain, sent)
        engine.signal_others(chain.chain_id)
    return len(sent)


async def _chain_counts(
    engine: Engine, rpc: ChainRpc, wallet_ids: list[uuid.UUID]
) -> dict[uuid.UUID, Counts]:
    """Each lane's counts on the node, read before planning so that a lane's room is what the
    chain has mined, not what the tracker has recorded yet; a lane whose count failed is
    absent (it waits for the next round)."""
    unknown = [wallet_id for wallet_id in wallet_ids if wallet_id not in engine.addresses]
    if unknown:
        async with unit_of_work(engine.sessionmaker) as session:
            engine.addresses.update(await addresses_of(session, unknown))
    addresses = {w: engine.addresses[w] for w in wallet_ids if w in engine.addresses}
    try:
        mined, pending = await nonce_counts(rpc, list(addresses.values()))
    except RpcTransportError:
        return {}  # the node is unreachable: the lanes wait, as when estimating
    return {
        wallet_id: Counts(mined[address], pending[address])
        for wallet_id, address in addresses.items()
        if address in mined and address in pending
    }


def _room(engine: Engine, next_nonce: int, counts: Counts) -> int:
    """How many more the lane may sign now: `max_in_flight_per_lane` counts the nonces taken
    and not yet mined (as thirdweb's engine-core counts its in-flight budget), so a window
    reopens as soon as the chain mines it, not when the tracker has written the receipts."""
    unmined = max(0, next_nonce - counts.mined)
    return min(engine.config.max_in_flight_per_lane - unmined, engine.config.batch_size)


async def _plan(
    engine: Engine,
    chain: ChainConfig,
    counts: dict[uuid.UUID, Counts],
    *,
    base_fee_wei: int | None = None,
) -> list[Planned]:
    """The lanes this process may drain now, each with the queued requests it can sign.

    A request whose fee cap cannot pay the next block's base fee `base_fee_wei` is left
    queued, unsigned, and later requests of its lane go ahead of it (issue 14): signed, it
    would hold its nonce, and every later nonce of the wallet, until the base fee fell.
    """
    if not counts:
        return []
    async with unit_of_work(engine.sessionmaker) as session:
        held = await claim_lanes(
            session,
            list(counts),
            chain.chain_id,
            owner=engine.owner,
            ttl_s=engine.config.lane_lease_s,
        )  # lanes another process holds are its to drain
        if not held:
            return []
        floor = floor_of(chain, base_fee_wei)
        await expire_priced_out(session, chain, sorted(held), floor)
        if floor is not None and not floor.chain_pays:
            return []  # the chain's own cap cannot pay the base fee: every request waits
        wallets = await get_wallets(session, sorted(held))
        blocked = await repository.waiting_for_funds(session, chain.chain_id, sorted(held))
        plans: list[Planned] = []
        for wallet_id in sorted(held):
            wallet = wallets.get(wallet_id)
            if wallet is None:
                continue
            if wallet.status is WalletStatus.DISABLED:
                await _fail_queued(session, chain, wallet)
                continue
            if wallet.status is not WalletStatus.ACTIVE or wallet_id in blocked:
                continue  # blocked: an attempt waits for funds, later ones must not overtake
            room = _room(engine, held[wallet_id], counts[wallet_id])
            live = await _signable(session, chain, wallet_id, room=room, floor=floor)
            if live:
                plans.append(Planned(live, wallet))
        return plans


async def _signable(
    session: AsyncSession,
    chain: ChainConfig,
    wallet_id: uuid.UUID,
    *,
    room: int,
    floor: FeeFloor | None,
) -> list[Transaction]:
    """The lane's first `room` queued requests that can be signed now: not expired, and with
    a fee cap that pays the fee floor."""
    if room <= 0:
        return []
    rows = await repository.queued_for_lane(
        session,
        chain.chain_id,
        wallet_id,
        limit=room,
        min_fee_cap_wei=floor.base_fee_wei if floor is not None else None,
    )
    return [tx for tx in rows if not _expired(session, tx)]


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
    engine: Engine, chain: ChainConfig, lanes: Sequence[Ready], market: Fees
) -> list[SentAttempt]:
    """Take nonces and sign, every lane in one transaction holding its lane locks; the
    result is ordered by wallet, then nonce (the order the sends must go in)."""
    async with unit_of_work(engine.sessionmaker) as session:
        locked = await lock_lanes(session, [ready.wallet.id for ready in lanes], chain.chain_id)
        gas = {e.tx_id: e.gas_limit for ready in lanes for e in ready.estimates}
        queued: dict[uuid.UUID, list[Transaction]] = {}
        for tx in await repository.lock_queued(session, list(gas)):
            queued.setdefault(tx.wallet_id, []).append(tx)
        sent: list[SentAttempt] = []
        writes = bulk.SignWrites()
        for ready in sorted(lanes, key=lambda r: r.wallet.id):
            lane = locked.get(ready.wallet.id)
            if lane is None:
                continue  # the lane was removed since the plan
            _fast_forward(lane, ready)
            signer = engine.signer(ready.wallet)
            room = _room(engine, lane.next_nonce, ready.counts)
            for tx in queued.get(ready.wallet.id, [])[: max(room, 0)]:
                nonce = Nonce(lane.next_nonce)
                attempt = await signed_attempt(
                    tx,
                    signer=signer,
                    chain=chain,
                    nonce=nonce,
                    gas_limit=gas[tx.id],
                    fees=_fees_for(tx, market, chain),
                    kind=AttemptKind.ORIGINAL,
                )
                moved = step(tx.id, tx.status, TxEvent.SIGNED, nonce=nonce, hash=attempt["hash"])
                writes.attempts.append(attempt)
                writes.transitions.append(moved)
                writes.signed.append(signed_update(moved, nonce=nonce, gas_limit=gas[tx.id]))
                lane.next_nonce = nonce + 1
                sent.append(
                    SentAttempt(tx.id, attempt["id"], attempt["raw"], nonce, attempt["hash"])
                )
        # The ORM rows of these requests are left as read; nothing reads them after this.
        await bulk.store_signed(session, writes)
        if sent:
            engine.crasher.reached(CrashPoint.NONCE_TAKEN)
        return sent


def _fast_forward(lane: WalletChain, ready: Ready) -> None:
    if ready.counts.pending > lane.next_nonce:
        # The key was used outside Chainflow (DESIGN §6.7-8): never reuse those nonces.
        log.warning(
            "lane.fast_forwarded",
            wallet=ready.wallet.address,
            chain_id=lane.chain_id,
            from_nonce=lane.next_nonce,
            to_nonce=ready.counts.pending,
        )
        lane.next_nonce = ready.counts.pending
