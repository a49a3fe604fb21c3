"""Standard Webhooks signatures (https://www.standardwebhooks.com/): pure, no I/O.

The signed content is `{webhook-id}.{webhook-timestamp}.{body}`, the key the secret's bytes,
the header `v1,<base64 HMAC-SHA256>`, space-separated when two secrets sign (rotation).
"""

import base64
import hashlib
import hmac
from collections.abc import Sequence

from chainflow.core.types import SecretBytes

SECRET_PREFIX = "whsec_"  # noqa: S105 - the scheme's public marker, not a secret
SECRET_BYTES = 32


def secret_text(secret: SecretBytes) -> str:
    """The secret as shown to the user once: `whsec_<base64>`."""
    return SECRET_PREFIX + base64.b64encode(secret.reveal()).decode()


def signature_header(
    secrets: Sequence[SecretBytes], *, msg_id: str, timestamp: int, body: bytes
) -> str:
    """The `webhook-signature` value: one `v1,<sig>` per secret, space-separated."""
    content = f"{msg_id}.{timestamp}.".encode() + body
    return " ".join(
        "v1," + base64.b64encode(hmac.new(s.reveal(), content, hashlib.sha256).digest()).decode()
        for s in secrets
    )


def headers(
    secrets: Sequence[SecretBytes], *, msg_id: str, timestamp: int, body: bytes
) -> dict[str, str]:
    """The headers of one attempt; the secret itself is never among them."""
    return {
        "content-type": "application/json",
        "user-agent": "Chainflow-Webhooks/1",
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": signature_header(
            secrets, msg_id=msg_id, timestamp=timestamp, body=body
        ),
    }
