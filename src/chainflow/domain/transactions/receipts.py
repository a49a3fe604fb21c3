"""Record what the tracker saw on one locked request: receipts, depth, reorgs, foreign nonces."""

from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from chainflow.core.clock import utcnow
from chainflow.core.logging import get_logger
from chainflow.domain.transactions.decisions import Action, Decision, Observed, latest_attempt
from chainflow.domain.transactions.lifecycle import apply
from chainflow.domain.transactions.models import AttemptKind, AttemptStatus, Transaction, TxAttempt
from chainflow.domain.transactions.sending import SentAttempt
from chainflow.domain.transactions.state import TxEvent, TxStatus
from chainflow.domain.wallets.service import lock_lane

log = get_logger(__name__)


async def apply_decision(
    session: AsyncSession,
    tx: Transaction,
    decision: Decision,
    *,
    seen: Observed,
) -> SentAttempt | None:
    """Apply a receipt-side decision; return an attempt to send again, if any."""
    _stamp_sent_blocks(tx, seen.head)
    action = decision.action
    if action in (Action.RECORD_RECEIPT, Action.FINALIZE):
        assert decision.attempt is not None  # noqa: S101 - set for these actions
        assert decision.receipt is not None  # noqa: S101
        _record_receipt(session, tx, decision.attempt, decision.receipt, depth=decision.depth)
        if action is Action.FINALIZE:
            _finalize(session, tx, decision.attempt)
        return None
    if action is Action.REORGED:
        return _reorged(session, tx)
    if action is Action.FOREIGN:
        await _fail_foreign(session, tx, seen)
        return None
    if action is Action.RESEND and decision.attempt is not None:
        attempt = decision.attempt
        return SentAttempt(tx.id, attempt.id, attempt.raw, attempt.nonce)
    return None


def _stamp_sent_blocks(tx: Transaction, head: int) -> None:
    for attempt in tx.attempts:
        if attempt.first_sent_at is not None and attempt.sent_at_block is None:
            attempt.sent_at_block = head


def _record_receipt(
    session: AsyncSession,
    tx: Transaction,
    mined: TxAttempt,
    receipt: dict[str, Any],
    *,
    depth: int,
) -> None:
    block_hash = str(receipt["blockHash"])
    moved = tx.final_hash != mined.hash or tx.block_hash != block_hash
    if tx.status is not TxStatus.MINED or moved:
        apply(session, tx, TxEvent.RECEIPT_FOUND, hash=mined.hash, block_hash=block_hash)
    tx.final_hash, tx.block_hash = mined.hash, block_hash
    tx.block_number = int(receipt["blockNumber"], 16)
    tx.gas_used = _int(receipt.get("gasUsed"))
    tx.effective_gas_price_wei = _int(receipt.get("effectiveGasPrice"))
    tx.receipt_status = _int(receipt.get("status"))
    tx.confirmations = max(depth, 0)
    for attempt in tx.attempts:
        is_mined = attempt.id == mined.id
        attempt.status = AttemptStatus.MINED if is_mined else AttemptStatus.REPLACED


def _int(value: Any) -> int | None:
    return int(value, 16) if isinstance(value, str) else None


def _finalize(session: AsyncSession, tx: Transaction, mined: TxAttempt) -> None:
    if mined.kind is AttemptKind.CANCEL:
        apply(session, tx, TxEvent.CANCEL_WON, hash=mined.hash)
    elif tx.receipt_status == 0:
        tx.error_code, tx.error_message = "reverted", "the transaction reverted on chain"
        apply(session, tx, TxEvent.CONFIRMED_REVERT, hash=mined.hash)
    else:
        apply(session, tx, TxEvent.CONFIRMED_SUCCESS, hash=mined.hash)


def _reorged(session: AsyncSession, tx: Transaction) -> SentAttempt | None:
    apply(session, tx, TxEvent.RECEIPT_VANISHED, block_hash=tx.block_hash)
    log.warning("tx.reorged", tx_id=str(tx.id), block_number=tx.block_number)
    tx.block_hash = tx.block_number = tx.receipt_status = tx.gas_used = None
    tx.effective_gas_price_wei = None
    tx.confirmations = 0
    was_mined = next((a for a in tx.attempts if a.hash == tx.final_hash), None)
    for attempt in tx.attempts:
        attempt.status = AttemptStatus.SUBMITTED
    again = was_mined or latest_attempt(tx)
    again.last_sent_at = utcnow()
    return SentAttempt(tx.id, again.id, again.raw, again.nonce)


async def _fail_foreign(session: AsyncSession, tx: Transaction, seen: Observed) -> None:
    count = seen.latest_nonce[tx.from_address]
    tx.error_code = "nonce_taken_externally"
    tx.error_message = (
        f"nonce {tx.nonce} was used by a transaction not sent by Chainflow "
        "(the key is used elsewhere); the request was not executed"
    )
    apply(session, tx, TxEvent.FAILED, code=tx.error_code, nonce=tx.nonce)
    lane = await lock_lane(session, tx.wallet_id, tx.chain_id)
    if count > lane.next_nonce:
        lane.next_nonce = count
    log.warning("tx.nonce_taken_externally", tx_id=str(tx.id), nonce=tx.nonce)
