"""Our signatures verify with the `standardwebhooks` library receivers use; a wrong secret,
body or id does not."""

import json
import time

import pytest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from chainflow.core.types import SecretBytes
from chainflow.domain.webhooks.signing import headers, secret_text

A = SecretBytes(bytes(range(32)))
B = SecretBytes(bytes(range(1, 33)))
BODY = json.dumps({"id": "evt_1", "type": "transaction.confirmed"}).encode()


class TestSignatures:
    def test_verify_with_the_library_for_each_secret(self) -> None:
        now = int(time.time())
        sent = headers([A, B], msg_id="evt_1", timestamp=now, body=BODY)
        assert sent["webhook-signature"].count("v1,") == 2
        for secret in (A, B):
            assert Webhook(secret_text(secret)).verify(BODY, sent)["id"] == "evt_1"

    @pytest.mark.parametrize("tamper", ["body", "id", "secret"])
    def test_a_change_fails_verification(self, tamper: str) -> None:
        sent = headers([A], msg_id="evt_1", timestamp=int(time.time()), body=BODY)
        body, secret = BODY, A
        if tamper == "body":
            body = BODY.replace(b"confirmed", b"reverted")
        elif tamper == "id":
            sent = {**sent, "webhook-id": "evt_2"}
        else:
            secret = B
        with pytest.raises(WebhookVerificationError):
            Webhook(secret_text(secret)).verify(body, sent)

    def test_the_secret_is_never_a_header(self) -> None:
        sent = headers([A], msg_id="evt_1", timestamp=1, body=BODY)
        assert all(secret_text(A)[6:] not in value for value in sent.values())
