"""`GET /v1/lanes`: every enabled lane's pending work next to what its chain says (issue 22)."""

import base64
import binascii
import uuid
from collections import defaultdict
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, Field

from chainflow.api.chain_watch import ChainWatch
from chainflow.api.deps import ReadKey, SessionmakerDep, unrestricted_only
from chainflow.api.responses import problem_responses
from chainflow.core.errors import InvalidInput
from chainflow.core.fields import ChainId, WeiStr
from chainflow.core.numerals import ascii_int
from chainflow.domain.chains import service as chains
from chainflow.domain.transactions.lane_stats import LaneStats, lane_stats
from chainflow.domain.wallets import service as wallets
from chainflow.infra.db.uow import unit_of_work

router = APIRouter(
    prefix="/v1/lanes",
    tags=["wallets"],
    dependencies=[unrestricted_only("list every lane")],  # issue 21
)


class LaneSummary(BaseModel):
    wallet_id: uuid.UUID
    address: str
    label: str | None
    wallet_status: str
    chain_id: int
    queued: int = Field(description="requests queued (no nonce yet)")
    in_flight: int = Field(description="requests signed, submitted or mined, not yet final")
    oldest_pending_at: datetime | None = Field(description="creation of the oldest non-final")
    next_nonce: int = Field(description="the nonce the lane assigns next")
    chain_nonce: int | None = Field(description="the node's pending nonce; null: no answer")
    balance_wei: WeiStr | None = Field(description="null: no answer")


class LaneList(BaseModel):
    items: list[LaneSummary]
    next_cursor: str | None = Field(None, description="pass as `cursor` for the next page")


@router.get("", responses=problem_responses(401, 403, 404, 422))
async def list_lanes(
    request: Request,
    sessionmaker: SessionmakerDep,
    _key: ReadKey,
    chain_id: Annotated[ChainId | None, Query()] = None,
    wallet: Annotated[str | None, Query(max_length=64, description="id or address")] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
) -> LaneList:
    """Enabled lanes by chain and address: queued and in-flight counts and the oldest pending
    request (from the database), next to the node's pending nonce and the balance, which this
    API process reads at most once per CHAINFLOW_CONSOLE_CHAIN_READ_S per lane."""
    async with unit_of_work(sessionmaker) as session:
        wallet_id = (await wallets.get_wallet(session, wallet)).id if wallet else None
        stats = await lane_stats(session)
        urls = {c.chain_id: c.rpc_urls for c in await chains.list_chains(session) if c.enabled}
    after = _decode(cursor)
    rows = sorted(
        (
            s
            for s in stats
            if (chain_id is None or s.chain_id == chain_id)
            and (wallet_id is None or s.wallet_id == wallet_id)
            and (after is None or (s.chain_id, s.wallet) > after)
        ),
        key=lambda s: (s.chain_id, s.wallet),
    )
    page = rows[:limit]
    next_cursor = _encode(page[-1]) if len(rows) > limit else None
    found = await _read_chains(request.app.state.chain_watch, urls, page)
    return LaneList(items=[_summary(s, found) for s in page], next_cursor=next_cursor)


async def _read_chains(
    watch: ChainWatch, urls: dict[int, list[str]], page: list[LaneStats]
) -> dict[tuple[int, str], tuple[int, int]]:
    by_chain: dict[int, list[str]] = defaultdict(list)
    for s in page:
        if urls.get(s.chain_id):
            by_chain[s.chain_id].append(s.wallet)
    found: dict[tuple[int, str], tuple[int, int]] = {}
    for chain, addresses in by_chain.items():
        for address, lane in (await watch.lanes(chain, urls[chain], addresses)).items():
            found[(chain, address)] = (lane.pending_nonce, lane.balance_wei)
    return found


def _summary(s: LaneStats, found: dict[tuple[int, str], tuple[int, int]]) -> LaneSummary:
    chain_nonce, balance = found.get((s.chain_id, s.wallet), (None, None))
    assert s.wallet_id is not None  # noqa: S101 - lane_stats always sets it
    return LaneSummary(
        wallet_id=s.wallet_id,
        address=s.wallet,
        label=s.label,
        wallet_status=s.wallet_status,
        chain_id=s.chain_id,
        queued=s.queued,
        in_flight=s.in_flight,
        oldest_pending_at=s.oldest_pending_at,
        next_nonce=s.next_nonce,
        chain_nonce=chain_nonce,
        balance_wei=balance,
    )


def _encode(last: LaneStats) -> str:
    raw = f"{last.chain_id}|{last.wallet}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode(cursor: str | None) -> tuple[int, str] | None:
    if cursor is None:
        return None
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        text, address = raw.split("|")
        chain_id = ascii_int(text, max_digits=16)
        if chain_id is None:
            raise ValueError("not a chain id")
        return chain_id, address
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise InvalidInput("cursor is not one this API returned") from None
