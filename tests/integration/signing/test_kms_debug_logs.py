"""At CHAINFLOW_LOG_LEVEL=debug, a transaction signed by AWS KMS (LocalStack) logs neither the
AWS session token nor the access key id: botocore's debug lines quote request headers
(X-Amz-Security-Token, Credential=AKIA...) and stay below the level its logger is kept at;
the redaction scrubs those forms anyway (audit, keys)."""

import io
import logging
from collections.abc import Iterator

import pytest
import structlog

from chainflow.core.logging import configure_logging
from chainflow.infra.signing.aws_kms import AwsKms, AwsKmsSigner
from tests.support.localstack import LocalStack, kms_config

SESSION_TOKEN = "cfTESTSESSIONTOKEN-IQoJb3JpZ2luX2VjEJr"
ACCESS_KEY_ID = "AKIACFTESTACCESSID42"
TX = {
    "chainId": 31337,
    "nonce": 0,
    "to": "0x000000000000000000000000000000000000dEaD",
    "value": 1,
    "data": b"",
    "gas": 21_000,
    "type": 2,
    "maxFeePerGas": 2 * 10**9,
    "maxPriorityFeePerGas": 10**9,
}


@pytest.fixture
def debug_log() -> Iterator[io.StringIO]:
    """The production logging set-up at debug level, written to a buffer; put back after."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    configure_logging(json_format=True, level="debug")
    stream = io.StringIO()
    handler = root.handlers[0]
    assert isinstance(handler, logging.StreamHandler)
    handler.setStream(stream)
    try:
        yield stream
    finally:
        configure_logging(json_format=True)
        root.handlers[:] = handlers
        root.setLevel(level)


async def test_a_kms_signed_transaction_logs_no_aws_credential_at_debug(
    localstack: LocalStack, monkeypatch: pytest.MonkeyPatch, debug_log: io.StringIO
) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", ACCESS_KEY_ID)
    monkeypatch.setenv("AWS_SESSION_TOKEN", SESSION_TOKEN)
    kms = AwsKms(kms_config(localstack.url))
    arn, public_key = await kms.public_key(await kms.create_key())
    signed = await AwsKmsSigner(kms, arn, public_key).sign_transaction(TX)
    assert signed.hash.startswith("0x")
    structlog.get_logger("test").debug("kms.signed", key_ref=arn)
    logged = debug_log.getvalue()
    assert "kms.signed" in logged  # the run did log at debug level
    assert SESSION_TOKEN not in logged
    assert ACCESS_KEY_ID not in logged
