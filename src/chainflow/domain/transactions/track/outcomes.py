"""Record the tracker's rare outcomes on one locked request: reorgs, foreign nonces, re-sends."""

from sqlalchemy.ext.asyncio import AsyncSession

from chainflow.core.clock import utcnow
from chainflow.core.logging import get_logger
from chainflow.domain.transactions.decisions import Action, Decision, Observed
from chainflow.domain.transactions.models import AttemptStatus, Transaction
from chainflow.domain.transactions.send.answers import SentAttempt
from chainflow.domain.transactions.state import TxEvent
from chainflow.domain.transactions.telemetry import tx_context
from chainflow.domain.transactions.transitions import apply
from chainflow.domain.wallets.service import lock_lane

log = get_logger(__name__)


async def apply_decision(
    session: AsyncSession,
    tx: Transaction,
    decision: Decision,
    *,
    seen: Observed,
) -> SentAttempt | None:
    """Apply a reorg, foreign-nonce or re-send decision; return an attempt to send again, if
    any. Receipts are recorded in bulk by confirming.record_common."""
    if decision.action in (Action.RECORD_RECEIPT, Action.FINALIZE):
        raise ValueError("receipts are recorded by confirming.record_common")
    _stamp_sent_blocks(tx, seen.head)
    action = decision.action
    if action is Action.REORGED:
        return _reorged(session, tx)
    if action is Action.FOREIGN:
        await _fail_foreign(session, tx, seen)
        return None
    if action is Action.RESEND and decision.attempt is not None:
        attempt = decision.attempt
        return SentAttempt(tx.id, attempt.id, attempt.raw, attempt.nonce, attempt.hash)
    return None


def _stamp_sent_blocks(tx: Transaction, head: int) -> None:
    for attempt in tx.attempts:
        if attempt.first_sent_at is not None and attempt.sent_at_block is None:
            attempt.sent_at_block = head


def _reorged(session: AsyncSession, tx: Transaction) -> SentAttempt | None:
    block_hash, block_number = tx.block_hash, tx.block_number
    log.warning("tx.reorged", **tx_context(tx), block_number=block_number)
    tx.block_hash = tx.block_number = tx.receipt_status = tx.gas_used = None
    tx.effective_gas_price_wei = None
    tx.confirmations = 0
    was_mined = next((a for a in tx.attempts if a.hash == tx.final_hash), None)
    for attempt in tx.attempts:
        attempt.status = AttemptStatus.SUBMITTED
    again = was_mined or max(tx.attempts, key=lambda a: a.created_at)  # the latest
    again.last_sent_at = utcnow()
    # Last: its event's snapshot (issue 16) shows the request without the vanished receipt.
    apply(session, tx, TxEvent.RECEIPT_VANISHED, block_hash=block_hash)
    return SentAttempt(tx.id, again.id, again.raw, again.nonce, again.hash)


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
    log.warning("tx.nonce_taken_externally", **tx_context(tx), nonce=tx.nonce)
