"""The redacting processor hides secret-named fields and key-shaped values."""

import io
import json
import logging

import pytest
import structlog

from chainflow.core.logging import REDACTED, configure_logging, redact_secrets, scrub_text

KEY = "ac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80"


class TestRedactSecrets:
    @pytest.mark.parametrize(
        "field",
        [
            "private_key",
            "privateKey",
            "master_key",
            "api_key",
            "password",
            "Authorization",
            "secret",
            "passphrase",
            "data_key",
            "token",
        ],
    )
    def test_secret_named_fields_are_hidden(self, field: str) -> None:
        assert redact_secrets(None, "info", {field: "anything"})[field] == REDACTED

    def test_key_shaped_values_are_scrubbed_from_free_text(self) -> None:
        out = redact_secrets(None, "info", {"event": f"bad key 0x{KEY} given", "n": 3})
        assert KEY not in out["event"]
        assert out["n"] == 3

    def test_hash_fields_keep_their_value(self) -> None:
        out = redact_secrets(None, "info", {"tx_hash": "0x" + KEY, "block_hash": KEY})
        assert out == {"tx_hash": "0x" + KEY, "block_hash": KEY}

    def test_nested_values_are_redacted(self) -> None:
        out = redact_secrets(None, "info", {"body": {"private_key": KEY, "items": [f"x{KEY}"]}})
        assert KEY not in json.dumps(out)

    def test_bearer_tokens_are_scrubbed(self) -> None:
        assert "cf_abc" not in scrub_text("header Bearer cf_abc_def")

    @pytest.mark.parametrize(
        "line",
        [
            "headers={'X-Amz-Security-Token': b'IQoJb3JpZ2luX2VjEJr//wEaCXVz+abc=', 'X-Amz-Date': "
            "b'20261207T000000Z', 'Authorization': b'AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7"
            "EXAMPLE/20261207/us-east-1/kms/aws4_request, SignedHeaders=host, Signature=00'}",
            "CanonicalRequest:\nx-amz-security-token:IQoJb3JpZ2luX2VjEJr//wEaCXVz+abc=\nhost:k",
            "GET /?X-Amz-Security-Token=IQoJb3JpZ2luX2VjEJr%2F%2FwEaCXVz&X-Amz-Credential="
            "ASIAIOSFODNN7EXAMPLE%2F20261207",
            "access key AKIAIOSFODNN7EXAMPLE in a message",
        ],
    )
    def test_aws_credentials_are_scrubbed(self, line: str) -> None:
        scrubbed = scrub_text(line)
        assert "IQoJb3JpZ2luX2VjEJr" not in scrubbed
        assert "IOSFODNN7EXAMPLE" not in scrubbed
        assert REDACTED in scrubbed


class TestConfigureLogging:
    def test_libraries_that_log_headers_or_parameters_stay_at_info_at_debug(self) -> None:
        configure_logging(json_format=True, level="debug")
        try:
            assert logging.getLogger().level == logging.DEBUG
            for name in ("botocore", "boto3", "urllib3", "aiosqlite", "asyncpg", "httpx"):
                assert not logging.getLogger(name).isEnabledFor(logging.DEBUG), name
                assert logging.getLogger(name).isEnabledFor(logging.INFO), name
            assert logging.getLogger("chainflow").isEnabledFor(logging.DEBUG)
            assert not logging.getLogger("sqlalchemy.engine").isEnabledFor(logging.INFO)
        finally:
            configure_logging(json_format=True)

    def test_stdlib_and_exception_text_go_through_redaction(self) -> None:
        configure_logging(json_format=True)
        stream = io.StringIO()
        logging.getLogger().handlers[0].setStream(stream)  # type: ignore[attr-defined]
        try:
            raise ValueError(f"cannot parse {KEY}")
        except ValueError:
            structlog.get_logger("t").exception("wallet.failed", private_key=KEY)
        logging.getLogger("foreign").warning("leak %s", KEY)
        lines = stream.getvalue().splitlines()
        assert len(lines) == 2
        assert all(json.loads(line) for line in lines)
        assert KEY not in stream.getvalue()


class TestExceptionsInLogs:
    def test_database_error_messages_are_withheld_with_their_parameters(self) -> None:
        from sqlalchemy.exc import IntegrityError

        secret = bytes(range(48))
        error = IntegrityError("INSERT INTO wallets VALUES (?)", (secret, "canary"), ValueError())
        configure_logging(json_format=True)
        stream = io.StringIO()
        logging.getLogger().handlers[0].setStream(stream)  # type: ignore[attr-defined]
        try:
            raise error
        except IntegrityError:
            structlog.get_logger("t").exception("db.failed")
        logged = stream.getvalue()
        assert "sqlalchemy.exc.IntegrityError" in logged
        assert "canary" not in logged
        assert "\\\\x00\\\\x01" not in logged
        assert "message withheld" in logged

    def test_validation_errors_show_locations_not_inputs(self) -> None:
        from pydantic import BaseModel, ValidationError

        class Model(BaseModel):
            n: int

        configure_logging(json_format=True)
        stream = io.StringIO()
        logging.getLogger().handlers[0].setStream(stream)  # type: ignore[attr-defined]
        data = {"n": "canary"}
        try:
            Model.model_validate(data)  # the traceback shows this line, not the one above
        except ValidationError:
            structlog.get_logger("t").exception("invalid")
        assert "n: int_parsing" in stream.getvalue()
        assert "canary" not in stream.getvalue()
