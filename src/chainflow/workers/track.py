"""The tracking round: the one place that opens the DB transactions of a chain's tracking.

    read in flight [tx] → observe (RPC) → judge (pure + process memory) → record [tx] →
    sign each bump or cancel [tx each] → send (RPC) → record [tx] → release [tx each]

docs/engine.md draws it with the module of each step.
"""

import dataclasses
import time
from collections.abc import Sequence

from sqlalchemy.ext.asyncio import AsyncSession

from chainflow.core.crashpoints import CrashPoint
from chainflow.core.logging import get_logger
from chainflow.core.types import TxId, WalletId
from chainflow.domain.chains import service as chains
from chainflow.domain.transactions import repository
from chainflow.domain.transactions.config import ChainConfig
from chainflow.domain.transactions.decisions import Decision, Observed
from chainflow.domain.transactions.rows import InFlight
from chainflow.domain.transactions.send.answers import SentAttempt
from chainflow.domain.transactions.track import gaps, judge, observe, record, reverts
from chainflow.domain.transactions.track.pool import PoolSupport
from chainflow.domain.transactions.track.replace import replace
from chainflow.domain.wallets import service as wallets
from chainflow.infra.db.uow import engine_of, read_only, single_statements, unit_of_work
from chainflow.infra.signing.signer import KeyUnreadable, SignatureFailed, SignerUnavailable
from chainflow.workers.engine import Engine
from chainflow.workers.send import send_and_record, show_paused

log = get_logger(__name__)


@dataclasses.dataclass
class _Lease:
    """When the pass's tracker lease runs out (`time.monotonic()`; None: no lease to keep)."""

    until: float | None


async def track_chain(engine: Engine, chain: ChainConfig, *, until: float | None = None) -> int:
    """One tracking round for a chain; returns how many requests it looked at.

    `until`: the `time.monotonic()` at which the tracker lease the pass began under runs out
    (None: no lease to keep). Past it the lease is renewed if this process still holds it;
    if another took it the pass writes, signs and sends nothing more: a process stalled in
    its pass (SIGSTOP, swapping, a paused VM) for longer than the lease resumed it beside the
    lease's next holder, and bumped and cancelled the same requests again on what it read
    before the stall."""
    ports, state = engine.ports, engine.state
    lease = _Lease(until)
    rpc = engine.rpc(chain.chain_id)
    memory = state.tracking.setdefault(chain.chain_id, judge.TrackerMemory())
    limit = ports.config.track_limit
    # One statement (two at a memory's first pass, then every GAP_HOLD_S; one more on a page
    # cut by the limit while a lane off it shows `nonce_gap`): no DB transaction
    # of its own (no BEGIN and COMMIT round trips on PostgreSQL); what it read is checked
    # again under lock before anything is recorded.
    async with read_only(ports.sessionmaker) as session:
        rows = await repository.tracked(session, chain.chain_id, limit=limit)
        if memory.gaps.load_due():  # the lanes shown as `nonce_gap` (track/gaps.py)
            memory.gaps.loaded(await wallets.lanes_with_nonce_gap(session, chain.chain_id))
        idle = await _idle_off_page(session, chain.chain_id, rows, memory.gaps.shown, limit)
    if not rows:
        if memory.gaps.shown and await _leased(engine, chain, lease):  # nothing in flight: no gap
            noted = gaps.note_gaps(
                rows, {}, memory.gaps, chain_id=chain.chain_id, head=None, complete=True
            )
            await _show_gaps(engine, chain, noted)
        return 0
    seen = await observe.observe(
        rpc,
        rows,
        resend_after_s=ports.config.resend_after_s,
        stuck_after_blocks=ports.config.stuck_after_blocks,
        base_fee_wei=await observe.base_fee(state.fees, rpc, chain),
        pool=state.pools.setdefault(chain.chain_id, PoolSupport()),
    )
    noted = gaps.note_gaps(
        rows,
        seen.pending_nonce,
        memory.gaps,
        chain_id=chain.chain_id,
        head=seen.head,
        complete=len(rows) < limit,
        idle=idle,
    )
    seen = dataclasses.replace(seen, gapped=noted.held)
    decisions = judge.judge(
        rows, seen, chain=chain, config=ports.config, memory=memory, sending=state.sending
    )
    if not await _leased(engine, chain, lease):
        state.tracking.pop(chain.chain_id, None)  # judged on a stale read: forget it
        return len(rows)
    await _show_gaps(engine, chain, noted)
    resend = await _record(engine, chain, rows, decisions, seen, lease=lease)
    if resend is None:  # the lease was lost
        state.tracking.pop(chain.chain_id, None)
        return len(rows)
    if judge.frees_room(decisions):
        engine.signal_others(chain.chain_id)  # mined or failed: lanes have room again
    resend += await _replace(engine, chain, rows, decisions, lease=lease)
    if resend and await _leased(engine, chain, lease):
        await send_and_record(engine, chain, sorted(resend, key=lambda s: s.nonce))
    return len(rows)


