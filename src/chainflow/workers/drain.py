"""The drain round: the one place that opens the DB transactions of a drain of lanes.

    counts (RPC) → plan [tx] → estimate (RPC) → fail reverts [tx] → sign [tx, committed
    before any send] → send (RPC) → record [tx] → release refused nonces [tx each]

docs/engine.md draws it with the module of each step.
"""

import time
from collections.abc import Sequence

from chainflow.core.crashpoints import CrashPoint
from chainflow.core.types import WalletId
from chainflow.domain.transactions.config import ChainConfig
from chainflow.domain.transactions.drain.estimate import estimate_gas, fail_refused
from chainflow.domain.transactions.drain.plan import Counts, Ready, lane_counts, plan_lanes
from chainflow.domain.transactions.drain.sign import probe_paused, sign_lanes
from chainflow.domain.wallets.service import addresses_of
from chainflow.infra.db.uow import unit_of_work
from chainflow.workers.engine import Engine
from chainflow.workers.send import send_and_record


async def drain_lane(engine: Engine, chain: ChainConfig, wallet_id: WalletId) -> int:
    """One round for one (wallet, chain) lane; returns how many requests were signed."""
    return await drain_lanes(engine, chain, [wallet_id])


async def drain_lanes(engine: Engine, chain: ChainConfig, wallet_ids: Sequence[WalletId]) -> int:
    """One round for these lanes of one chain, batched: one planning read, one estimate batch,
    one signing transaction, one send batch and one record for all of them (the fixed cost
    of a round no longer grows with the number of wallets). Returns how many were signed.

    A lane this process is already draining is skipped: the running drain or the next round
    takes what is new, and estimating the same requests twice would only waste a round trip
    (the lane lock in the database is what keeps other processes out of the nonces).
    """
    draining = engine.state.draining
    lanes = [(w, chain.chain_id) for w in dict.fromkeys(wallet_ids)]
    mine = [lane for lane in lanes if lane not in draining]
    if not mine:
        return 0
    draining.update(mine)
    try:
        return await _drain(engine, chain, [wallet_id for wallet_id, _ in mine])
    finally:
        draining.difference_update(mine)


async def _drain(engine: Engine, chain: ChainConfig, wallet_ids: list[WalletId]) -> int:
    ports, state = engine.ports, engine.state
    rpc = engine.rpc(chain.chain_id)
    counts = await _counts(engine, chain, wallet_ids)
    if not counts:
        return 0
    now = await state.fees.market(rpc, chain)
    holding: set[WalletId] = set()
    async with unit_of_work(ports.sessionmaker) as session:
        plans = await plan_lanes(
            session,
            chain,
            counts,
            owner=ports.owner,
            config=ports.config,
            base_fee_wei=now.base_fee_wei,
            holding=holding,
        )
    if holding:
        state.leased_at[chain.chain_id] = time.monotonic()
    plans = probe_paused(plans, state.signers, chain)
    if not plans:
        return 0
    found = await estimate_gas(
        rpc, [plan.rows for plan in plans], buffer_percent=ports.config.gas_buffer_percent
    )
    if found.refused:
        async with unit_of_work(ports.sessionmaker) as session:
            await fail_refused(session, found.refused)
    ready = [
        Ready(plan.wallet, estimates, counts[plan.wallet.id], plan.rows)
        for plan, estimates in zip(plans, found.ready, strict=True)
        if estimates
    ]
    if not ready:
        return 0
    # The write-ahead boundary (DESIGN §6.3): nonces, signed bytes and hashes are committed
    # here, before the first send.
    async with unit_of_work(ports.sessionmaker) as session:
        sent = await sign_lanes(
            session, chain, ready, now.fees, signers=state.signers, config=ports.config
        )
        if sent:
            ports.crasher.reached(CrashPoint.NONCE_TAKEN)
    if sent:
        ports.crasher.reached(CrashPoint.ATTEMPT_STORED)
        await send_and_record(engine, chain, sent)
        engine.signal_others(chain.chain_id)
    return len(sent)


async def _counts(
    engine: Engine, chain: ChainConfig, wallet_ids: list[WalletId]
) -> dict[WalletId, Counts]:
    """The lanes' counts on the node; the wallets' addresses are read once per process."""
    known = engine.state.addresses
    unknown = [wallet_id for wallet_id in wallet_ids if wallet_id not in known]
    if unknown:
        async with unit_of_work(engine.ports.sessionmaker) as session:
            known.update(await addresses_of(session, unknown))
    addresses = {w: known[w] for w in wallet_ids if w in known}
    return await lane_counts(engine.rpc(chain.chain_id), addresses)
