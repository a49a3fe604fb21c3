"""What a run submits: the request an action builds for one occurrence, or why it skips."""

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from chainflow.domain.schedules.models import Schedule
from chainflow.domain.transactions.schemas import TxCreate


@dataclass(frozen=True)
class Planned:
    """What a run submits, or why it is skipped; `amount` counts toward the budget."""

    body: TxCreate | None
    amount: int = 0
    skip_reason: str | None = None
    quote_out: int | None = None


# Builds the request of an action that needs the chain (a DCA swap: dca.py).
Builder = Callable[[AsyncSession, Schedule, datetime], Awaitable[Planned]]
