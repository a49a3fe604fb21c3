"""Clear a lane's `key_unreadable` once its wallet's key decrypts again, with or without
requests queued: a signature cleared it, so on an idle lane it stayed after the row was
repaired, and with it the ChainflowLaneKeyUnreadable alert, chainflow_lanes_paused and
`signer_healthy: false` (review)."""

from chainflow.core.logging import get_logger
from chainflow.core.types import WalletId
from chainflow.domain.wallets import service as wallets
from chainflow.infra.db.uow import read_only, unit_of_work
from chainflow.infra.signing.signer import KeyUnreadable, SignerUnavailable
from chainflow.workers.engine import Engine

log = get_logger(__name__)


async def recheck_unreadable(engine: Engine, chain_id: int) -> None:
    """Decrypt once more the keys of the wallets whose key failed to decrypt here and whose
    row has changed since, and at this process's first round of the chain those of the lanes
    showing key_unreadable (a row repaired while the worker that saw it was gone); each that
    decrypts has the reason cleared from its lanes. No statement when there is none of them."""
    signers, state = engine.state.signers, engine.state
    suspects = set(signers.suspects())
    first = chain_id not in state.unreadable_read
    if not suspects and not first:
        return
    async with read_only(engine.ports.sessionmaker) as session:
        if first:
            suspects.update(await wallets.lanes_showing(session, chain_id, KeyUnreadable.code))
        rows = await wallets.get_wallets(session, sorted(suspects))
    state.unreadable_read.add(chain_id)
    readable: list[WalletId] = []
    for wallet_id, wallet in rows.items():
        if signers.unreadable(wallet):
            continue  # its row is as it was when its key failed here: no decrypt
        try:
            # Kept: no longer `suspect` nor `unreadable`; a bad signature's back-off is left
            # to the next signature (note_signed), not reset by a decrypt.
            await signers.of(wallet)
        except SignerUnavailable:  # KeyUnreadable: noted with this row, shown by drains
            continue
        except Exception as exc:  # e.g. a PKCS#11 token's own error: this check runs before
            # the round's drains, outside their handling, so it must not end the round
            log.warning(
                "lane.key_recheck_failed", wallet_id=str(wallet_id), error=type(exc).__name__
            )
            continue
        readable.append(wallet_id)
    if not readable:
        return
    try:
        async with unit_of_work(engine.ports.sessionmaker) as session:
            await wallets.clear_paused_reason(session, sorted(readable), KeyUnreadable.code)
    except Exception as exc:  # the lanes still show it: read again at the next round
        state.unreadable_read.discard(chain_id)
        log.warning("lane.key_readable_not_shown", chain_id=chain_id, error=repr(exc)[:300])
        return
    log.info("lane.key_readable", chain_id=chain_id, wallet_ids=[str(w) for w in readable])
