"""structlog set-up, request-id binding, and redaction of anything that looks like a secret."""

import logging
import re
import sys
import traceback
from collections.abc import Mapping, MutableMapping
from typing import Any

import structlog
from pydantic_core import ValidationError
from structlog.typing import ExcInfo

from chainflow.core.redaction import REDACTED, scrub_text

_SECRET_NAME = re.compile(
    r"(private_?key|secret|passw(or)?d|passphrase|master_?key|api_?key|token|authorization|"
    r"cookie|mnemonic|seed|data_?key|credential)",
    re.IGNORECASE,
)
_HASH_FIELD = re.compile(r"(hash|block|topic|root)", re.IGNORECASE)
# Database errors quote what was sent: SQLAlchemy appends the bound parameters (the engines
# hide them) and drivers quote the value they could not encode ("invalid input for query
# argument $3: ..."), which may be a wallet's sealed key. Their messages never reach a log.
_DATABASE_MODULES = ("sqlalchemy.", "asyncpg.", "sqlite3", "aiosqlite.")

# Third-party loggers that log request headers or bound parameters at DEBUG. Not SQLAlchemy:
# it keeps its own loggers at WARNING (an INFO floor would log every statement).
_CHATTY_LIBRARIES = (
    "botocore",
    "boto3",
    "s3transfer",
    "urllib3",
    "aiosqlite",
    "asyncpg",
    "httpx",
    "httpcore",
    "aiohttp",
    "hpack",
)

__all__ = ["REDACTED", "configure_logging", "get_logger", "redact_secrets", "scrub_text"]


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


def format_exception_safely(exc_info: ExcInfo) -> str:
    """A traceback like Python's, in which no exception message can quote a bound value."""
    chain: list[BaseException] = []
    current: BaseException | None = exc_info[1]
    while current is not None and current not in chain:
        chain.append(current)
        suppressed = current.__suppress_context__
        current = current.__cause__ or (None if suppressed else current.__context__)
    parts = [
        "Traceback (most recent call last):\n"
        + "".join(traceback.format_tb(exc.__traceback__))
        + f"{type(exc).__module__}.{type(exc).__qualname__}: {_safe_message(exc)}\n"
        for exc in reversed(chain)
    ]
    return "\nThe above exception led to the following one:\n\n".join(parts)


def _safe_message(exc: BaseException) -> str:
    if isinstance(exc, ValidationError):  # its text quotes every invalid input
        return "; ".join(
            f"{'.'.join(map(str, error['loc']))}: {error['type']}" for error in exc.errors()
        )
    if not type(exc).__module__.startswith(_DATABASE_MODULES):
        return str(exc)
    orig = getattr(exc, "orig", None)
    state = getattr(orig, "sqlstate", None) or getattr(exc, "sqlstate", None)
    withheld = "[message withheld: database errors can quote bound values]"
    if orig is not None:
        withheld += f" from {type(orig).__module__}.{type(orig).__qualname__}"
    return withheld + (f" sqlstate={state}" if state else "")


def configure_logging(*, json_format: bool, level: str = "info") -> None:
    """Route structlog and stdlib logging through one redacting pipeline."""
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.ExceptionRenderer(format_exception_safely),
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
    # Libraries whose debug lines quote what they send: request headers (botocore logs the AWS
    # session token, X-Amz-Security-Token, and the access key id in Credential=...), bound
    # parameters (aiosqlite logs each statement with its values, a wallet's sealed key among
    # them), or result rows. They stay at INFO or above whatever the level (audit, keys).
    floor = max(logging.INFO, root.level)
    for name in _CHATTY_LIBRARIES:
        logging.getLogger(name).setLevel(floor)
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True
    # Alembic logs "setup plugin …" at info level as its autogenerate package is imported,
    # which a CLI command does after this, when it opens the database (cli/runtime.py): eight
    # lines before the command's output or its one error line.
    logging.getLogger("alembic.runtime.plugins").setLevel(logging.WARNING)


def is_worth_logging(failures: int) -> bool:
    """Whether the `failures`-th failure in a row is logged: the 1st, 10th and every 100th. A
    loop that fails every round would otherwise write a line per round (issue 14)."""
    return failures in (1, 10) or failures % 100 == 0


def get_logger(name: str | None = None) -> Any:
    """Return a structlog logger; bind context with `.bind(...)`."""
    return structlog.get_logger(name)
