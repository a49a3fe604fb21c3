"""JSON-RPC over HTTP on aiohttp: single calls and batches, with typed failures.

Every answer is bounded: redirects are never followed (a 3xx is a failure), and a body is read
as a stream that stops at `max_response_bytes`, so an endpoint cannot point the client at
another host or fill its memory.
"""

import itertools
from collections.abc import Sequence
from typing import Any

import aiohttp
import orjson

from chainflow.core import jsondepth
from chainflow.core.errors import Unavailable
from chainflow.core.numerals import delay_seconds
from chainflow.infra.net.urlguard import ForbiddenAddress, UrlGuard
from chainflow.infra.rpc import answers

Call = tuple[str, Sequence[Any]]
# Above the largest answer the engine asks for: a batch of 500 receipts (tracker.py) runs to a
# few MB when their transactions emit many logs; one receipt can reach ~7 MB in a 30 M gas block.
DEFAULT_MAX_RESPONSE_BYTES = 16 * 1024 * 1024
_MAX_RETRY_AFTER_S = 86_400.0


class RpcTransportError(Unavailable):
    """The endpoint could not be reached or answered with something that is not JSON-RPC.

    Unless `is_unsent` is true, the node may have received and executed the request: callers of
    eth_sendRawTransaction must treat this error as "maybe sent".
    """

    code = "rpc_unreachable"

    def __init__(
        self,
        detail: str,
        *,
        http_status: int | None = None,
        retry_after_s: float | None = None,
        is_unsent: bool = False,
        is_answered: bool = False,
    ) -> None:
        super().__init__(detail)
        self.http_status = http_status
        self.retry_after_s = retry_after_s  # from an HTTP Retry-After header, in seconds
        self.is_unsent = is_unsent  # true only when the request certainly never reached the node
        self.is_answered = is_answered  # an HTTP answer came, but no usable JSON-RPC one


class RpcResponseTooLarge(RpcTransportError):
    """The answer passed the client's `max_response_bytes`; the rest was not read."""

    code = "rpc_response_too_large"


class RpcMalformedAnswer(RpcTransportError):
    """The node answered a result that is not of its method's shape (answers.py): a bad node
    or a proxy in the way, failed over like any answer that is not JSON-RPC. The request
    reached the node: a send that gets this answer is "maybe sent"."""

    code = "rpc_malformed_answer"


class RpcCallError(Unavailable):
    """The node answered with a JSON-RPC error object."""

    code = "rpc_error"

    def __init__(self, *, rpc_code: int | None, message: str, data: Any = None) -> None:
        super().__init__(f"rpc error {rpc_code}: {message}")
        self.rpc_code = rpc_code
        self.message = message
        self.data = data


