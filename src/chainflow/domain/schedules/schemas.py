"""API shapes of schedules and their runs (DESIGN §13 "Schedules")."""

import uuid
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from chainflow.core.addresses import checksum_address
from chainflow.core.bodies import RequestBody
from chainflow.core.fields import AddressStr, ChainId, UtcTimestamp, WalletRef, WeiStr
from chainflow.domain.schedules.models import Schedule, ScheduleRun
from chainflow.domain.transactions.schemas import TxCreate

NATIVE = "native"
MAX_RUNS = 1_000_000
MAX_INTERVAL_S = 366 * 86_400


class TriggerIn(RequestBody):
    """Exactly one of `cron` (5 fields, in `timezone`, default UTC), `interval_s`, `at`."""

    cron: str | None = Field(None, max_length=200, examples=["0 9 * * 1-5"])
    timezone: str | None = Field(None, max_length=64, examples=["Europe/Berlin"])
    interval_s: int | None = Field(None, ge=1, le=MAX_INTERVAL_S)
    at: UtcTimestamp | None = None

    @field_validator("at")
    @classmethod
    def _aware(cls, value: datetime | None) -> datetime | None:
        return aware(value)


def aware(value: datetime | None) -> datetime | None:
    """A `UtcTimestamp` (checked already: it has a time zone and a year in UTC), in UTC."""
    return None if value is None else value.astimezone(UTC)


class TransactionAction(RequestBody):
    """The body of POST /v1/transactions without `wallet` and `chain_id` (checked as one)."""

    model_config = ConfigDict(extra="allow", strict=True)

    type: Literal["transaction"]


def _token(value: str) -> str:
    if value == NATIVE:
        return value
    try:
        return checksum_address(value)
    except ValueError:
        raise ValueError('must be "native" or a 0x-prefixed 20-byte address') from None


Token = Annotated[str, Field(max_length=42)]


class DcaAction(RequestBody):
    """Swap `amount_in` of `token_in` for `token_out` on a Uniswap V2 router at each run."""

    type: Literal["dca_swap"]
    router: AddressStr
    token_in: Token
    token_out: Token
    amount_in: WeiStr = Field(description="base units of token_in per run")
    slippage_bps: int = Field(ge=0, le=5_000, description="amountOutMin = quote * (1 - bps/1e4)")
    deadline_s: int = Field(ge=10, le=3_600, description="router deadline and signing window")
    max_price: str | None = Field(
        None,
        max_length=80,
        description="skip the run when amount_in / quote (base units) is above this decimal",
    )
    fee_on_transfer: bool = False
    approve: Literal["exact", "unlimited"] = Field(
        "exact", description="allowance granted before the first swap: what the runs need"
    )
    gas_limit: int | None = Field(None, ge=21_000, le=10_000_000)

    @field_validator("token_in", "token_out")
    @classmethod
    def _tokens(cls, value: str) -> str:
        return _token(value)

    @field_validator("amount_in")
    @classmethod
    def _positive(cls, value: int) -> int:
        if value <= 0:
            raise ValueError("must be at least 1")
        return value

    @field_validator("max_price")
    @classmethod
    def _price(cls, value: str | None) -> str | None:
        if value is None:
            return None
        try:
            price = Decimal(value)
        except InvalidOperation:
            raise ValueError("must be a decimal number, e.g. 0.0005") from None
        if not price.is_finite() or price <= 0:
            raise ValueError("must be a positive decimal number")
        return value

    @model_validator(mode="after")
    def _pair(self) -> "DcaAction":
        if self.token_in == self.token_out:
            raise ValueError("token_in and token_out must differ")
        return self


Action = Annotated[TransactionAction | DcaAction, Field(discriminator="type")]


class ScheduleCreate(RequestBody):
    wallet: WalletRef = Field(description="wallet id or address")
    chain_id: ChainId
    trigger: TriggerIn
    start_at: UtcTimestamp | None = None
    end_at: UtcTimestamp | None = None
    max_runs: int | None = Field(None, ge=1, le=MAX_RUNS)
    misfire: Literal["skip", "run_once"] = "skip"
    overlap: Literal["skip"] = "skip"
    budget: WeiStr | None = Field(None, description="total amount_in (or value) the runs may spend")
    action: Action

    @field_validator("start_at", "end_at")
    @classmethod
    def _aware(cls, value: datetime | None) -> datetime | None:
        return aware(value)

    @model_validator(mode="after")
    def _template(self) -> "ScheduleCreate":
        if self.end_at is not None and self.start_at is not None and self.end_at <= self.start_at:
            raise ValueError("end_at must be after start_at")
        if isinstance(self.action, TransactionAction):
            self.transaction_body()  # raises ValueError with the template's first error
        return self

    def transaction_body(self) -> TxCreate:
        """The request each run submits (a `transaction` action)."""
        return template_body(self.action_dict(), wallet=self.wallet, chain_id=self.chain_id)

    def action_dict(self) -> dict[str, Any]:
        return self.action.model_dump(mode="json", exclude_none=True)


def template_body(action: dict[str, Any], *, wallet: str, chain_id: int) -> TxCreate:
    fields = {k: v for k, v in action.items() if k != "type"}
    if "wallet" in fields or "chain_id" in fields:
        raise ValueError("action: wallet and chain_id belong to the schedule, not its action")
    try:
        return TxCreate.model_validate({**fields, "wallet": wallet, "chain_id": chain_id})
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        raise ValueError(f"action.{where}: {first['msg']}") from None


class ScheduleUpdate(RequestBody):
    status: Literal["active", "paused"]


class ScheduleRead(BaseModel):
    id: uuid.UUID
    status: str
    wallet: uuid.UUID
    chain_id: int
    trigger: dict[str, Any]
    start_at: datetime
    end_at: datetime | None
    max_runs: int | None
    misfire: str
    overlap: str
    budget: WeiStr | None
    spent: WeiStr
    action: dict[str, Any]
    next_run_at: datetime | None
    runs: int
    approval_transaction_id: uuid.UUID | None = None
    created_at: datetime

    @classmethod
    def of(cls, row: Schedule) -> "ScheduleRead":
        return cls(
            id=row.id,
            status=row.status.value,
            wallet=row.wallet_id,
            chain_id=row.chain_id,
            trigger=row.trigger,
            start_at=row.start_at,
            end_at=row.end_at,
            max_runs=row.max_runs,
            misfire=row.misfire.value,
            overlap=row.overlap,
            budget=row.budget,
            spent=row.spent,
            action=row.action,
            next_run_at=row.next_run_at,
            runs=row.runs,
            approval_transaction_id=row.approval_tx_id,
            created_at=row.created_at,
        )


class ScheduleList(BaseModel):
    items: list[ScheduleRead]
    next_cursor: str | None


class RunRead(BaseModel):
    id: uuid.UUID
    scheduled_for: datetime
    status: str
    transaction_id: uuid.UUID | None = None
    reason: str | None = None
    amount_in: WeiStr | None = None
    quote_out: WeiStr | None = None

    @classmethod
    def of(cls, row: ScheduleRun) -> "RunRead":
        return cls(
            id=row.id,
            scheduled_for=row.scheduled_for,
            status=row.status.value,
            transaction_id=row.transaction_id,
            reason=row.reason,
            amount_in=row.amount_in,
            quote_out=row.quote_out,
        )


class RunList(BaseModel):
    items: list[RunRead]
    next_cursor: str | None
