"""API shapes of webhook endpoints and deliveries. The secret appears in `WebhookCreated` only."""

import uuid
from datetime import datetime
from typing import Annotated
from urllib.parse import unquote, urlsplit

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, Strict, model_validator

from chainflow.core.bodies import RequestBody
from chainflow.core.fields import ChainId, TextStr, UtcTimestamp
from chainflow.core.urls import MASKED_USERINFO, check_http_url, shown_url
from chainflow.domain.webhooks.models import (
    DeliveryStatus,
    WebhookAttempt,
    WebhookDelivery,
    WebhookEndpoint,
)

MAX_FILTERS = 50
MAX_IDS = 100


def _deliverable(url: str) -> str:
    """An http(s) URL that a delivery can use as given (review): not the masked form answers
    show (sent back, it replaced the stored URL and its credentials), and credentials that
    HTTP Basic can carry."""
    parts = urlsplit(check_http_url(url))
    masked = parts.username == MASKED_USERINFO and parts.password is None
    if masked or parts.path.endswith("/***"):  # …/***: the form answers showed before
        raise ValueError(
            "is the masked form answers show (***@host): send the full URL, or leave url out"
            " to keep the stored one"
        )
    user, password = unquote(parts.username or ""), unquote(parts.password or "")
    if ":" in user:
        raise ValueError("must not have ':' in its user name (HTTP Basic)")
    try:
        (user + password).encode("latin-1")
    except UnicodeEncodeError:
        raise ValueError("must have credentials of Latin-1 characters (HTTP Basic)") from None
    return url


WebhookUrl = Annotated[str, Field(min_length=1, max_length=2048), AfterValidator(_deliverable)]
# An event type or a glob over them: `transaction.confirmed`, `transaction.*`, `*`.
EventGlob = Annotated[str, Field(min_length=1, max_length=100, pattern=r"^[a-z0-9_.*]+$")]
EventGlobs = Annotated[list[EventGlob], Field(min_length=1, max_length=MAX_FILTERS)]
# A filter lists at least one: null (or none given) is every wallet (chain); `[]` is refused
# rather than read as either "every" or "none".
WalletIds = Annotated[
    list[Annotated[uuid.UUID, Strict(False)]], Field(min_length=1, max_length=MAX_IDS)
]
ChainIds = Annotated[list[ChainId], Field(min_length=1, max_length=MAX_IDS)]
Description = Annotated[TextStr, Field(max_length=500)]


class WebhookCreate(RequestBody):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"url": "https://example.com/hooks/chainflow", "events": ["transaction.*"]}
            ]
        },
    )

    url: WebhookUrl
    events: EventGlobs = Field(default_factory=lambda: ["*"])
    wallet_ids: WalletIds | None = None
    chain_ids: ChainIds | None = None
    description: Description | None = None


class WebhookUpdate(RequestBody):
    url: WebhookUrl | None = None
    events: EventGlobs | None = None
    wallet_ids: WalletIds | None = None
    chain_ids: ChainIds | None = None
    enabled: bool | None = None
    description: Description | None = None

    @model_validator(mode="after")
    def _no_null_required(self) -> "WebhookUpdate":
        for name in ("url", "events", "enabled"):
            if name in self.model_fields_set and getattr(self, name) is None:
                raise ValueError(f"{name} cannot be null")
        return self


class WebhookRead(BaseModel):
    id: uuid.UUID
    url: str
    events: list[str]
    wallet_ids: list[uuid.UUID] | None
    chain_ids: list[int] | None
    description: str | None
    enabled: bool
    disabled_reason: str | None
    previous_secret_expires_at: datetime | None = Field(
        description="until then the previous secret also signs (after a rotation)"
    )
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, row: WebhookEndpoint) -> "WebhookRead":
        return cls(
            id=row.id,
            url=shown_url(row.url),  # deliveries use row.url, credentials included
            events=list(row.event_types),
            wallet_ids=[uuid.UUID(w) for w in row.wallet_ids] if row.wallet_ids else None,
            chain_ids=list(row.chain_ids) if row.chain_ids else None,
            description=row.description,
            enabled=row.enabled,
            disabled_reason=row.disabled_reason,
            previous_secret_expires_at=row.previous_secret_expires_at,
            created_at=row.created_at,
            updated_at=row.updated_at,
        )


class WebhookCreated(WebhookRead):
    secret: str = Field(description="`whsec_…`: shown here only; verify deliveries with it")


class WebhookList(BaseModel):
    items: list[WebhookRead]
    next_cursor: str | None = Field(None, description="pass as `cursor` for the next page")


class AttemptRead(BaseModel):
    at: datetime
    status_code: int | None
    error: str | None = Field(description="error class: timeout, connection_failed, non_2xx, …")
    duration_ms: int

    @classmethod
    def of(cls, row: WebhookAttempt) -> "AttemptRead":
        return cls(
            at=row.at, status_code=row.status_code, error=row.error, duration_ms=row.duration_ms
        )


class DeliveryRead(BaseModel):
    id: uuid.UUID
    webhook_id: uuid.UUID = Field(description="the endpoint it goes to")
    event_id: str
    event_type: str
    status: DeliveryStatus
    attempts: list[AttemptRead]
    next_attempt_at: datetime | None
    created_at: datetime

    @classmethod
    def of(cls, row: WebhookDelivery, attempts: list[WebhookAttempt]) -> "DeliveryRead":
        return cls(
            id=row.id,
            webhook_id=row.endpoint_id,
            event_id=f"evt_{row.event_id.hex}",
            event_type=row.event_type,
            status=row.status,
            attempts=[AttemptRead.of(a) for a in attempts],
            next_attempt_at=_next_attempt_at(row),
            created_at=row.created_at,
        )


def _next_attempt_at(row: WebhookDelivery) -> datetime | None:
    """When a pending delivery is tried next: while a worker holds it (leased), when its lease
    ends if it has not been recorded by then."""
    if row.status is not DeliveryStatus.PENDING:
        return None
    if row.leased_until is not None and (
        row.next_attempt_at is None or row.leased_until > row.next_attempt_at
    ):
        return row.leased_until
    return row.next_attempt_at


class DeliveryList(BaseModel):
    items: list[DeliveryRead]
    next_cursor: str | None = Field(None, description="pass as `cursor` for the next page")


class ReplayRequest(RequestBody):
    """Queue again every event the endpoint subscribes to, since a time or after a cursor."""

    since: UtcTimestamp | None = None
    after: int | None = Field(None, ge=0, lt=2**63)

    @model_validator(mode="after")
    def _one_start(self) -> "ReplayRequest":
        if (self.since is None) == (self.after is None):
            raise ValueError("give exactly one of since or after")
        return self


class ReplayResult(BaseModel):
    queued: int = Field(description="deliveries queued (at most 10,000 per call)")
    already_pending: int = Field(
        0, description="events skipped: a pending delivery of each to this endpoint sends it"
    )
    last_cursor: int | None = Field(description="replay again with `after` this to go on")
