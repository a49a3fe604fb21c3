"""The event envelope (DESIGN §13), as the API, the stream and webhooks render it."""

import uuid
from datetime import UTC, datetime
from typing import Any, Protocol


class StoredEvent(Protocol):
    """What an envelope is made of: an EventRow, or a Core row of the events table."""

    @property
    def event_id(self) -> uuid.UUID: ...
    @property
    def type(self) -> str: ...
    @property
    def created_at(self) -> datetime: ...
    @property
    def cursor(self) -> int | None: ...
    @property
    def data(self) -> Any: ...


def envelope_id(event_id: uuid.UUID) -> str:
    """The envelope's `id` (also the webhook-id): `evt_` and the uuid in hex."""
    return f"evt_{event_id.hex}"


def rfc3339(at: datetime) -> str:
    """`at` in UTC as RFC 3339 with a `Z`, as the API renders times."""
    if at.tzinfo is not UTC:
        at = at.astimezone(UTC)
    return at.isoformat().replace("+00:00", "Z")


def envelope(row: StoredEvent) -> dict[str, Any]:
    """`{id, type, created_at, cursor, data}` of a stored event."""
    return {
        "id": envelope_id(row.event_id),
        "type": row.type,
        "created_at": rfc3339(row.created_at),
        "cursor": row.cursor,
        "data": row.data,
    }
