"""DCA swaps on a Uniswap V2 router: each run's request is built from a quote taken when the
run starts, in the worker's schedule pass at the head of the round that signs it.

Where the quote is taken, and what protects a stale one: the run's request is built (quote,
`amountOutMin`, router deadline) in the same worker round that estimates and signs it, a few
milliseconds later. If it is not signed at once (a busy lane, a node outage), `valid_until` =
now + `deadline_s` expires it unsigned, and the router's own deadline refuses it on chain
after the same time; within that window `amountOutMin` holds the price to the slippage. The
drain estimates gas again before signing: a price that moved past the slippage in between
reverts that estimate, and the request fails with the router's reason, no nonce taken. A
failed or reverted swap is never submitted again: the next occurrence quotes afresh.
"""

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from eth_abi.abi import decode
from sqlalchemy.ext.asyncio import AsyncSession

from chainflow.core.addresses import checksum_address
from chainflow.core.errors import ChainflowError
from chainflow.domain.schedules import repository
from chainflow.domain.schedules.models import Schedule
from chainflow.domain.schedules.plans import Planned
from chainflow.domain.schedules.schemas import NATIVE
from chainflow.domain.transactions.calldata import encode_call
from chainflow.domain.transactions.node import ChainRpc
from chainflow.domain.transactions.schemas import TxCreate
from chainflow.domain.wallets import service as wallets
from chainflow.infra.rpc.answers import hex_data, quantity
from chainflow.infra.rpc.client import RpcCallError
from chainflow.infra.rpc.errors import RpcFailure, revert_reason

# The research note's pitfall 1: an estimate taken in the same second as the pair's last
# update misses the ~44k gas of its first update in a new second. Padded as it measured.
GAS_PAD_PERCENT = 20
GAS_PAD = 50_000
MAX_UINT256 = 2**256 - 1


class QuoteFailed(ChainflowError):
    code = "dca_quote_failed"


@dataclass
class DcaBuilder:
    """Builds a `dca_swap` run's request against one chain's node."""

    rpc: ChainRpc
    _weth: dict[str, str] = field(default_factory=dict)  # router → its WETH

    async def __call__(self, session: AsyncSession, schedule: Schedule, now: datetime) -> Planned:
        action = schedule.action
        router, amount_in = str(action["router"]), int(action["amount_in"])
        wallet = await wallets.get_wallet(session, schedule.wallet_id, lanes=False)
        token_in, token_out = str(action["token_in"]), str(action["token_out"])
        if token_in != NATIVE:
            allowance = await self._uint(
                token_in, "allowance(address,address)", [wallet.address, router]
            )
            if allowance < amount_in:
                return Planned(
                    body=None, skip_reason=await _short(session, schedule, allowance, amount_in)
                )
        weth = await self._weth_of(router)
        path = [weth if t == NATIVE else t for t in (token_in, token_out)]
        quote = await self._quote(router, amount_in, path)
        if quote <= 0:
            return Planned(body=None, skip_reason="the pool quotes 0 out for amount_in")
        max_price = action.get("max_price")
        price = Decimal(amount_in) / Decimal(quote)
        if max_price is not None and price > Decimal(max_price):
            return Planned(
                body=None,
                skip_reason=f"price {price:.6g} (amount_in/quote) is above max_price {max_price}",
                quote_out=quote,
            )
        minimum = quote * (10_000 - int(action["slippage_bps"])) // 10_000
        deadline = now + timedelta(seconds=int(action["deadline_s"]))
        function, args = _swap_call(
            token_in=token_in,
            token_out=token_out,
            amount_in=amount_in,
            minimum=minimum,
            path=path,
            to=wallet.address,
            deadline=int(deadline.timestamp()),
            fee_on_transfer=bool(action.get("fee_on_transfer")),
        )
        value = amount_in if token_in == NATIVE else 0
        gas_limit = action.get("gas_limit") or await self._padded_gas(
            wallet.address, router, value, encode_call(function, args)
        )
        body = TxCreate.model_validate(
            {
                "chain_id": schedule.chain_id,
                "wallet": str(schedule.wallet_id),
                "to": router,
                "value": str(value),
                "function": function,
                "args": args,
                "gas_limit": gas_limit,
                "valid_until": deadline.isoformat(),
            }
        )
        return Planned(body=body, amount=amount_in, quote_out=quote)

    async def _weth_of(self, router: str) -> str:
        if router not in self._weth:
            raw = await self._call(router, encode_call("WETH()", []))
            self._weth[router] = checksum_address("0x" + raw[-20:].hex())
        return self._weth[router]

    async def _quote(self, router: str, amount_in: int, path: list[str]) -> int:
        data = encode_call("getAmountsOut(uint256,address[])", [str(amount_in), path])
        (amounts,) = _decoded(["uint256[]"], await self._call(router, data), router)
        return int(amounts[-1]) if amounts else 0

    async def _uint(self, to: str, function: str, args: list[Any]) -> int:
        (value,) = _decoded(["uint256"], await self._call(to, encode_call(function, args)), to)
        return int(value)

    async def _call(self, to: str, data: bytes) -> bytes:
        try:
            raw = await self.rpc.call("eth_call", [{"to": to, "data": "0x" + data.hex()}, "latest"])
        except RpcCallError as exc:
            failure = RpcFailure(message=exc.message, code=exc.rpc_code, data=exc.data)
            reason = revert_reason(failure) or exc.message
            raise QuoteFailed(f"eth_call to {to} failed: {reason}"[:400]) from None
        return bytes.fromhex(hex_data(raw)[2:])

    async def _padded_gas(self, sender: str, to: str, value: int, data: bytes) -> int:
        call = {"from": sender, "to": to, "value": hex(value), "data": "0x" + data.hex()}
        try:
            estimate = quantity(await self.rpc.call("eth_estimateGas", [call]), bits=63)
        except RpcCallError as exc:
            failure = RpcFailure(message=exc.message, code=exc.rpc_code, data=exc.data)
            reason = revert_reason(failure) or exc.message
            raise QuoteFailed(f"the swap's gas estimate reverted: {reason}"[:400]) from None
        return estimate * (100 + GAS_PAD_PERCENT) // 100 + GAS_PAD


