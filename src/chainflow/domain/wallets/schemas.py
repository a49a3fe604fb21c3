"""API shapes of wallets and lanes. No shape ever carries a private key out."""

import uuid
from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, Strict, model_validator

from chainflow.core.bodies import RequestBody
from chainflow.core.fields import ChainId, LabelStr, TextStr, WeiStr
from chainflow.core.restrictions import UNRESTRICTED, Restrictions
from chainflow.domain.wallets.binding import SignerRequest
from chainflow.domain.wallets.kinds import SignerKind
from chainflow.domain.wallets.models import Wallet, WalletStatus

ChainIds = Annotated[list[ChainId], Field(max_length=100)]


class SignerSpec(RequestBody):
    """A key kept by a signing backend: generated in it, or found by label / key id."""

    model_config = ConfigDict(extra="forbid")

    type: Literal["pkcs11", "aws_kms"]
    generate: bool = False
    key_label: TextStr | None = Field(None, min_length=1, max_length=200)
    key_id: TextStr | None = Field(None, min_length=1, max_length=512)

    @model_validator(mode="after")
    def _one_key(self) -> "SignerSpec":
        reference = self.key_label if self.type == "pkcs11" else self.key_id
        other = self.key_id if self.type == "pkcs11" else self.key_label
        if other is not None:
            name = "key_id" if self.type == "pkcs11" else "key_label"
            raise ValueError(f"{name} does not apply to signer type {self.type}")
        if (reference is None) == (not self.generate):
            name = "key_label" if self.type == "pkcs11" else "key_id"
            raise ValueError(f"give exactly one of {name} or generate: true")
        return self

    def request(self) -> SignerRequest:
        return SignerRequest(
            kind=SignerKind(self.type),
            generate=self.generate,
            key_ref=self.key_label if self.type == "pkcs11" else self.key_id,
        )


class SignerRead(BaseModel):
    type: SignerKind
    key_ref: str | None = Field(description="token key label or KMS key id; null for local keys")


class WalletCreate(RequestBody):
    """Import `private_key`, set `generate: true` to create a key server-side, or give a
    `signer` to keep the key in an HSM / KMS (the local signer is the default)."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"generate": True, "label": "payouts", "chain_ids": [31337]},
                {"private_key": "0x…64 hex digits…", "label": "treasury", "chain_ids": [1, 8453]},
                {"signer": {"type": "pkcs11", "generate": True}, "chain_ids": [31337]},
                {"signer": {"type": "pkcs11", "key_label": "hot-1"}},
            ]
        },
    )

    private_key: SecretStr | None = None
    generate: bool = False
    label: LabelStr | None = Field(None, max_length=200)
    chain_ids: ChainIds = Field(default_factory=list)
    signer: SignerSpec | None = None

    @model_validator(mode="after")
    def _one_source(self) -> "WalletCreate":
        sources = (self.private_key is not None) + self.generate + (self.signer is not None)
        if sources != 1:
            raise ValueError("give exactly one of private_key, generate: true or signer")
        return self


class WalletUpdate(RequestBody):
    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"status": "paused"}, {"label": "ops"}]}
    )

    status: Annotated[WalletStatus, Strict(False)] | None = None  # its value, as text
    label: LabelStr | None = Field(None, max_length=200)

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
                    "signer": {"type": "local", "key_ref": None},
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
    signer: SignerRead
    chain_ids: list[int]
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, wallet: Wallet, reach: Restrictions = UNRESTRICTED) -> "WalletRead":
        """The wallet as `reach` may see it: only the chains within it in `chain_ids`."""
        enabled = [lane.chain_id for lane in wallet.chains if lane.enabled]
        return cls(
            id=wallet.id,
            address=wallet.address,
            label=wallet.label,
            status=wallet.status,
            signer_kind=wallet.signer_kind,
            signer=SignerRead(type=wallet.signer_kind, key_ref=wallet.key_ref),
            chain_ids=reach.visible_chains(enabled),
            created_at=wallet.created_at,
            updated_at=wallet.updated_at,
        )


class WalletList(BaseModel):
    items: list[WalletRead]
    next_cursor: str | None = Field(None, description="pass as `cursor` for the next page")


class LaneSettings(RequestBody):
    """Settings of a wallet on one chain; a field left out is left as it is."""

    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"low_balance_wei": "100000000000000000"}]}
    )

    low_balance_wei: WeiStr | None = Field(
        None,
        description="send wallet.low_balance once each time the balance falls below this "
        "(null: never)",
    )


PausedReason = Literal["signer_unavailable", "bad_signature", "nonce_gap", "key_unreadable"]


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
                    "paused_reason": None,
                    "signer_healthy": True,
                    "signer_error": None,
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
    paused_reason: PausedReason | None = Field(
        None,
        description="signer_unavailable: the engine's last try to sign for this lane found its "
        "HSM or KMS unreachable; bad_signature: its signer's signature was not a valid one for "
        "the wallet's key (a fault to look into); key_unreadable: its stored key cannot be "
        "decrypted with the configured master key (a tampered or moved row, or the wrong "
        "master key: repair the row or the key). Either way the lane waits (no nonce taken) "
        "and resumes by itself once a signature succeeds. nonce_gap: the chain's pending nonce "
        "is below the lowest nonce the lane has in flight (a reorg deeper than the chain's "
        "confirmations, a node reset): its requests cannot be mined and are not bumped until "
        "the chain's nonce reaches that nonce again (README, Operating Chainflow)",
    )
    low_balance_wei: WeiStr | None = None
    signer_healthy: bool | None = Field(
        None,
        description="whether the wallet's signing backend answered this API process just now "
        "(local keys: always; PKCS#11: the key found in the token; AWS KMS: the key enabled, "
        "asked at most every 5 s per key); false while paused_reason is key_unreadable; "
        "null when this process has no such backend",
    )
    signer_error: str | None = Field(None, description="why the signer is not healthy")
