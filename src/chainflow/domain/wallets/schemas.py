"""API shapes of wallets and lanes. No shape ever carries a private key out."""

import uuid
from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, SecretStr, Strict, model_validator

from chainflow.core.bodies import RequestBody
from chainflow.core.fields import ChainId, TextStr, WeiStr
from chainflow.domain.wallets.models import SignerKind, Wallet, WalletStatus

ChainIds = Annotated[list[ChainId], Field(max_length=100)]


class WalletCreate(RequestBody):
    """Import `private_key`, or set `generate: true` to create a key server-side."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"generate": True, "label": "payouts", "chain_ids": [31337]},
                {"private_key": "0x…64 hex digits…", "label": "treasury", "chain_ids": [1, 8453]},
            ]
        },
    )

    private_key: SecretStr | None = None
    generate: bool = False
    label: TextStr | None = Field(None, max_length=200)
    chain_ids: ChainIds = Field(default_factory=list)

    @model_validator(mode="after")
    def _one_source(self) -> "WalletCreate":
        if (self.private_key is None) == (not self.generate):
            raise ValueError("give exactly one of private_key or generate: true")
        return self


class WalletUpdate(RequestBody):
    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"status": "paused"}, {"label": "ops"}]}
    )

    status: Annotated[WalletStatus, Strict(False)] | None = None  # its value, as text
    label: TextStr | None = Field(None, max_length=200)

    @model_validator(mode="after")
    def _refuse_null_status(self) -> "WalletUpdate":
        if "status" in self.model_fields_set and self.status is None:
            raise ValueError("status cannot be null")
        return self


class WalletRead(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "id": "0b9c2a5e-7d7e-4c3f-9a43-3f8b1b6c2d10",
                    "address": "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266",
                    "label": "payouts",
                    "status": "active",
                    "signer_kind": "local",
                    "chain_ids": [31337],
                    "created_at": "2026-11-23T12:00:00Z",
                    "updated_at": "2026-11-23T12:00:00Z",
                }
            ]
        }
    )

    id: uuid.UUID
    address: str
    label: str | None
    status: WalletStatus
    signer_kind: SignerKind
    chain_ids: list[int]
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, wallet: Wallet) -> "WalletRead":
        return cls(
            id=wallet.id,
            address=wallet.address,
            label=wallet.label,
            status=wallet.status,
            signer_kind=wallet.signer_kind,
            chain_ids=[lane.chain_id for lane in wallet.chains if lane.enabled],
            created_at=wallet.created_at,
            updated_at=wallet.updated_at,
        )


class WalletList(BaseModel):
    items: list[WalletRead]
    next_cursor: str | None = Field(None, description="pass as `cursor` for the next page")


class LaneRead(BaseModel):
    """A wallet on one chain: our nonce cursor next to what the chain says."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "wallet_id": "0b9c2a5e-7d7e-4c3f-9a43-3f8b1b6c2d10",
                    "chain_id": 31337,
                    "enabled": True,
                    "next_nonce": 7,
                    "chain_nonce": 7,
                    "in_flight": 0,
                    "balance_wei": "10000000000000000000000",
                    "rpc_error": None,
                }
            ]
        }
    )

    wallet_id: uuid.UUID
    chain_id: int
    enabled: bool
    next_nonce: int
    chain_nonce: int | None = Field(description="pending nonce from the chain; null if no RPC")
    in_flight: int = Field(description="requests of this lane signed or sent, not yet seen mined")
    balance_wei: WeiStr | None
    rpc_error: str | None = None
