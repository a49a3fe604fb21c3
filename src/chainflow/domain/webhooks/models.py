"""Tables of webhook endpoints, their deliveries (one per event and endpoint) and attempts."""

import uuid
from datetime import datetime
from enum import StrEnum

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Enum,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Uuid,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from chainflow.core.clock import utcnow
from chainflow.infra.db.base import Base
from chainflow.infra.db.types import UtcDateTime


class DeliveryStatus(StrEnum):
    PENDING = "pending"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


# The condition of the partial indexes: only pending deliveries are claimed, counted as backlog
# or checked for a duplicate.
_PENDING_ONLY = text("status = 'pending'")
# Room on each page for a row's lease (HOT) and outcome versions: 0012_wh_hot.
FILLFACTOR = 50


def _values(enum: type[StrEnum]) -> list[str]:
    return [member.value for member in enum]


class WebhookEndpoint(Base):
    """A receiver URL, what it subscribes to, and its signing secrets (sealed).

    `sealed_secrets` holds the current secret's 32 bytes, then the previous one's while
    `previous_secret_expires_at` is in the future (rotation overlap), sealed under one data
    key wrapped by the master key, like a wallet's key (AAD: the endpoint id).
    """

    __tablename__ = "webhook_endpoints"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    url: Mapped[str] = mapped_column(String(2048))
    event_types: Mapped[list[str]] = mapped_column(JSON)
    wallet_ids: Mapped[list[str] | None] = mapped_column(JSON)
    chain_ids: Mapped[list[int] | None] = mapped_column(JSON)
    description: Mapped[str | None] = mapped_column(String(500))
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    disabled_reason: Mapped[str | None] = mapped_column(String(200))
    sealed_secrets: Mapped[bytes] = mapped_column(LargeBinary)
    wrapped_data_key: Mapped[bytes] = mapped_column(LargeBinary)
    master_key_id: Mapped[str] = mapped_column(String(32), index=True)
    previous_secret_expires_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    # The cursor of the last event fan-out looked at for this endpoint (events.cursor).
    fanout_cursor: Mapped[int] = mapped_column(BigInteger, default=0)
    # Since when every attempt to this endpoint has failed (None: the last one succeeded).
    first_failure_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow, onupdate=utcnow)


class WebhookDelivery(Base):
    """One event to one endpoint, until it succeeds or its retry schedule runs out.

    A claimed delivery has `leased_until` set past the attempt's deadline (a visibility
    timeout): it is not due while the lease lasts; if its worker dies, it is due again when
    the lease ends, and sent with the same webhook-id. At most one pending delivery of an event
    to an endpoint exists at a time (retry and replay keep to it, under the endpoint's row
    lock).

    Index writes (PostgreSQL, docs/performance.md): the indexes that only pending deliveries
    need are partial, so a finished delivery has no entry in them; the lease sets only
    `leased_until`, which no index holds, so with room on the row's page (fillfactor) it is a
    HOT update that writes no index entry.
    """

    __tablename__ = "webhook_deliveries"
    __table_args__ = (
        # The claim: pending deliveries by due time (leased ones are filtered on the row).
        Index(
            "ix_webhook_deliveries_due",
            "next_attempt_at",
            "event_pk",
            postgresql_where=_PENDING_ONLY,
            sqlite_where=_PENDING_ONLY,
        ),
        # The claim, per endpoint: an endpoint's due deliveries in due order, so that a
        # backlogged endpoint's old rows do not fill every claim (repository._CLAIM_DUE).
        Index(
            "ix_webhook_deliveries_endpoint_due",
            "endpoint_id",
            "next_attempt_at",
            "event_pk",
            postgresql_where=_PENDING_ONLY,
            sqlite_where=_PENDING_ONLY,
        ),
        Index("ix_webhook_deliveries_endpoint_created", "endpoint_id", "created_at", "id"),
        # A transaction's deliveries (every status; the claim's ordering check, the API).
        Index("ix_webhook_deliveries_order", "endpoint_id", "tx_id", "status"),
        # The metrics' backlog: each endpoint's pending count and oldest, from the index alone.
        Index(
            "ix_webhook_deliveries_backlog",
            "endpoint_id",
            "created_at",
            postgresql_where=_PENDING_ONLY,
            sqlite_where=_PENDING_ONLY,
        ),
        # Retry and replay: is an event already pending to this endpoint.
        Index(
            "ix_webhook_deliveries_pending_event",
            "endpoint_id",
            "event_pk",
            postgresql_where=_PENDING_ONLY,
            sqlite_where=_PENDING_ONLY,
        ),
        {"postgresql_with": {"fillfactor": FILLFACTOR}},
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    endpoint_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("webhook_endpoints.id", ondelete="CASCADE")
    )
    event_pk: Mapped[int] = mapped_column(BigInteger)
    event_id: Mapped[uuid.UUID] = mapped_column(Uuid)
    event_type: Mapped[str] = mapped_column(String(64))
    # The event's transaction and its place there: a later one waits for the earlier.
    tx_id: Mapped[uuid.UUID | None] = mapped_column(Uuid)
    tx_seq: Mapped[int | None] = mapped_column(Integer)
    status: Mapped[DeliveryStatus] = mapped_column(
        Enum(DeliveryStatus, native_enum=False, length=16, values_callable=_values),
        default=DeliveryStatus.PENDING,
    )
    attempt_count: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    # Set while a worker is sending it (its claim's lease), cleared when the outcome is
    # recorded: not due until then, and a retry or replay must not send it a second time
    # meanwhile.
    leased_until: Mapped[datetime | None] = mapped_column(UtcDateTime)
    last_status_code: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow, onupdate=utcnow)


class WebhookAttempt(Base):
    """One HTTP request of a delivery: when, the answer's status, the error class, how long."""

    __tablename__ = "webhook_attempts"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    delivery_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("webhook_deliveries.id", ondelete="CASCADE"), index=True
    )
    at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    status_code: Mapped[int | None] = mapped_column(Integer)
    error: Mapped[str | None] = mapped_column(String(64))
    duration_ms: Mapped[int] = mapped_column(Integer)
