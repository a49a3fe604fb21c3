"""The send step of both rounds: broadcast stored attempts, then record every answer in one
DB transaction, then release the nonce of each request a node refused for good."""

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from chainflow.core.crashpoints import CrashPoint
from chainflow.core.logging import get_logger
from chainflow.core.types import WalletId
from chainflow.domain.transactions.config import ChainConfig
from chainflow.domain.transactions.send.answers import SentAttempt, record_answers
from chainflow.domain.transactions.send.broadcast import SendOutcome, outcome_of, send_raw
from chainflow.domain.transactions.send.nonce_gaps import FillerUnsigned, release_nonce
from chainflow.domain.wallets import service as wallets
from chainflow.infra.db.uow import unit_of_work
from chainflow.infra.signing.signer import SignatureFailed
from chainflow.workers.engine import Engine

log = get_logger(__name__)


@dataclass(frozen=True)
class Sending:
    """A drain step's send and record, running while the drain plans its next step."""

    task: "asyncio.Task[None]"
    # Set once the node answered every send: True if it accepted each one plainly (no
    # error of any kind), so the lane's next nonces may be signed before this is recorded.
    answered: "asyncio.Future[bool]"


def start_sending(
    engine: Engine,
    chain: ChainConfig,
    sends: Sequence[SentAttempt],
    *,
    recorded: Callable[[], None] | None = None,
) -> Sending:
    """`send_and_record` as a task; `recorded` is called once the answers are committed."""
    answered: asyncio.Future[bool] = asyncio.get_running_loop().create_future()

    def answer(answers: Sequence[Any]) -> None:
        if answered.done():  # the drain waiting for it was cancelled
            return
        answered.set_result(all(outcome_of(a) == (SendOutcome.ACCEPTED, None) for a in answers))

    async def run() -> None:
        try:
            await send_and_record(engine, chain, sends, answered=answer, recorded=recorded)
        finally:
            if not answered.done():  # the send itself failed: no answers to go on
                answered.set_result(False)

    return Sending(asyncio.create_task(run()), answered)


async def send_and_record(
    engine: Engine,
    chain: ChainConfig,
    sends: Sequence[SentAttempt],
    *,
    answered: Callable[[Sequence[Any]], None] | None = None,
    recorded: Callable[[], None] | None = None,
) -> None:
    """Send in the given (nonce) order, record the answers, release refused nonces;
    `answered` gets the node's answers before they are recorded, `recorded` is called after."""
    rpc = engine.rpc(chain.chain_id)
    answers = await send_raw(rpc, [s.raw for s in sends])
    engine.ports.crasher.reached(CrashPoint.NODE_ACCEPTED)
    if answered is not None:
        answered(answers)
    async with unit_of_work(engine.ports.sessionmaker) as session:
        refused = await record_answers(session, chain.chain_id, sends, answers)
    if recorded is not None:
        recorded()
    for one in refused:
        fees = await engine.state.fees.fees(rpc, chain)
        try:
            async with unit_of_work(engine.ports.sessionmaker) as session:
                await release_nonce(
                    session,
                    chain,
                    one.tx_id,
                    error_code=one.error_code,
                    fees=fees,
                    signers=engine.state.signers,
                )
        except FillerUnsigned as exc:
            # The filler of its nonce cannot be signed now: everything was rolled back, so the
            # request keeps its nonce (still signed) and the tracker sends it again later,
            # when the node's refusal brings it back here. No nonce is consumed or skipped.
            bad = exc.reason == SignatureFailed.code
            if engine.state.signers.note_unavailable(exc.wallet_id, bad=bad):
                log.warning(
                    "nonce.release_waiting",
                    tx_id=str(one.tx_id),
                    wallet_id=str(exc.wallet_id),
                    error=exc.reason,
                    detail=exc.detail,
                )
            await show_paused(engine, chain.chain_id, exc.wallet_id, exc.reason)


async def show_paused(
    engine: Engine, chain_id: int, wallet_id: WalletId, reason: str | None
) -> None:
    """Set (or clear) a lane's paused_reason outside the drain that usually sets it: the
    tracker's bumps and cancels, a nonce's filler (GET /v1/wallets/{id}/chains/{chain_id})."""
    try:
        async with unit_of_work(engine.ports.sessionmaker) as session:
            await wallets.set_paused_reason(session, wallet_id, chain_id, reason)
    except Exception as exc:  # shown at the next try; the round goes on
        log.warning("lane.paused_reason_failed", chain_id=chain_id, error=repr(exc)[:300])