class RpcClient:
    """One endpoint. The aiohttp session is injected so callers own pooling and shutdown."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        url: str,
        *,
        timeout_s: float = 10.0,
        max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
    ):
        self.url = url
        self._session = session
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._max_response_bytes = max_response_bytes
        self._ids = itertools.count(1)

    async def call(self, method: str, params: Sequence[Any] = ()) -> Any:
        """Call one method; return its `result`.

        Raises:
            RpcCallError: the node returned an error object.
            RpcTransportError: no valid JSON-RPC answer.
        """
        reply = await self._post(
            {"jsonrpc": "2.0", "id": next(self._ids), "method": method, "params": list(params)}
        )
        if not isinstance(reply, dict):
            raise RpcTransportError(f"{method}: answer is not a JSON-RPC object", is_answered=True)
        return _checked(method, _result_of(reply))

    async def batch(self, calls: Sequence[Call]) -> list[Any]:
        """Send calls in one JSON-RPC batch; each entry is a result or an RpcCallError."""
        if not calls:
            return []
        first = next(self._ids)
        self._ids = itertools.count(first + len(calls))
        body = [
            {"jsonrpc": "2.0", "id": first + i, "method": method, "params": list(params)}
            for i, (method, params) in enumerate(calls)
        ]
        reply = await self._post(body)
        if not isinstance(reply, list):
            raise RpcTransportError("batch: answer is not a JSON-RPC array", is_answered=True)
        # An id that is not a JSON scalar (a list, an object) matches no call of ours.
        by_id = {
            item.get("id"): item
            for item in reply
            if isinstance(item, dict) and isinstance(item.get("id"), int | float | str | None)
        }
        outcomes = [_outcome(by_id.get(first + i)) for i in range(len(calls))]
        # One bad entry discredits the whole answer: the endpoint fails, not one call of it.
        return [
            outcome
            if isinstance(outcome, RpcCallError | RpcTransportError)
            else _checked(method, outcome)
            for (method, _), outcome in zip(calls, outcomes, strict=True)
        ]

    async def _post(self, body: Any) -> Any:
        data = orjson.dumps(body)  # a request this process cannot encode is its own error
        status: int | None = None
        try:
            async with self._session.post(
                self.url,
                data=data,
                timeout=self._timeout,
                headers={"Content-Type": "application/json"},
                allow_redirects=False,
            ) as response:
                status = response.status
                retry_after_s = _retry_after_s(response.headers.get("Retry-After"))
                payload = await _read_capped(response, self._max_response_bytes)
        except RpcTransportError:
            raise
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise _unreached(exc) from None
        except Exception as exc:
            # An answer it cannot read is the endpoint's failure (failover, breaker), never a
            # caller's crash. Before any answer, an error that is not the network's is this
            # process's own (a closed session): raised as it is, not taken for "maybe sent",
            # which would fail over to every endpoint and retry a send on every pass.
            if status is None:
                raise
            raise _unreadable(exc, status) from None
        _check_status(status, payload, retry_after_s)
        try:
            # orjson alone stops at 1,024 levels; what reads an answer (repr of an error's
            # message or data) recurses in Python, so answers get the service-wide bound.
            jsondepth.check_depth(payload)
            return orjson.loads(payload)
        except jsondepth.JsonTooDeep:
            raise RpcTransportError(
                "RPC endpoint answered JSON nested too deep", http_status=status
            ) from None
        except orjson.JSONDecodeError:
            raise RpcTransportError(
                "RPC endpoint answered non-JSON", http_status=status, is_answered=True
            ) from None
        except Exception as exc:  # as above: only this module's errors leave the client
            raise _unreadable(exc, status) from None


def _unreadable(exc: Exception, status: int) -> RpcTransportError:
    return RpcTransportError(
        f"RPC endpoint answered unreadably: {type(exc).__name__}",
        http_status=status,
        is_answered=True,
    )


async def _read_capped(response: aiohttp.ClientResponse, limit: int) -> bytes:
    """The body, counted after any Content-Encoding is decoded; RpcResponseTooLarge as soon as
    it passes `limit` bytes (at once if the declared length does)."""
    if (response.content_length or 0) > limit:
        raise _too_large(response, limit)
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.content.iter_any():
        size += len(chunk)
        if size > limit:
            raise _too_large(response, limit)
        chunks.append(chunk)
    return b"".join(chunks)


def _too_large(response: aiohttp.ClientResponse, limit: int) -> RpcResponseTooLarge:
    response.close()  # the rest is never read, so the connection cannot be reused
    return RpcResponseTooLarge(
        f"RPC answer is larger than {limit} bytes", http_status=response.status, is_answered=True
    )


def _unreached(exc: BaseException) -> RpcTransportError:
    # ClientConnectorError: no connection was made, so the node never saw the request.
    if not isinstance(exc, aiohttp.ClientConnectorError):
        return RpcTransportError(f"cannot reach RPC endpoint: {type(exc).__name__}")
    if isinstance(exc.os_error, ForbiddenAddress):
        detail = "RPC endpoint refused: its address is not public (URL guard)"
        return RpcTransportError(detail, is_unsent=True)
    return RpcTransportError("cannot reach RPC endpoint: ClientConnectorError", is_unsent=True)


def _check_status(status: int, payload: bytes, retry_after_s: float | None) -> None:
    # A 3xx is never followed: it could point this client at any host, past the URL checks.
    if 300 <= status < 400:
        raise RpcTransportError(
            f"RPC endpoint answered a redirect (HTTP {status}); redirects are not followed",
            http_status=status,
            is_answered=True,
        )
    # A 429 comes from a rate limiter in front of the node (some send a JSON body with it), so
    # the request was refused unseen: a transport failure, and certainly unsent.
    if status == 429 or (status >= 400 and not payload.startswith((b"{", b"["))):
        raise RpcTransportError(
            f"RPC endpoint answered HTTP {status}",
            http_status=status,
            retry_after_s=retry_after_s,
            is_unsent=status == 429,
            is_answered=True,
        )


def _retry_after_s(header: str | None) -> float | None:
    # The delay-seconds form of RFC 9110 §10.2.3; an HTTP-date or anything unreadable is
    # ignored (callers back off). The pool caps the wait (endpoints._BACKOFF_MAX_S).
    return delay_seconds(header, max_s=_MAX_RETRY_AFTER_S)


def _result_of(reply: dict[str, Any]) -> Any:
    error = reply.get("error")
    if error is not None:
        if not isinstance(error, dict):
            raise RpcCallError(rpc_code=None, message=str(error))
        code = error.get("code")
        raise RpcCallError(
            # a code that is not an integer is no JSON-RPC code: classified by its message
            rpc_code=code if isinstance(code, int) and not isinstance(code, bool) else None,
            message=str(error.get("message", "")),
            data=error.get("data"),
        )
    if "result" not in reply:
        raise RpcTransportError("JSON-RPC answer has neither result nor error", is_answered=True)
    return reply["result"]


def _checked(method: str, result: Any) -> Any:
    try:
        return answers.check(method, result)
    except answers.MalformedAnswer as exc:
        raise RpcMalformedAnswer(f"{method}: malformed answer: {exc}", is_answered=True) from None


def _outcome(reply: dict[str, Any] | None) -> Any:
    if reply is None:
        return RpcTransportError("batch answer is missing an entry")
    try:
        return _result_of(reply)
    except (RpcCallError, RpcTransportError) as exc:
        return exc


def new_http_session(*, guard: UrlGuard, connections: int = 64) -> aiohttp.ClientSession:
    """An aiohttp session with keep-alive connections for RPC traffic; `guard` vets every
    address it connects to (after DNS, so a name that re-resolves elsewhere is caught)."""
    connector = aiohttp.TCPConnector(limit=connections, socket_factory=guard.socket_factory)
    return aiohttp.ClientSession(connector=connector)
