"""structlog set-up, request-id binding, and redaction of anything that looks like a secret."""

import logging
import re
import sys
from collections.abc import Mapping, MutableMapping
from typing import Any

import structlog

REDACTED = "[redacted]"
_SECRET_NAME = re.compile(
    r"(private_?key|secret|passw(or)?d|passphrase|master_?key|api_?key|token|authorization|"
    r"cookie|mnemonic|seed|data_?key|credential)",
    re.IGNORECASE,
)
# 32-byte hex strings: private keys look exactly like hashes, so they are scrubbed from any
# field whose name does not say it holds a hash.
_HEX_32 = re.compile(r"(0x)?[0-9a-fA-F]{64}(?![0-9a-fA-F])")
_BEARER = re.compile(r"(bearer\s+)\S+", re.IGNORECASE)
_HASH_FIELD = re.compile(r"(hash|block|topic|root)", re.IGNORECASE)


def scrub_text(text: str) -> str:
    """Replace 32-byte hex strings and bearer tokens in free text."""
    return _BEARER.sub(r"\1" + REDACTED, _HEX_32.sub(REDACTED, text))


def _redact(key: str, value: Any) -> Any:
    if _SECRET_NAME.search(key):
        return REDACTED
    if isinstance(value, str):
        return value if _HASH_FIELD.search(key) else scrub_text(value)
    if isinstance(value, Mapping):
        return {k: _redact(str(k), v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_redact(key, v) for v in value]
    return value


def redact_secrets(
    _logger: Any, _method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """structlog processor: hide secret-named fields and key-shaped values."""
    return {key: _redact(key, value) for key, value in event_dict.items()}


def configure_logging(*, json_format: bool, level: str = "info") -> None:
    """Route structlog and stdlib logging through one redacting pipeline."""
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.format_exc_info,
        redact_secrets,
    ]
    renderer: Any = (
        structlog.processors.JSONRenderer()
        if json_format
        else structlog.dev.ConsoleRenderer(colors=False)
    )
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=False,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[structlog.stdlib.ExtraAdder(), *shared],
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True


def get_logger(name: str | None = None) -> Any:
    """Return a structlog logger; bind context with `.bind(...)`."""
    return structlog.get_logger(name)
