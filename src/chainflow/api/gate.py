"""The HTTP edge, in front of the app: admission, then the caller's key, then the body.

The order is the point (issue 14):
1. Admission is checked before anything that can wait, so a refusal is immediate.
2. A request that carries a body under /v1 is authenticated before a byte of it is read:
   without a valid key it gets 401, and its body is neither read nor parsed. The lookup holds
   a slot, as it may read the database. The key's rate limit is counted then too (429 with
   the body unread; issue 21); a request without a body is counted by the route's key check.
3. The body is read holding no slot (slow senders keep no work out), within a deadline and a
   size limit per route, its JSON nesting is bounded and no object in it may name a key
   twice; only then is a slot taken again.
4. The app gets the body replayed from memory.

Part of the one ASGI layer in front of the app (edge.py), which sends the probes and
`/metrics` past it; what it answers and what the app answers go through the request's one
`Reply` (reply.py).
"""

from starlette.datastructures import Headers
from starlette.requests import Request
from starlette.types import ASGIApp, Receive, Scope

from chainflow.api import auth, body, problems, ratelimit
from chainflow.api.admission import STREAM_PATHS, Admission, cost_of, refuse
from chainflow.api.reply import Reply
from chainflow.core import jsondepth, jsonkeys
from chainflow.core.errors import InvalidInput
from chainflow.core.settings import Settings


class JsonTooDeepInput(InvalidInput):
    code = "json_too_deep"
    title = "JSON nested too deep"


class JsonDuplicateKeyInput(InvalidInput):
    code = "json_duplicate_key"
    title = "JSON object with a key twice"


class Gate:
    """The gate of one API process, in front of `app`."""

    def __init__(self, app: ASGIApp, settings: Settings) -> None:
        self.app = app
        self.admission = Admission(settings.api_max_in_flight)
        self.limits = body.BodyLimits(settings)

    async def __call__(
        self, scope: Scope, headers: Headers, receive: Receive, reply: Reply
    ) -> None:
        if body.has_body(headers):
            await self._with_body(scope, headers, receive, reply)
        else:
            await self._admitted(scope, receive, reply)

    async def _admitted(
        self, scope: Scope, receive: Receive, reply: Reply, *, body_bytes: int = 0
    ) -> None:
        slots = self.admission.enter(cost_of(scope, body_bytes))
        if not slots:
            await refuse(scope, reply)
            return
        held = [slots]
        reply.admitted = True  # its response carries the key's RateLimit-* headers

        def release() -> None:
            if held:
                self.admission.leave(held.pop())

        if scope["path"] in STREAM_PATHS:
            # A stream lives for hours: its slot covers the work before its headers (the
            # key, the filters), and its own limit covers the rest (issue 16).
            reply.on_start = release
        try:
            await self.app(scope, receive, reply)
        finally:
            release()

    async def _with_body(
        self, scope: Scope, headers: Headers, receive: Receive, reply: Reply
    ) -> None:
        if not self.admission.enter():
            await refuse(scope, reply, close=True)
            return
        try:
            error = await self._before_reading(scope, headers)
        finally:
            self.admission.leave()
        content = None
        if error is None:
            error, content = await self._read(scope, receive)
        if error is not None:
            await _answer(scope, receive, reply, error)
        elif content is not None:  # None: the client went away before sending it all
            replayed = body.replay(content, receive)
            await self._admitted(scope, replayed, reply, body_bytes=len(content))

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
                jsonkeys.check_unique_keys(content)
        except jsondepth.JsonTooDeep as exc:
            return JsonTooDeepInput(str(exc), max_depth=exc.max_depth), None
        except jsonkeys.DuplicateJsonKey as exc:
            return JsonDuplicateKeyInput(str(exc), key=exc.key), None
        except Exception as exc:  # rendered as the app would render it
            return exc, None
        return None, content


async def _answer(scope: Scope, receive: Receive, reply: Reply, error: Exception) -> None:
    """The problem for `error`, closing the connection: the body may be left unread."""
    response = await problems.render_error(Request(scope), error)
    response.headers["connection"] = "close"
    await response(scope, receive, reply)
