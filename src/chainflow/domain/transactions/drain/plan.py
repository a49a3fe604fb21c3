"""Plan a drain: the node's counts of each lane, then, in the caller's DB transaction, the
lanes this process may drain now and the queued requests each can sign (workers/drain.py)."""

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession

from chainflow.core.clock import utcnow
from chainflow.core.types import TxId, WalletId
from chainflow.domain.transactions import repository
from chainflow.domain.transactions.config import ChainConfig, EngineConfig
from chainflow.domain.transactions.drain.estimate import Estimate
from chainflow.domain.transactions.drain.fee_floor import expire_priced_out, floor_of
from chainflow.domain.transactions.fees import FeeFloor
from chainflow.domain.transactions.node import ChainRpc, nonce_counts
from chainflow.domain.transactions.rows import Queued
from chainflow.domain.transactions.state import TxEvent
from chainflow.domain.transactions.transitions import apply
from chainflow.domain.wallets.models import Wallet, WalletStatus
from chainflow.domain.wallets.service import claim_lanes, get_wallets, release_lanes
from chainflow.infra.rpc.client import RpcTransportError

_EXPIRED = "valid_until passed before signing"


@dataclass(frozen=True)
class Planned:
    rows: list[Queued]  # queued requests of the lane, in submission order (a snapshot)
    wallet: Wallet
    next_nonce: int  # the lane's next nonce when planned (`claim_lanes`), for `has_unmined`


@dataclass(frozen=True)
class Counts:
    """A lane's transaction counts on the node: mined (`latest`) and with its pool (`pending`)."""

    mined: int
    pending: int


@dataclass(frozen=True)
class Ready:
    """A lane cleared for signing: its estimated prefix, the node's counts, and the plan's
    rows of its queued requests (`Planned.rows`). A queued request's columns never change
    while it stays queued (a cancel moves it out of queued), so the signing step locks only
    their ids and signs these rows, instead of loading each request again as an ORM row."""

    wallet: Wallet
    estimates: list[Estimate]
    counts: Counts
    rows: Sequence[Queued]


async def lane_counts(rpc: ChainRpc, addresses: Mapping[WalletId, str]) -> dict[WalletId, Counts]:
    """Each lane's counts on the node (wallet id → address given), read before planning so
    that a lane's room is what the chain has mined, not what the tracker has recorded yet; a
    lane whose count failed is absent (it waits for the next round)."""
    try:
        mined, pending = await nonce_counts(rpc, list(addresses.values()))
    except RpcTransportError:
        return {}  # the node is unreachable: the lanes wait, as when estimating
    return {
        wallet_id: Counts(mined[address], pending[address])
        for wallet_id, address in addresses.items()
        if address in mined and address in pending
    }


def room_of(config: EngineConfig, next_nonce: int, counts: Counts) -> int:
    """How many more the lane may sign now: `max_in_flight_per_lane` counts the nonces taken
    and not yet mined (as thirdweb's engine-core counts its in-flight budget), so a window
    reopens as soon as the chain mines it, not when the tracker has written the receipts."""
    unmined = max(0, next_nonce - counts.mined)
    return min(config.max_in_flight_per_lane - unmined, config.batch_size)


def has_unmined(next_nonce: int, counts: Counts) -> bool:
    """Whether a nonce of the lane is taken and not mined yet: one of ours (below its next
    nonce) or one the node's pool holds beyond it (the key used outside Chainflow)."""
    return max(next_nonce, counts.pending) > counts.mined


