"""A claimed delivery ready to send (built by delivery.claim, sent by attempts.send)."""

import uuid
from dataclasses import dataclass
from datetime import datetime

from chainflow.core.types import SecretBytes
from chainflow.domain.webhooks.signing import headers


@dataclass(frozen=True)
class Job:
    """One claimed delivery, ready to send: nothing in it needs the database."""

    delivery_id: uuid.UUID
    endpoint_id: uuid.UUID
    url: str
    msg_id: str
    body: bytes
    # The endpoint's signing secrets: an attempt is signed when it starts, not when it was
    # claimed (a job may wait for its endpoint's slot for rounds of sends, and a receiver
    # refuses a webhook-timestamp more than 5 minutes old).
    secrets: tuple[SecretBytes, ...]
    event_at: datetime  # the event's change, for the delivery lag metric
    lease_until: datetime  # another worker may send it after this

    def __repr__(self) -> str:  # the secrets sign requests: keep them out of logs
        return f"Job(delivery_id={self.delivery_id}, msg_id={self.msg_id})"

    def headers(self, *, now: datetime) -> dict[str, str]:
        """The headers of an attempt starting `now`, signed now (webhook-timestamp)."""
        return headers(
            self.secrets, msg_id=self.msg_id, timestamp=int(now.timestamp()), body=self.body
        )
