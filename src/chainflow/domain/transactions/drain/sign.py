"""Take nonces and sign, every lane of a drain under its lock, in the caller's DB transaction:
the write-ahead step (DESIGN §6.3) that must commit before the first send (workers/drain.py)."""

from collections.abc import Sequence
from typing import Protocol, TypeVar

from sqlalchemy.ext.asyncio import AsyncSession

from chainflow.core.logging import get_logger
from chainflow.core.types import Nonce, WalletId
from chainflow.domain.transactions import repository
from chainflow.domain.transactions.attempts import Signers, signed_attempt
from chainflow.domain.transactions.config import ChainConfig, EngineConfig
from chainflow.domain.transactions.drain.plan import Ready, room_of
from chainflow.domain.transactions.fees import FeeCaps, Fees, clamp
from chainflow.domain.transactions.market import chain_caps
from chainflow.domain.transactions.models import AttemptKind
from chainflow.domain.transactions.repository import bulk
from chainflow.domain.transactions.rows import Queued, signed_update
from chainflow.domain.transactions.send.answers import SentAttempt
from chainflow.domain.transactions.state import TxEvent
from chainflow.domain.transactions.transitions import step
from chainflow.domain.wallets.models import NONCE_GAP, Wallet, WalletChain
from chainflow.domain.wallets.service import lock_lanes, show_signer_reason, store_next_nonces
from chainflow.infra.signing.signer import KeyUnreadable, SignatureFailed, SignerUnavailable

log = get_logger(__name__)


async def sign_lanes(
    session: AsyncSession,
    chain: ChainConfig,
    lanes: Sequence[Ready],
    market: Fees,
    *,
    signers: Signers,
    config: EngineConfig,
) -> list[SentAttempt]:
    """Take nonces and sign, every lane holding its lane lock; the result is ordered by
    wallet, then nonce (the order the sends must go in). The caller commits before sending."""
    locked = await lock_lanes(session, [ready.wallet.id for ready in lanes], chain.chain_id)
    gas = {e.tx_id: e.gas_limit for ready in lanes for e in ready.estimates}
    # The estimated requests still queued, locked; signed from the plan's rows (Ready.rows).
    still = await repository.lock_queued_ids(session, list(gas))
    queued: dict[WalletId, list[Queued]] = {}
    for ready in lanes:
        queued[ready.wallet.id] = [tx for tx in ready.rows if tx.id in gas and tx.id in still]
    sent: list[SentAttempt] = []
    writes = bulk.SignWrites()
    # The lanes' nonce cursors as this round moves them, written in one statement at the end
    # (an ORM flush wrote one UPDATE per lane).
    cursors: dict[WalletId, int] = {}
    for ready in sorted(lanes, key=lambda r: r.wallet.id):
        lane = locked.get(ready.wallet.id)
        if lane is None or lane.paused_reason == NONCE_GAP:
            continue  # removed, or shown below a nonce gap since the plan (plan_lanes)
        next_nonce = _fast_forward(lane, ready)
        if next_nonce != lane.next_nonce:
            cursors[lane.wallet_id] = next_nonce
        try:
            signer = await signers.of(ready.wallet)
        except SignerUnavailable as exc:  # also KeyUnreadable: its sealed key cannot be read
            if signers.note_unavailable(ready.wallet.id):
                _signer_down(ready, chain, exc)
            show_signer_reason(lane, exc.code)  # on the lane (GET …/chains/…)
            continue  # only this lane waits, its requests stay queued; the others sign on
        room = room_of(config, next_nonce, ready.counts)
        for tx in queued.get(ready.wallet.id, [])[: max(room, 0)]:
            nonce = Nonce(next_nonce)
            try:
                attempt = await signed_attempt(
                    tx,
                    signer=signer,
                    chain=chain,
                    nonce=nonce,
                    gas_limit=gas[tx.id],
                    fees=_fees_for(tx, market, chain),
                    kind=AttemptKind.ORIGINAL,
                )
            except SignerUnavailable as exc:  # also SignatureFailed: a bad signature
                # Nothing signed at this nonce: the cursor stays, the request stays queued,
                # and only this lane waits; the others of the drain sign on.
                if signers.note_unavailable(ready.wallet.id, bad=isinstance(exc, SignatureFailed)):
                    _signer_down(ready, chain, exc)
                show_signer_reason(lane, exc.code)
                break
            moved = step(
                tx.id,
                tx.status,
                TxEvent.SIGNED,
                chain_id=chain.chain_id,
                nonce=nonce,
                hash=attempt["hash"],
            )
            writes.attempts.append(attempt)
            writes.transitions.append(moved)
            writes.signed.append(signed_update(moved, nonce=nonce, gas_limit=gas[tx.id]))
            next_nonce = cursors[lane.wallet_id] = nonce + 1
            show_signer_reason(lane, None)
            signers.note_signed(ready.wallet.id)
            sent.append(SentAttempt(tx.id, attempt["id"], attempt["raw"], nonce, attempt["hash"]))
    await store_next_nonces(session, chain.chain_id, cursors)
    await bulk.store_signed(session, writes)
    return sent


class _OfWallet(Protocol):
    @property
    def wallet(self) -> Wallet: ...


LaneT = TypeVar("LaneT", bound=_OfWallet)


def probe_paused(lanes: Sequence[LaneT], signers: Signers, chain: ChainConfig) -> list[LaneT]:
    """The lanes worth estimating and signing for now: a lane whose signer failed at this
    process's last try joins a round only once a health probe of its backend has passed
    (issue 20). Probes run in the background (Signers.can_sign), outside the signing
    transaction: a backend still down costs no gas estimate, no signing timeout, holds no
    lane lock, and delays no other lane."""
    kept = []
    for ready in lanes:
        wallet = ready.wallet
        if not signers.can_sign(wallet.id):
            log.debug("lane.signer_probed", wallet=wallet.address, chain_id=chain.chain_id)
            continue
        if signers.unreadable(wallet):  # its row is as it was when its key failed to decrypt
            log.debug("lane.key_row_unchanged", wallet_id=str(wallet.id), chain_id=chain.chain_id)
            continue
        kept.append(ready)
    return kept


def _fees_for(tx: Queued, market: Fees, chain: ChainConfig) -> Fees:
    """Market fees lowered to the chain's and the request's caps."""
    caps = chain_caps(chain).merged(
        FeeCaps(tx.max_fee_per_gas_cap, tx.max_priority_fee_per_gas_cap)
    )
    return clamp(market, caps)


def _fast_forward(lane: WalletChain, ready: Ready) -> int:
    """The lane's next nonce: its cursor, or the node's pending count if that is ahead."""
    if ready.counts.pending > lane.next_nonce:
        # The key was used outside Chainflow (DESIGN §6.7-8): never reuse those nonces.
        log.warning(
            "lane.fast_forwarded",
            wallet=ready.wallet.address,
            chain_id=lane.chain_id,
            from_nonce=lane.next_nonce,
            to_nonce=ready.counts.pending,
        )
        return ready.counts.pending
    return lane.next_nonce


def _signer_down(ready: Ready, chain: ChainConfig, exc: SignerUnavailable) -> None:
    """Log why the lane waits: its detail names no key, PIN, digest or signature bytes."""
    fault = isinstance(exc, SignatureFailed | KeyUnreadable)  # to look into, not an outage
    (log.error if fault else log.warning)(
        f"lane.{exc.code}",
        wallet_id=str(ready.wallet.id),
        wallet=ready.wallet.address,
        chain_id=chain.chain_id,
        error=exc.code,
        detail=exc.detail,
    )