async def plan_lanes(
    session: AsyncSession,
    chain: ChainConfig,
    counts: dict[WalletId, Counts],
    *,
    owner: str,
    config: EngineConfig,
    base_fee_wei: int | None = None,
    holding: set[WalletId],
) -> list[Planned]:
    """The lanes this process may drain now, each with the queued requests it can sign;
    `holding` receives the lanes whose drain lease `owner` now holds (also those with no room
    or nothing it can sign).

    A request whose fee cap cannot pay the next block's base fee `base_fee_wei` is left
    queued, unsigned, and later requests of its lane go ahead of it (issue 14): signed, it
    would hold its nonce, and every later nonce of the wallet, until the base fee fell.
    """
    if not counts:
        return []
    held = await claim_lanes(
        session, list(counts), chain.chain_id, owner=owner, ttl_s=config.lane_lease_s
    )  # lanes another process holds are its to drain
    holding.update(held)
    if not held:
        return []
    floor = floor_of(chain, base_fee_wei)
    await expire_priced_out(session, chain, sorted(held), floor)
    if floor is not None and not floor.chain_pays:
        return []  # the chain's own cap cannot pay the base fee: every request waits
    wallets = await get_wallets(session, sorted(held))
    blocked = await repository.waiting_for_funds(session, chain.chain_id, sorted(held))
    rooms: dict[WalletId, int] = {}
    # Lanes below a nonce gap sign nothing (track/gaps.py): their requests stay queued,
    # cancellable, and expire as they would.
    await _expire_due(session, chain, sorted(w for w, claim in held.items() if claim.gapped))
    for wallet_id in sorted(held):
        wallet = wallets.get(wallet_id)
        if wallet is None:
            continue
        if wallet.status is WalletStatus.DISABLED:
            await _fail_queued(session, chain, wallet)
            continue
        if (
            wallet.status is not WalletStatus.ACTIVE
            or wallet_id in blocked
            or held[wallet_id].gapped
        ):
            # blocked: an attempt waits for funds, later ones must not overtake; gapped: below
            # a nonce gap, nothing signed now could be mined (track/gaps.py)
            continue
        rooms[wallet_id] = room_of(config, held[wallet_id].next_nonce, counts[wallet_id])
    # The first `room` queued requests of each lane whose fee cap pays the floor, one SELECT.
    queued = await repository.queued_for_lanes(
        session,
        chain.chain_id,
        rooms,
        min_fee_cap_wei=floor.base_fee_wei if floor is not None else None,
    )
    live = await _expire_passed(session, queued)
    plans: list[Planned] = []
    for wallet_id in rooms:
        rows = [tx for tx in queued.get(wallet_id, []) if tx.id in live]
        if rows:
            plans.append(Planned(rows, wallets[wallet_id], held[wallet_id].next_nonce))
    return plans


async def _expire_due(
    session: AsyncSession, chain: ChainConfig, wallet_ids: list[WalletId]
) -> None:
    """Expire the queued requests of these lanes whose valid_until passed (lanes that sign
    nothing this round: their requests do not come up for signing)."""
    if wallet_ids:
        due = await repository.lock_expired_below(
            session, chain.chain_id, wallet_ids, now=utcnow(), min_fee_cap_wei=None
        )
        for tx in due:
            apply(session, tx, TxEvent.EXPIRED, reason=_EXPIRED)


async def _expire_passed(session: AsyncSession, queued: dict[WalletId, list[Queued]]) -> set[TxId]:
    """Expire the planned requests whose `valid_until` passed before signing (those still
    queued: locked and loaded as ORM rows, which is rare, so the plan's rows stay plain);
    the ids of the others."""
    now = utcnow()
    live, expired = set(), []
    for tx in (tx for lane in queued.values() for tx in lane):
        if tx.valid_until is not None and tx.valid_until <= now:
            expired.append(tx.id)
        else:
            live.add(tx.id)
    for row in await repository.lock_queued(session, expired) if expired else []:
        apply(session, row, TxEvent.EXPIRED, reason=_EXPIRED)
    return live


async def settle_lanes(
    session: AsyncSession,
    chain: ChainConfig,
    wallet_ids: Sequence[WalletId],
    *,
    owner: str,
    config: EngineConfig,
    floor: FeeFloor | None,
) -> None:
    """What plan_lanes does that needs no signature, for lanes this process leaves because
    its signer for them is down here (workers/placement.py): their requests past valid_until
    expire (with the fee floor's reason for those it priced out) and a disabled wallet's
    queued requests fail, even while no worker can sign them. Under the lanes' lease, taken
    and freed in this DB transaction: no other process sees them held, and one that drains
    them waits on the lane rows (or holds them, and they are skipped here)."""
    held = sorted(
        await claim_lanes(
            session, list(wallet_ids), chain.chain_id, owner=owner, ttl_s=config.lane_lease_s
        )
    )
    if not held:
        return
    await expire_priced_out(session, chain, held, floor)
    await _expire_due(session, chain, held)
    for wallet in (await get_wallets(session, held)).values():
        if wallet.status is WalletStatus.DISABLED:
            await _fail_queued(session, chain, wallet)
    await release_lanes(session, held, chain.chain_id, owner=owner)


async def _fail_queued(session: AsyncSession, chain: ChainConfig, wallet: Wallet) -> None:
    rows = await repository.queued_for_lane(session, chain.chain_id, wallet.id, limit=1000)
    for tx in rows:
        tx.error_code, tx.error_message = "wallet_disabled", "the wallet was disabled"
        apply(session, tx, TxEvent.FAILED, code="wallet_disabled")
