"""No gaps (DESIGN §6.5): a nonce whose request never reached a node is released or filled."""

import uuid

from sqlalchemy.ext.asyncio import AsyncSession

from chainflow.core.logging import get_logger
from chainflow.core.types import Nonce, TxId, WalletId
from chainflow.domain.transactions import repository
from chainflow.domain.transactions.attempts import CANCEL_GAS, Signers, sign_attempt
from chainflow.domain.transactions.config import ChainConfig
from chainflow.domain.transactions.fees import Fees
from chainflow.domain.transactions.models import AttemptKind, Transaction, TxKind
from chainflow.domain.transactions.state import TxEvent, TxStatus
from chainflow.domain.transactions.telemetry import tx_context
from chainflow.domain.transactions.transitions import apply, record_created
from chainflow.domain.wallets.service import get_wallet, lock_lane, show_signer_reason
from chainflow.infra.signing.signer import SignerUnavailable

log = get_logger(__name__)


class FillerUnsigned(SignerUnavailable):
    """The filler of a released nonce could not be signed: the wallet's backend is down, or
    its signature was bad (`reason`: the code of the lane's paused_reason)."""

    def __init__(self, detail: str, *, wallet_id: WalletId, reason: str) -> None:
        super().__init__(detail)
        self.wallet_id = wallet_id
        self.reason = reason


async def release_nonce(
    session: AsyncSession,
    chain: ChainConfig,
    tx_id: TxId,
    *,
    error_code: str,
    fees: Fees,
    signers: Signers,
) -> None:
    """Fail a signed request the node refused for good, and keep its lane gap-free.

    If its nonce is the lane's last, the cursor steps back so the next request takes it;
    otherwise a 0-value self-transfer is signed at that nonce. A request with another
    attempt (a bump or a cancel of a signed request) keeps its nonce: that attempt may be at
    a node, and the tracker carries on with it.

    Raises: FillerUnsigned (a SignerUnavailable) when the filler cannot be signed now (the
    wallet's HSM or KMS is down): the caller rolls the whole unit back, so the request keeps
    its nonce, still signed, and comes back here when the tracker's next send is refused
    again.
    """
    tx = await repository.lock_tracked(session, tx_id)
    if tx is None or tx.status is not TxStatus.SIGNED or tx.nonce is None:
        return
    if len(tx.attempts) > 1:
        return
    lane = await lock_lane(session, tx.wallet_id, tx.chain_id)
    nonce = tx.nonce
    tx.nonce = None
    tx.error_code, tx.error_message = error_code, "the node refused the transaction for good"
    apply(session, tx, TxEvent.FAILED, code=error_code, released_nonce=nonce)
    await session.flush()
    if nonce == lane.next_nonce - 1:
        lane.next_nonce = nonce
        log.info("nonce.released", **tx_context(tx), nonce=nonce)
        return
    try:
        await _fill(session, chain, tx, nonce=nonce, fees=fees, signers=signers)
    except SignerUnavailable as exc:  # also SignatureFailed
        raise FillerUnsigned(exc.detail, wallet_id=tx.wallet_id, reason=exc.code) from None
    signers.note_signed(tx.wallet_id)
    show_signer_reason(lane, None)  # it signed: the lane's signer answers (issue 20)


async def _fill(
    session: AsyncSession,
    chain: ChainConfig,
    failed: Transaction,
    *,
    nonce: Nonce,
    fees: Fees,
    signers: Signers,
) -> None:
    wallet = await get_wallet(session, failed.wallet_id, lanes=False)
    filler = Transaction(
        id=TxId(uuid.uuid4()),
        kind=TxKind.FILLER,
        chain_id=chain.chain_id,
        wallet_id=wallet.id,
        from_address=wallet.address,
        to_address=wallet.address,
        value_wei=0,
        data=b"",
        gas_limit=CANCEL_GAS,
        status=TxStatus.QUEUED,
        cancel_requested=False,
        confirmations=0,
        attempts=[],  # loaded (empty), so the event of its signing shows its attempt
    )
    session.add(filler)
    await session.flush()
    record_created(session, filler)
    attempt = await sign_attempt(
        session,
        filler,
        signer=await signers.of(wallet),
        chain=chain,
        nonce=nonce,
        gas_limit=CANCEL_GAS,
        fees=fees,
        kind=AttemptKind.ORIGINAL,
    )
    filler.attempts.append(attempt)
    filler.nonce = nonce
    apply(
        session, filler, TxEvent.SIGNED, nonce=nonce, hash=attempt.hash, filler_for=str(failed.id)
    )
    log.info("nonce.filled", **tx_context(filler), nonce=nonce, filler_for=str(failed.id))
