"""Request bodies at the edge: a size limit per route, a deadline, read once and replayed."""

import asyncio

from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.types import Message, Receive, Scope

from chainflow.core.numerals import ascii_int
from chainflow.core.settings import Settings


class BodyLimits:
    """The largest body each route takes, and how long a client may take to send it."""

    def __init__(self, settings: Settings) -> None:
        self.default_bytes = settings.api_max_body_bytes
        self.timeout_s = settings.api_body_timeout_s
        self._by_route = {
            ("POST", "/v1/transactions"): settings.api_max_tx_body_bytes,
            ("POST", "/v1/transactions/batch"): settings.api_max_batch_body_bytes,
        }

    def max_bytes(self, scope: Scope) -> int:
        return self._by_route.get((scope["method"], scope["path"]), self.default_bytes)


def has_body(headers: Headers) -> bool:
    """HTTP/1.1 framing (RFC 9112 §6.3): a body comes with a Content-Length or chunked."""
    return "transfer-encoding" in headers or headers.get("content-length", "0") != "0"


def too_large(max_bytes: int) -> HTTPException:
    return HTTPException(413, f"the request body exceeds this route's limit of {max_bytes} bytes")


def check_declared_length(headers: Headers, max_bytes: int) -> None:
    """Refuse by Content-Length before reading anything. Raises: HTTPException 413."""
    # ASCII digits only: isdigit() takes "²", which int() refuses (a 500); anything but
    # digits is left to the HTTP server's parser.
    declared = ascii_int(headers.get("content-length", ""), max_digits=64)
    if declared is not None and declared > max_bytes:
        raise too_large(max_bytes)


async def read_body(receive: Receive, *, max_bytes: int, timeout_s: float) -> bytes | None:
    """The whole body, or None if the client went away.

    Raises:
        HTTPException: 413 past `max_bytes` (counted as chunks arrive), 408 past `timeout_s`.
    """
    try:
        async with asyncio.timeout(timeout_s):
            return await _read(receive, max_bytes)
    except TimeoutError:
        raise HTTPException(
            408, f"the request body did not arrive within {timeout_s:g} s"
        ) from None


async def _read(receive: Receive, max_bytes: int) -> bytes | None:
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        chunk: bytes = message.get("body", b"")
        size += len(chunk)
        if size > max_bytes:
            raise too_large(max_bytes)
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)  # one chunk (the usual case) is returned as is, not copied


def replay(body: bytes, receive: Receive) -> Receive:
    """A receive that hands the app the body already read, then the client's own messages
    (a disconnect). Starlette's `Request.body()` joins that single chunk without a copy."""
    pending: Message | None = {"type": "http.request", "body": body, "more_body": False}

    async def replayed() -> Message:
        nonlocal pending
        if pending is None:
            return await receive()
        message, pending = pending, None
        return message

    return replayed