async def _record(
    engine: Engine,
    chain: ChainConfig,
    rows: Sequence[InFlight],
    decisions: dict[TxId, Decision],
    seen: Observed,
    *,
    lease: _Lease,
) -> list[SentAttempt] | None:
    """Record what changed (one DB transaction, only then) while the pass holds its lease;
    returns the attempts to send again, None if the lease was lost."""
    moving = [tx for tx in rows if record.changes(tx, decisions[tx.id])]
    if not moving:
        return []
    reasons = await reverts.revert_reasons(engine.rpc(chain.chain_id), moving, decisions)
    if not await _leased(engine, chain, lease):  # up to 3 s a reason (status 0 only)
        return None
    async with unit_of_work(engine.ports.sessionmaker) as session:
        if not await _holds(session, engine, chain, lease):
            return None
        return await record.record(
            session, moving, decisions, seen, crasher=engine.ports.crasher, reasons=reasons
        )


async def _idle_off_page(
    session: AsyncSession,
    chain_id: int,
    rows: Sequence[InFlight],
    shown: set[WalletId],
    limit: int,
) -> set[WalletId]:
    """The lanes shown `nonce_gap` that a page cut by `limit` left out and that have nothing
    in flight: no pass would read them, so their reason stayed for ever (one more read, only
    on a cut page with such lanes off it)."""
    if len(rows) < limit:
        return set()
    off = shown - {tx.wallet_id for tx in rows}
    if not off:
        return set()
    return off - await repository.lanes_in_flight(session, chain_id, sorted(off))


async def _leased(engine: Engine, chain: ChainConfig, lease: _Lease) -> bool:
    """Whether the pass still holds its tracker lease (monotonic time, which goes on while a
    process is stopped). Past its end the lease is renewed if no other process took it (one
    UPDATE): a pass slower than the lease (a slow node) was thrown away, so a worker alone
    behind one never recorded a mined request. Logged when another took it."""
    if lease.until is None or time.monotonic() < lease.until:
        return True
    ports = engine.ports
    renewed_at = time.monotonic()
    async with single_statements(engine_of(ports.sessionmaker)) as db:
        kept = await chains.keep_tracker_lease(
            db, chain.chain_id, owner=ports.owner, ttl_s=ports.config.tracker_lease_s
        )
    if kept:
        lease.until = renewed_at + ports.config.tracker_lease_s
        return True
    log.warning("tracker.lease_ran_out", chain_id=chain.chain_id)
    return False


async def _holds(session: AsyncSession, engine: Engine, chain: ChainConfig, lease: _Lease) -> bool:
    """Whether the pass still holds its tracker lease, checked in the DB transaction that
    records or stores a bump (the row share-locked till its commit): a stall between
    `_leased` and that commit wrote beside the lease's new holder. Logged when not."""
    if lease.until is None:
        return True
    if await chains.holds_tracker_lease(session, chain.chain_id, owner=engine.ports.owner):
        return True
    log.warning("tracker.lease_ran_out", chain_id=chain.chain_id)
    return False


