"""Spending policies on the wire: PUT/GET /v1/wallets/{id}/policy and the evaluate answer."""

import re
import uuid
from datetime import datetime
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from chainflow.core.bodies import RequestBody
from chainflow.core.fields import AddressStr, ChainId, WeiStr

MAX_RECIPIENTS = 1000
MAX_SELECTORS = 100
MAX_LIMITS = 10
MAX_WINDOW_S = 366 * 24 * 3600
_SELECTOR = re.compile(r"0x[0-9a-f]{8}")


def _selector(value: str) -> str:
    lowered = value.lower()
    if not _SELECTOR.fullmatch(lowered):
        raise ValueError("a selector is 0x and 8 hex digits, e.g. 0xa9059cbb")
    return lowered


Selector = Annotated[str, Field(max_length=10), AfterValidator(_selector)]


class RecipientRule(RequestBody):
    """A recipient the wallet may send to; with `selectors`, only calls whose data starts
    with one of them (a request without data to this recipient is then refused)."""

    model_config = ConfigDict(extra="forbid")

    address: AddressStr
    selectors: list[Selector] | None = Field(None, max_length=MAX_SELECTORS)


class ValueLimit(RequestBody):
    """At most `max_value_wei` sent in any `window_s` seconds, counted per chain (`chain_id`
    absent: the limit applies on every chain, to each chain's own total)."""

    model_config = ConfigDict(extra="forbid")

    window_s: int = Field(ge=1, le=MAX_WINDOW_S)
    max_value_wei: WeiStr
    chain_id: ChainId | None = None


class PolicyRules(RequestBody):
    """A wallet's spending policy; a rule left out does not restrict."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "allowed_recipients": [
                        {
                            "address": "0x70997970C51812dc3A010C7d01b50e0d17dc79C8",
                            "selectors": ["0xa9059cbb"],
                        }
                    ],
                    "max_value_wei_per_tx": "1000000000000000000",
                    "limits": [{"window_s": 86400, "max_value_wei": "5000000000000000000"}],
                    "max_fee_per_gas_wei": "200000000000",
                    "max_cost_wei": "2000000000000000000",
                }
            ]
        },
    )

    allowed_recipients: list[RecipientRule] | None = Field(None, max_length=MAX_RECIPIENTS)
    max_value_wei_per_tx: WeiStr | None = None
    limits: list[ValueLimit] | None = Field(None, max_length=MAX_LIMITS)
    max_fee_per_gas_wei: WeiStr | None = None
    max_cost_wei: WeiStr | None = None

    def stored(self) -> dict[str, Any]:
        """The rules as kept in the database (wei as decimal strings, like the wire)."""
        return self.model_dump(mode="json", exclude_none=True)


class PolicyRead(BaseModel):
    wallet_id: uuid.UUID
    version: int
    updated_at: datetime
    rules: PolicyRules


class PolicyVerdict(BaseModel):
    """Whether a draft request would pass the wallet's policy now; `rule` names the first
    rule it breaks."""

    allowed: bool
    rule: str | None = None
    detail: str | None = None
