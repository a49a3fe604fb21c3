"""The HTTP edge, in front of the app: admission, then the caller's key, then the body.

The order is the point (issue 14):
1. Admission is checked before anything that can wait, so a refusal is immediate.
2. A request that carries a body under /v1 is authenticated before a byte of it is read:
   without a valid key it gets 401, and its body is neither read nor parsed. The lookup holds
   a slot, as it may read the database. The key's rate limit is counted then too (429 with
   the body unread; issue 21); a request without a body is counted by the route's key check.
3. The body is read holding no slot (slow senders keep no work out), within a deadline and a
   size limit per route, and its JSON nesting is bounded; only then is a slot taken again.
4. The app gets the body replayed from memory.

Plain ASGI rather than BaseHTTPMiddleware, which costs a task and a stream per request.
"""

from starlette.datastructures import Headers, MutableHeaders
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from chainflow.api import auth, body, problems, ratelimit
from chainflow.api.admission import EXEMPT_PATHS, STREAM_PATHS, Admission, cost_of, refuse
from chainflow.core import jsondepth
from chainflow.core.errors import InvalidInput
from chainflow.core.settings import Settings


class JsonTooDeepInput(InvalidInput):
    code = "json_too_deep"
    title = "JSON nested too deep"


class GateMiddleware:
    def __init__(self, app: ASGIApp, *, settings: Settings) -> None:
        self.app = app
        self.admission = Admission(settings.api_max_in_flight)
        self.limits = body.BodyLimits(settings)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in EXEMPT_PATHS:
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        if body.has_body(headers):
            await self._with_body(scope, headers, receive, send)
        else:
            await self._admitted(scope, receive, send)

    async def _admitted(
        self, scope: Scope, receive: Receive, send: Send, *, body_bytes: int = 0
    ) -> None:
        slots = self.admission.enter(cost_of(scope, body_bytes))
        if not slots:
            await refuse(scope, send)
            return
        held = [slots]
        sending = _with_rate_headers(scope, send)

        async def release_on_start(message: Message) -> None:
            # A stream lives for hours: its slot covers the work before its headers (the
            # key, the filters), and its own limit covers the rest (issue 16).
            if message["type"] == "http.response.start" and held:
                self.admission.leave(held.pop())
            await sending(message)

        streaming = scope["path"] in STREAM_PATHS
        try:
            await self.app(scope, receive, release_on_start if streaming else sending)
        finally:
            if held:
                self.admission.leave(held.pop())

    async def _with_body(
        self, scope: Scope, headers: Headers, receive: Receive, send: Send
    ) -> None:
        if not self.admission.enter():
            await refuse(scope, send, close=True)
            return
        try:
            error = await self._before_reading(scope, headers)
        finally:
            self.admission.leave()
        content = None
        if error is None:
            error, content = await self._read(scope, receive)
        if error is not None:
            await _answer(scope, receive, send, error)
        elif content is not None:  # None: the client went away before sending it all
            replayed = body.replay(content, receive)
            await self._admitted(scope, replayed, send, body_bytes=len(content))

    async def _before_reading(self, scope: Scope, headers: Headers) -> Exception | None:
        try:
            body.check_declared_length(headers, self.limits.max_bytes(scope))
            if scope["path"].startswith("/v1/"):
                resources = scope["app"].state.resources
                key = await auth.authenticate(resources, headers.get("authorization"))
                auth.remember(scope, key)
                await ratelimit.enforce(resources, scope, key)  # before the body is read
        except Exception as exc:  # rendered as the app would render it
            return exc
        return None

    async def _read(self, scope: Scope, receive: Receive) -> tuple[Exception | None, bytes | None]:
        max_bytes, timeout_s = self.limits.max_bytes(scope), self.limits.timeout_s
        try:
            content = await body.read_body(receive, max_bytes=max_bytes, timeout_s=timeout_s)
            if content is not None:
                jsondepth.check_depth(content)
        except jsondepth.JsonTooDeep as exc:
            return JsonTooDeepInput(str(exc), max_depth=exc.max_depth), None
        except Exception as exc:  # rendered as the app would render it
            return exc, None
        return None, content


def _with_rate_headers(scope: Scope, send: Send) -> Send:
    """`send`, adding the key's RateLimit-* headers to the response of a counted request."""

    async def sending(message: Message) -> None:
        if message["type"] == "http.response.start":
            found = ratelimit.headers_of(scope)
            if found is not None:
                headers = MutableHeaders(scope=message)
                for name, value in found:
                    headers.append(name, value)
        await send(message)

    return sending


async def _answer(scope: Scope, receive: Receive, send: Send, error: Exception) -> None:
    """The problem for `error`, closing the connection: the body may be left unread."""
    response = await problems.render_error(Request(scope), error)
    response.headers["connection"] = "close"
    await response(scope, receive, send)
