"""Opaque pagination cursors over (created_at, id)."""

import base64
import binascii
import uuid
from datetime import UTC, datetime

from chainflow.core.errors import InvalidInput


def encode_cursor(created_at: datetime, row_id: uuid.UUID) -> str:
    """A cursor pointing just after this row."""
    raw = f"{created_at.isoformat()}|{row_id}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str | None) -> tuple[datetime, uuid.UUID] | None:
    """Parse a cursor this API returned. Raises: InvalidInput."""
    if cursor is None:
        return None
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        created_at, row_id = raw.split("|")
        return _utc(datetime.fromisoformat(created_at)), uuid.UUID(row_id)
    except (ValueError, binascii.Error, UnicodeDecodeError, OverflowError):
        raise InvalidInput("cursor is not one this API returned") from None


def _utc(at: datetime) -> datetime:
    """The instant in UTC, as every cursor this API made holds it. Raises: ValueError without
    an offset (the database cannot order it), OverflowError outside datetime's range once in
    UTC (0001-01-01T00:00:00+14:00)."""
    if at.tzinfo is None or at.utcoffset() is None:
        raise ValueError("a cursor's time has no offset")
    return at.astimezone(UTC)
