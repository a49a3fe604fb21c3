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


# Times already rendered (UTC ones only), cleared when full. The status-change log renders
# ~25 times per transaction, many of them again (a request's created_at in each of its
# events' snapshots, a batch's sent time in each of its attempts'): a lookup is ~20 times
# cheaper than isoformat. Two equal UTC datetimes are the same instant, so render the same.
_RENDERED: dict[datetime, str] = {}
_RENDERED_MAX = 4096


def rfc3339(at: datetime) -> str:
    """`at` in UTC as RFC 3339 with a `Z`, as the API renders times."""
    if at.tzinfo is not UTC:
        return at.astimezone(UTC).isoformat().replace("+00:00", "Z")
    text = _RENDERED.get(at)
    if text is None:
        text = at.isoformat()[:-6] + "Z"  # a UTC time's isoformat ends in +00:00
        if len(_RENDERED) >= _RENDERED_MAX:
            _RENDERED.clear()
        _RENDERED[at] = text
    return text


def envelope(row: StoredEvent) -> dict[str, Any]:
    """`{id, type, created_at, cursor, data}` of a stored event."""
    return {
        "id": envelope_id(row.event_id),
        "type": row.type,
        "created_at": rfc3339(row.created_at),
        "cursor": row.cursor,
        "data": row.data,
    }
