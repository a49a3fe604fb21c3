"""API shapes of the chain registry."""

from datetime import datetime
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, JsonValue, model_validator

from chainflow.core.bodies import RequestBody
from chainflow.core.fields import ChainId, TextStr, WeiStr
from chainflow.core.urls import check_http_url, redact_url
from chainflow.domain.chains.models import Chain

RpcUrl = Annotated[str, AfterValidator(check_http_url)]
RpcUrls = Annotated[list[RpcUrl], Field(min_length=1, max_length=10)]

_CHAIN_EXAMPLE: dict[str, JsonValue] = {
    "chain_id": 8453,
    "name": "Base",
    "native_symbol": "ETH",
    "rpc_urls": ["https://mainnet.base.org"],
    "eip1559": True,
    "confirmations": 10,
    "block_time_s": 2,
    "max_fee_per_gas_cap": "500000000000",
}


class ChainCreate(RequestBody):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [_CHAIN_EXAMPLE]})

    chain_id: ChainId
    name: TextStr = Field(min_length=1, max_length=100)
    native_symbol: TextStr = Field(min_length=1, max_length=16)
    rpc_urls: RpcUrls
    eip1559: bool
    confirmations: int = Field(ge=0, le=10_000)
    block_time_s: float = Field(12.0, gt=0, le=3600)
    max_fee_per_gas_cap: WeiStr | None = None
    max_priority_fee_per_gas_cap: WeiStr | None = None
    enabled: bool = True


class ChainUpdate(RequestBody):
    """Fields to change; a cap set to null removes it."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"confirmations": 20, "enabled": True}]},
    )

    name: TextStr | None = Field(None, min_length=1, max_length=100)
    native_symbol: TextStr | None = Field(None, min_length=1, max_length=16)
    rpc_urls: RpcUrls | None = None
    eip1559: bool | None = None
    confirmations: int | None = Field(None, ge=0, le=10_000)
    block_time_s: float | None = Field(None, gt=0, le=3600)
    max_fee_per_gas_cap: WeiStr | None = None
    max_priority_fee_per_gas_cap: WeiStr | None = None
    enabled: bool | None = None

    @model_validator(mode="after")
    def _refuse_null(self) -> "ChainUpdate":
        nullable = {"max_fee_per_gas_cap", "max_priority_fee_per_gas_cap"}
        for field in self.model_fields_set - nullable:
            if getattr(self, field) is None:
                raise ValueError(f"{field} cannot be null")
        return self


class ChainRead(BaseModel):
    """A chain; RPC URLs are shown without path or query, which may hold a provider key."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {**_CHAIN_EXAMPLE, "rpc_urls": ["https://mainnet.base.org"], "enabled": True}
            ]
        }
    )

    chain_id: int
    name: str
    native_symbol: str
    eip1559: bool
    confirmations: int
    block_time_s: float
    max_fee_per_gas_cap: WeiStr | None
    max_priority_fee_per_gas_cap: WeiStr | None
    enabled: bool
    rpc_urls: list[str]
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, chain: Chain) -> "ChainRead":
        return cls(
            chain_id=chain.chain_id,
            name=chain.name,
            native_symbol=chain.native_symbol,
            eip1559=chain.eip1559,
            confirmations=chain.confirmations,
            block_time_s=chain.block_time_s,
            max_fee_per_gas_cap=chain.max_fee_per_gas_cap,
            max_priority_fee_per_gas_cap=chain.max_priority_fee_per_gas_cap,
            enabled=chain.enabled,
            rpc_urls=[redact_url(url) for url in chain.rpc_urls],
            created_at=chain.created_at,
            updated_at=chain.updated_at,
        )


class ChainList(BaseModel):
    items: list[ChainRead]


class ChainSeed(ChainCreate):
    """One entry of the chain seed file: the API's rules, but RPC URLs may be left out (a
    public chain is seeded disabled until an operator points it at a provider)."""

    rpc_urls: Annotated[list[RpcUrl], Field(max_length=10)] = Field(default_factory=list)
    block_time_s: float = Field(gt=0, le=3600)
    enabled: bool = False