async def _short(session: AsyncSession, schedule: Schedule, allowance: int, amount_in: int) -> str:
    """Why a run waits for the allowance: the schedule's approve not final yet, or (review:
    the reason named an approve confirmed long before) the allowance spent or replaced."""
    short = f"the router's allowance ({allowance}) is below amount_in ({amount_in})"
    approval = schedule.approval_tx_id
    status = None if approval is None else await repository.transaction_status(session, approval)
    if approval is not None and status is not None and status not in repository.TERMINAL:
        return f"{short}; waiting for the approve transaction {approval}"
    return (
        f"{short}: approve the router for at least amount_in from the wallet (approve sets "
        "the allowance, it does not add to it), or cancel this schedule"
    )


def _decoded(types: list[str], raw: bytes, source: str) -> tuple[Any, ...]:
    """An eth_call's answer; one that does not decode (a contract that is not what the
    schedule says) fails the run, not the pass of every schedule of the chain."""
    try:
        return tuple(decode(types, raw))
    except Exception:
        raise QuoteFailed(f"{source} answered with data that is not {', '.join(types)}") from None


def _swap_call(
    *,
    token_in: str,
    token_out: str,
    amount_in: int,
    minimum: int,
    path: list[str],
    to: str,
    deadline: int,
    fee_on_transfer: bool,
) -> tuple[str, list[Any]]:
    suffix = "SupportingFeeOnTransferTokens" if fee_on_transfer else ""
    if token_in == NATIVE:
        name = f"swapExactETHForTokens{suffix}(uint256,address[],address,uint256)"
        return name, [str(minimum), path, to, str(deadline)]
    kind = "ETH" if token_out == NATIVE else "Tokens"
    name = f"swapExactTokensFor{kind}{suffix}(uint256,uint256,address[],address,uint256)"
    return name, [str(amount_in), str(minimum), path, to, str(deadline)]


def approval_total(action: dict[str, Any], *, budget: int | None, max_runs: int | None) -> int:
    """What the approve before the first swap grants: unlimited only when asked, else what the
    schedule can spend (its budget, or amount_in * max_runs, whichever is less)."""
    if action.get("approve") == "unlimited":
        return MAX_UINT256
    amount = int(action["amount_in"])
    caps = [c for c in (budget, None if max_runs is None else amount * max_runs) if c is not None]
    return min(caps)


def still_to_spend(schedule: Schedule, pending: int = 0) -> int:
    """What a schedule's runs can still take from the router's allowance: the budget left, or
    amount_in x the runs left, whichever is less, plus `pending` (the amount of its runs not
    finished yet: one that fails unspent is given back and spends again); MAX_UINT256 for an
    unlimited approve."""
    action = schedule.action
    if action.get("approve") == "unlimited":
        return MAX_UINT256
    amount = int(action["amount_in"])
    caps = [] if schedule.budget is None else [schedule.budget - schedule.spent]
    if schedule.max_runs is not None:
        caps.append(amount * (schedule.max_runs - schedule.runs))
    return max(0, min(caps)) + pending if caps else MAX_UINT256


def approve_body(
    schedule: Schedule,
    others: Sequence[Schedule] = (),
    pending: Mapping[uuid.UUID, int] | None = None,
) -> TxCreate:
    """The approve before the schedule's first swap. ERC-20 `approve` sets the allowance, it
    does not add to it: with `others` (the wallet's live schedules spending the same token
    through the same router) it grants what all of them can still take, unlimited if one of
    them is (audit: a second schedule's approve cut the first one's allowance to its own, and
    both stalled with runs left). `pending` (per schedule, the amount of its runs not finished
    yet) is granted too: such a run that fails unspent is given back to its budget, and the
    allowance must still have it (review: counted as spent, the first schedule skipped
    forever). A pending run that succeeds leaves at most that much granted over."""
    action = schedule.action
    pending = pending or {}
    total = min(
        MAX_UINT256,
        sum(still_to_spend(row, pending.get(row.id, 0)) for row in (schedule, *others)),
    )
    return TxCreate.model_validate(
        {
            "chain_id": schedule.chain_id,
            "wallet": str(schedule.wallet_id),
            "to": action["token_in"],
            "function": "approve(address,uint256)",
            "args": [action["router"], str(total)],
        }
    )
