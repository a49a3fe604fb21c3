"""POST /v1/transactions' own handler (issue 17), through the real app on both databases: a
JSON body whose key the edge authenticated is submitted without FastAPI's dependency solving,
and every other request is answered by FastAPI's handler exactly as before."""

import json
import os
from typing import Any

import pytest
from fastapi import routing

from tests.support.fixtures import ApiHarness, prepare_sender
from tests.support.fixtures import tx_body as body

JSON = "application/json"


@pytest.fixture
async def setup(api: ApiHarness, anvil_url: str) -> dict[str, Any]:
    return await prepare_sender(api, anvil_url)


@pytest.fixture
def solved(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The paths whose dependencies FastAPI solved."""
    paths: list[str] = []
    real = routing.solve_dependencies  # type: ignore[attr-defined]

    async def counted(**kwargs: Any) -> Any:
        paths.append(kwargs["request"].url.path)
        return await real(**kwargs)

    monkeypatch.setattr(routing, "solve_dependencies", counted)
    return paths


async def _post(api: ApiHarness, headers: dict[str, str], content: bytes, media: str) -> Any:
    headers = headers | {"content-type": media}
    return await api.client.post("/v1/transactions", headers=headers, content=content)


async def test_a_json_submission_skips_dependency_solving(
    api: ApiHarness, setup: dict[str, Any], solved: list[str]
) -> None:
    content = json.dumps(body(setup, value="7")).encode()
    headers = setup["write"] | {"Idempotency-Key": "route-1"}
    first = await _post(api, headers, content, JSON)
    again = await _post(api, headers, content, JSON)
    assert (first.status_code, again.status_code) == (202, 202), first.text
    assert first.json()["value"] == "7"
    assert first.json()["id"] == again.json()["id"]
    assert again.headers["Idempotent-Replayed"] == "true"
    assert solved == []


@pytest.mark.parametrize(
    ("media", "content", "status", "code", "loc"),
    [
        (f"{JSON}; charset=utf-8", None, 202, None, None),
        ("text/plain", None, 422, "validation_error", ["body"]),
        (JSON, b'{"chain_id": 31337', 422, "validation_error", ["body", 18]),
        (JSON, b"[]", 422, "validation_error", ["body"]),
        (JSON, b'{"chain_id": 31337}', 422, "validation_error", ["body", "wallet"]),
        (JSON, b'{"chain_id": "31337"}', 422, "validation_error", ["body", "chain_id"]),
    ],
)
async def test_every_other_submission_is_answered_by_fastapi(
    api: ApiHarness,
    setup: dict[str, Any],
    solved: list[str],
    media: str,
    content: bytes | None,
    status: int,
    code: str | None,
    loc: list[object] | None,
) -> None:
    content = content or json.dumps(body(setup)).encode()
    answer = await _post(api, setup["write"], content, media)
    assert answer.status_code == status, answer.text
    if code is not None:
        assert answer.headers["content-type"] == "application/problem+json"
        assert (answer.json()["code"], answer.json()["errors"][0]["loc"]) == (code, loc)
    # FastAPI refuses a body that is not JSON before it solves the dependencies
    assert solved == ([] if loc == ["body", 18] else ["/v1/transactions"])


async def test_a_key_without_the_scope_is_refused_before_the_body_is_read(
    api: ApiHarness, setup: dict[str, Any], solved: list[str]
) -> None:
    reader = await api.key("read")
    for content in (json.dumps(body(setup)).encode(), b"not json"):
        refused = await _post(api, reader, content, JSON)
        assert refused.status_code == 403, refused.text
        assert refused.headers["content-type"] == "application/problem+json"
    assert solved == []  # the scope is checked first, as FastAPI's dependency did
    listed = await api.client.get("/v1/transactions", headers=setup["write"])
    assert listed.json()["items"] == []


async def test_a_submission_is_found_first_and_other_methods_fall_through(
    api: ApiHarness, setup: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The route is matched before the included routers are tried (docs/performance.md item
    33); the path's other methods are answered by the included router, as before."""
    walked: list[str] = []
    real = routing._IncludedRouter.matches

    def counted(self: routing._IncludedRouter, scope: Any) -> Any:
        walked.append(scope["method"])
        return real(self, scope)

    monkeypatch.setattr(routing._IncludedRouter, "matches", counted)
    answer = await _post(api, setup["write"], json.dumps(body(setup)).encode(), JSON)
    assert answer.status_code == 202, answer.text
    assert walked == []
    listed = await api.client.get("/v1/transactions", headers=setup["write"])
    assert listed.status_code == 200
    assert [item["id"] for item in listed.json()["items"]] == [answer.json()["id"]]
    for method in ("PUT", "PATCH", "DELETE"):
        refused = await api.client.request(method, "/v1/transactions", headers=setup["write"])
        assert refused.status_code == 405, method
        assert refused.headers["content-type"] == "application/problem+json"
        assert refused.json()["code"] == "method_not_allowed"


async def test_a_submission_reads_no_environment_variable(
    api: ApiHarness, setup: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """FastAPI asked OpenTelemetry for its providers on every request, which read the
    environment three times (os.environ: 1.6% of the API's CPU, docs/performance.md item 33)."""
    content = json.dumps(body(setup)).encode()
    assert (await _post(api, setup["write"], content, JSON)).status_code == 202
    read: list[str] = []
    environ = type(os.environ)
    real = environ.__getitem__

    def counted(self: Any, name: str) -> Any:
        read.append(name)
        return real(self, name)

    monkeypatch.setattr(environ, "__getitem__", counted)
    answer = await _post(api, setup["write"], content, JSON)
    monkeypatch.undo()
    assert answer.status_code == 202, answer.text
    assert read == []
