"""Replacement attempts at the same nonce: fee bumps and cancels (DESIGN §7)."""

from decimal import Decimal

from sqlalchemy.ext.asyncio import AsyncSession

from chainflow.core.logging import get_logger
from chainflow.core.types import TxId
from chainflow.domain.transactions import repository
from chainflow.domain.transactions.attempts import Signers, sign_attempt
from chainflow.domain.transactions.config import ChainConfig, EngineConfig
from chainflow.domain.transactions.decisions import latest_attempt, replacement_terms
from chainflow.domain.transactions.fees import FeeCapReached, Fees, bump, clamp, fees_of
from chainflow.domain.transactions.models import AttemptKind, Transaction
from chainflow.domain.transactions.send.answers import SentAttempt
from chainflow.domain.transactions.state import TxStatus
from chainflow.domain.transactions.telemetry import count_replacement, tx_context
from chainflow.domain.transactions.transitions import record_replaced
from chainflow.domain.wallets.service import get_wallet

log = get_logger(__name__)
_REPLACEABLE = (TxStatus.SIGNED, TxStatus.SUBMITTED)


async def replace(
    session: AsyncSession,
    chain: ChainConfig,
    tx_id: TxId,
    *,
    market: Fees,
    signers: Signers,
    config: EngineConfig,
    cancel: bool,
) -> SentAttempt | None:
    """Sign and store a bumped (or cancel) attempt; None if none fits under the caps now.

    A cancel is a 0-value self-transfer at the request's nonce, bound by the chain's caps
    only (decisions.replacement_terms). A signed request can be replaced too: one a node
    refused as underpriced never reached a pool, and its nonce must still be used.
    """
    tx = await repository.lock_tracked(session, tx_id)
    if tx is None or tx.status not in _REPLACEABLE or tx.nonce is None:
        return None
    previous = latest_attempt(tx)
    kind = AttemptKind.CANCEL if cancel or previous.kind is AttemptKind.CANCEL else None
    fees = _replacement_fees(config, chain, tx, market, cancel=kind is not None)
    if fees is None:
        count_replacement(chain.chain_id, "capped")  # metrics (issue 18)
        return None  # the caps changed since the decision; the next round decides again
    wallet = await get_wallet(session, tx.wallet_id, lanes=False)
    attempt = await sign_attempt(
        session,
        tx,
        signer=await signers.of(wallet),
        chain=chain,
        nonce=tx.nonce,
        gas_limit=previous.gas_limit,
        fees=fees,
        kind=kind or AttemptKind.BUMP,
    )
    record_replaced(session, tx, attempt)  # the outbox (issue 16)
    count_replacement(chain.chain_id, attempt.kind.value)  # metrics (issue 18)
    log.info(
        "tx.replaced",
        **tx_context(tx),
        kind=attempt.kind.value,
        hash=attempt.hash,
        requested=tx.cancel_requested if kind else None,
    )
    return SentAttempt(tx.id, attempt.id, attempt.raw, attempt.nonce, attempt.hash)


def _replacement_fees(
    config: EngineConfig, chain: ChainConfig, tx: Transaction, market: Fees, *, cancel: bool
) -> Fees | None:
    terms = replacement_terms(tx, chain, config, cancel=cancel)
    try:
        return bump(
            fees_of(latest_attempt(tx)),
            market=clamp(market, terms.caps),
            caps=terms.caps,
            percent=Decimal(config.bump_percent),
            min_percent=terms.min_percent,
        )
    except FeeCapReached:
        return None