async def _show_gaps(engine: Engine, chain: ChainConfig, changes: gaps.GapChanges) -> None:
    """Write the lanes that came to show, or no longer show, `nonce_gap` (one DB transaction,
    only then). A lane cleared whose wallet cannot sign here shows `signer_unavailable` (or
    `bad_signature`) again: the gap was shown over it, and the drains leave `nonce_gap`
    alone. A failed write is tried again by the next pass: the memory reads the lanes anew."""
    if not changes.found and not changes.cleared:
        return
    signers = engine.state.signers
    try:
        async with unit_of_work(engine.ports.sessionmaker) as session:
            await wallets.show_nonce_gaps(
                session,
                chain.chain_id,
                found=[gap.wallet_id for gap in changes.found],
                cleared={w: signers.reason_down(w) for w in changes.cleared},
            )
    except Exception as exc:  # the pass goes on; its bumps are held by the decisions anyway
        memory = engine.state.tracking.get(chain.chain_id)
        if memory is not None:
            memory.gaps.loaded_at = None
        log.warning("lane.paused_reason_failed", chain_id=chain.chain_id, error=repr(exc)[:300])


async def _replace(
    engine: Engine,
    chain: ChainConfig,
    rows: Sequence[InFlight],
    decisions: dict[TxId, Decision],
    *,
    lease: _Lease,
) -> list[SentAttempt]:
    """Sign and store each bump and cancel, one DB transaction each, committed before the
    send (write-ahead, as in a drain), while the pass holds its lease. A wallet whose
    backend failed here before is probed first, and the lane's `paused_reason` says when
    its signer fails (issue 20)."""
    ports, state = engine.ports, engine.state
    wallet_of = {tx.id: tx.wallet_id for tx in rows}
    stored: list[SentAttempt] = []
    wanted_all = judge.replacements(rows, decisions)
    unchanged = await _unreadable_unchanged(engine, {wallet_of[w.tx_id] for w in wanted_all})
    for wanted in wanted_all:
        wallet_id = wallet_of[wanted.tx_id]
        if wallet_id in unchanged:
            continue  # its key failed to decrypt and its row is as it was: no fee read, no try
        if not state.signers.can_sign(wallet_id):
            continue  # not known to be back: bump it once a probe of the backend passes
        market = await state.fees.fees(engine.rpc(chain.chain_id), chain)
        if not await _leased(engine, chain, lease):
            # The lease is another's: this pass sends nothing more, not even the attempts
            # stored so far; their bytes are committed, and the next holder re-sends them.
            break
        try:
            async with unit_of_work(ports.sessionmaker) as session:
                if not await _holds(session, engine, chain, lease):
                    break  # as above: the next holder re-sends what is stored
                attempt = await replace(
                    session,
                    chain,
                    wanted.tx_id,
                    market=market,
                    signers=state.signers,
                    config=ports.config,
                    cancel=wanted.cancel,
                )
        except SignerUnavailable as exc:  # its backend is down, signed badly, or its sealed
            # key cannot be read (KeyUnreadable): bump it later; the other bumps go on
            bad = isinstance(exc, SignatureFailed)
            if state.signers.note_unavailable(wallet_id, bad=bad):
                fault = bad or isinstance(exc, KeyUnreadable)  # to look into, not an outage
                (log.error if fault else log.warning)(
                    f"tracker.{exc.code}",
                    tx_id=str(wanted.tx_id),
                    wallet_id=str(wallet_id),
                    error=exc.code,
                    detail=exc.detail,
                )
            await show_paused(engine, chain.chain_id, wallet_id, exc.code)
            continue
        if attempt is not None:
            ports.crasher.reached(CrashPoint.BUMP_STORED)
            stored.append(attempt)
            if state.signers.note_signed(wallet_id):
                await show_paused(engine, chain.chain_id, wallet_id, None)
    return stored


async def _unreadable_unchanged(engine: Engine, wallet_ids: set[WalletId]) -> set[WalletId]:
    """The wallets among `wallet_ids` whose sealed key failed to decrypt here and whose row
    is unchanged since (read again, one statement, only when there are such wallets): as a
    drain leaves their lanes out (drain/sign.probe_paused), the tracker tries none of their
    bumps and cancels (each try was a fee read, a DB transaction and a decrypt, every round);
    a repaired row is tried at the next pass."""
    signers = engine.state.signers
    suspects = sorted(w for w in wallet_ids if signers.suspect(w))
    if not suspects:
        return set()
    async with read_only(engine.ports.sessionmaker) as session:
        rows = await wallets.get_wallets(session, suspects)
    return {wallet_id for wallet_id, wallet in rows.items() if signers.unreadable(wallet)}
