"""Replacement attempts at the same nonce: fee bumps and cancels (DESIGN §7)."""

import uuid
from decimal import Decimal

from chainflow.core.logging import get_logger
from chainflow.domain.transactions import repository
from chainflow.domain.transactions.decisions import latest_attempt
from chainflow.domain.transactions.fees import FeeCapReached, FeeCaps, bump, clamp
from chainflow.domain.transactions.gas import chain_caps, market_fees
from chainflow.domain.transactions.models import AttemptKind
from chainflow.domain.transactions.runtime import ChainConfig, Engine
from chainflow.domain.transactions.sending import SentAttempt
from chainflow.domain.transactions.signing import fees_of, sign_attempt
from chainflow.domain.transactions.state import TxStatus
from chainflow.domain.wallets.service import get_wallet
from chainflow.infra.db.uow import unit_of_work

log = get_logger(__name__)


async def replace(
    engine: Engine, chain: ChainConfig, tx_id: uuid.UUID, *, cancel: bool
) -> SentAttempt | None:
    """Sign and store a bumped (or cancel) attempt; at the fee cap, re-send the highest one."""
    market = await market_fees(engine, chain)
    async with unit_of_work(engine.sessionmaker) as session:
        tx = await repository.lock_tracked(session, tx_id)
        if tx is None or tx.status is not TxStatus.SUBMITTED or tx.nonce is None:
            return None
        previous = latest_attempt(tx)
        caps = chain_caps(chain).merged(
            FeeCaps(tx.max_fee_per_gas_cap, tx.max_priority_fee_per_gas_cap)
        )
        market = clamp(market, caps)
        try:
            fees = bump(
                fees_of(previous),
                market=market,
                caps=caps,
                percent=Decimal(engine.config.bump_percent),
            )
        except FeeCapReached as exc:
            log.warning("tx.bump_capped", tx_id=str(tx.id), detail=exc.detail)
            return SentAttempt(tx.id, previous.id, previous.raw, previous.nonce, previous.hash)
        wallet = await get_wallet(session, tx.wallet_id, lanes=False)
        attempt = await sign_attempt(
            session,
            tx,
            signer=engine.signer(wallet),
            chain=chain,
            nonce=tx.nonce,
            gas_limit=previous.gas_limit,
            fees=fees,
            kind=AttemptKind.CANCEL
            if cancel or previous.kind is AttemptKind.CANCEL
            else AttemptKind.BUMP,
        )
        log.info("tx.replaced", tx_id=str(tx.id), kind=attempt.kind.value, hash=attempt.hash)
        return SentAttempt(tx.id, attempt.id, attempt.raw, attempt.nonce, attempt.hash)
