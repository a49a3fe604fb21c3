"""The engine's invariants, read from the database and the chain after a test has run."""

from collections import defaultdict
from collections.abc import Collection, Mapping, Sequence

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import selectinload

from chainflow.domain.chains.models import Chain
from chainflow.domain.transactions.models import AttemptKind, Transaction, TxAttempt, TxEventRow
from chainflow.domain.transactions.state import TxStatus, is_terminal
from chainflow.infra.db.uow import unit_of_work
from chainflow.infra.rpc.client import RpcClient

# Progress order of the statuses; the log may only step back where DESIGN §5 allows it.
_RANK = {
    TxStatus.QUEUED: 0,
    TxStatus.SIGNED: 1,
    TxStatus.SUBMITTED: 2,
    TxStatus.MINED: 3,
}
_BACKWARD_ALLOWED = {
    (TxStatus.MINED, TxStatus.SUBMITTED),  # a reorg took the receipt away
    (TxStatus.SIGNED, TxStatus.QUEUED),  # a nonce released by a request no node saw
}


async def load_requests(sessionmaker: async_sessionmaker[AsyncSession]) -> Sequence[Transaction]:
    async with unit_of_work(sessionmaker) as session:
        query = select(Transaction).options(
            selectinload(Transaction.attempts), selectinload(Transaction.events)
        )
        return (await session.scalars(query)).all()


async def orphan_violations(sessionmaker: async_sessionmaker[AsyncSession]) -> list[str]:
    """tx_events and tx_attempts rows whose request is not there: no foreign key checks it
    since migration 0014 (docs/performance.md item 45), so the writers must."""
    found = []
    async with unit_of_work(sessionmaker) as session:
        for model in (TxEventRow, TxAttempt):
            known = select(Transaction.id).where(Transaction.id == model.tx_id).exists()
            orphans = await session.scalar(select(func.count()).select_from(model).where(~known))
            if orphans:
                found.append(f"{orphans} {model.__tablename__} rows without their request")
    return found


async def _caps(sessionmaker: async_sessionmaker[AsyncSession]) -> dict[int, int | None]:
    async with unit_of_work(sessionmaker) as session:
        return {c.chain_id: c.max_fee_per_gas_cap for c in await session.scalars(select(Chain))}


def event_log_violations(tx: Transaction) -> list[str]:
    """The log is one unbroken walk through the state machine that only moves forward,
    except a reorg (mined → submitted) and a released nonce (signed → queued)."""
    found: list[str] = []
    events = sorted(tx.events, key=lambda event: event.id)
    previous: str | None = None
    for event in events:
        if event.from_status != previous:
            found.append(f"{tx.id}: event {event.from_status}->{event.to_status} after {previous}")
        if event.from_status is not None:
            before, after = TxStatus(event.from_status), TxStatus(event.to_status)
            rank_before, rank_after = _RANK.get(before, 9), _RANK.get(after, 9)
            if rank_after < rank_before and (before, after) not in _BACKWARD_ALLOWED:
                found.append(f"{tx.id}: moved back {before}->{after}")
        previous = event.to_status
    if previous != tx.status.value:
        found.append(f"{tx.id}: status {tx.status} but the log ends at {previous}")
    return found


def fee_cap_violations(tx: Transaction, chain_cap: int | None) -> list[str]:
    """No attempt was signed above the chain's fee cap, nor, unless it is a cancel (a 0-value
    self-transfer, bound by the chain's cap only: issue 14), above the request's caps."""
    found = []
    for attempt in tx.attempts:
        cancel = attempt.kind is AttemptKind.CANCEL
        caps = [c for c in (chain_cap, None if cancel else tx.max_fee_per_gas_cap) if c is not None]
        tip_cap = None if cancel else tx.max_priority_fee_per_gas_cap
        fee = attempt.max_fee_per_gas_wei or attempt.gas_price_wei or 0
        if caps and fee > min(caps):
            found.append(f"{tx.id}: attempt {attempt.hash} fee {fee} above cap {min(caps)}")
        tip = attempt.max_priority_fee_per_gas_wei or 0
        if tip_cap is not None and tip > tip_cap:
            found.append(f"{tx.id}: attempt {attempt.hash} tip {tip} above cap {tip_cap}")
    return found


async def violations(
    sessionmaker: async_sessionmaker[AsyncSession],
    rpc: RpcClient,
    *,
    foreign_nonces: Mapping[str, Collection[int]] | None = None,
) -> list[str]:
    """Every broken invariant, as one line each; empty when all hold:

    - every request (fillers and cancels included) is terminal;
    - a request that executed (confirmed, reverted, or cancelled by a self-transfer that won)
      has exactly one attempt with a receipt, and it is the recorded final hash; any other
      request has none;
    - per wallet, the nonces that executed, ours plus `foreign_nonces` (sent outside
      Chainflow by the test), are exactly 0..n-1 where n is the chain's count: no gap,
      nothing executed twice;
    - no attempt was signed above a fee cap;
    - each request's event log moves only forward, except reorg and released-nonce steps;
    - every tx_events and tx_attempts row has its request.
    """
    rows = await load_requests(sessionmaker)
    caps = await _caps(sessionmaker)
    found: list[str] = await orphan_violations(sessionmaker)
    by_wallet: dict[str, list[int]] = defaultdict(list)
    for address, nonces in (foreign_nonces or {}).items():
        by_wallet[address] += nonces
    attempts = [attempt for tx in rows for attempt in tx.attempts]
    receipts = await _receipts(rpc, attempts)
    for tx in rows:
        found += event_log_violations(tx) + fee_cap_violations(tx, caps.get(tx.chain_id))
        if not is_terminal(tx.status):
            found.append(f"{tx.id} is still {tx.status}")
            continue
        mined = [a for a in tx.attempts if isinstance(receipts.get(a.hash), dict)]
        executed = tx.status in (TxStatus.CONFIRMED, TxStatus.REVERTED) or (
            tx.status is TxStatus.CANCELLED and tx.nonce is not None and bool(mined)
        )
        if not executed:
            if mined:
                found.append(f"{tx.id} is {tx.status} but {mined[0].hash} is on chain")
            continue
        if len(mined) != 1 or mined[0].hash != tx.final_hash:
            found.append(f"{tx.id} {tx.status} with {len(mined)} attempts on chain")
            continue
        by_wallet[tx.from_address].append(mined[0].nonce)
    for address in {tx.from_address for tx in rows} | set(by_wallet):
        count = int(await rpc.call("eth_getTransactionCount", [address, "latest"]), 16)
        nonces = sorted(by_wallet[address])
        if nonces != list(range(count)):
            found.append(f"{address}: executed nonces {_brief(nonces)} vs chain count {count}")
    return found


async def _receipts(rpc: RpcClient, attempts: Sequence[TxAttempt]) -> dict[str, object]:
    found: dict[str, object] = {}
    for start in range(0, len(attempts), 200):
        chunk = attempts[start : start + 200]
        answers = await rpc.batch([("eth_getTransactionReceipt", [a.hash]) for a in chunk])
        found.update({a.hash: answer for a, answer in zip(chunk, answers, strict=True)})
    return found


def _brief(nonces: list[int]) -> str:
    return str(nonces) if len(nonces) <= 20 else f"{nonces[:10]}…{nonces[-10:]} ({len(nonces)})"
