"""Webhook routes over HTTP, on both databases: the secret shown once, scopes, bounded and
precise refusals (stored state untouched), every SSRF form refused, rotation, test, deliveries,
retry and replay."""

import uuid
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select, update

from chainflow.api.app import create_app
from chainflow.core.clock import utcnow
from chainflow.core.settings import Settings
from chainflow.domain.events import append, sequence_pending
from chainflow.domain.webhooks.delivery import DeliveryConfig, Job, Outcome, claim, fan_out, record
from chainflow.domain.webhooks.models import DeliveryStatus, WebhookDelivery, WebhookEndpoint
from chainflow.infra.db.uow import unit_of_work
from tests.support.fixtures import ApiHarness, open_api

URL = "http://127.0.0.1:9/hook"  # loopback (the test settings allow private hosts); never sent


async def endpoint_count(api: ApiHarness) -> int:
    async with unit_of_work(api.resources.sessionmaker) as session:
        return int(await session.scalar(select(func.count()).select_from(WebhookEndpoint)) or 0)


async def create(api: ApiHarness, headers: dict[str, str], **body: Any) -> httpx.Response:
    return await api.client.post("/v1/webhooks", headers=headers, json={"url": URL, **body})


BAD_BODIES: list[tuple[dict[str, Any], str]] = [
    ({"url": "ftp://example.com/x"}, "url"),
    ({"url": "http://example.com/" + "a" * 2048}, "url"),
    # Stored, then every attempt failed (audit): no port outside 1-65535, no blank or control
    # character (percent-encoded they may be in the path).
    ({"url": "http://example.com:99999/hook"}, "port"),
    ({"url": "http://example.com:0/hook"}, "port"),
    ({"url": "http://exa mple.com/hook"}, "control"),
    ({"url": "http://example.com/a b"}, "control"),
    ({"url": "http://example.com/\r\nX-Foo: 1"}, "control"),
    # Blanks outside ASCII in the host: the HTTP client folds them to a space (review).
    ({"url": "http://exa\u00a0mple.com/hook"}, "control"),
    ({"url": "http://exa\u3000mple.com/hook"}, "control"),
    ({"url": "http://h\u2002x.example/hook"}, "control"),
    ({"url": "http://a..example.com/hook"}, "IDNA"),
    ({"events": []}, "events"),
    ({"events": [f"t{i}.x" for i in range(51)]}, "events"),
    ({"events": ["Transaction.Confirmed"]}, "events"),
    ({"events": ["x" * 101]}, "events"),
    ({"wallet_ids": ["not-a-uuid"]}, "wallet_ids"),
    ({"wallet_ids": []}, "wallet_ids"),  # neither "every" (null) nor "none": refused
    ({"chain_ids": [0]}, "chain_ids"),
    ({"chain_ids": []}, "chain_ids"),
    ({"description": "d" * 501}, "description"),
    ({"secret": "whsec_mine"}, "secret"),
]


class TestCreate:
    async def test_the_secret_is_shown_once(self, api: ApiHarness) -> None:
        headers = await api.key("webhooks")
        created = await create(api, headers, events=["transaction.*"], description="ops")
        assert created.status_code == 201, created.text
        body = created.json()
        assert body["secret"].startswith("whsec_")
        assert (body["events"], body["enabled"], body["description"]) == (
            ["transaction.*"],
            True,
            "ops",
        )
        one = await api.client.get(f"/v1/webhooks/{body['id']}", headers=headers)
        listed = await api.client.get("/v1/webhooks", headers=headers)
        assert one.status_code == listed.status_code == 200
        for text in (one.text, listed.text):
            assert body["secret"] not in text
            assert body["secret"].removeprefix("whsec_") not in text
            assert 'secret"' not in text
        async with unit_of_work(api.resources.sessionmaker) as session:
            row = await session.get(WebhookEndpoint, uuid.UUID(body["id"]))
            assert row is not None
            assert body["secret"].removeprefix("whsec_").encode() not in row.sealed_secrets

    async def test_events_default_to_all(self, api: ApiHarness) -> None:
        created = await create(api, await api.key("admin"))
        assert created.json()["events"] == ["*"]

    async def test_bad_input_is_refused_and_nothing_is_stored(self, api: ApiHarness) -> None:
        headers = await api.key("webhooks")
        for body, where in BAD_BODIES:
            response = await api.client.post(
                "/v1/webhooks", headers=headers, json={"url": URL, **body}
            )
            assert response.status_code == 422, response.text
            problem = response.json()
            assert problem["code"] == "validation_error"
            assert where in problem["detail"]
        assert await endpoint_count(api) == 0

    async def test_scopes(self, api: ApiHarness) -> None:
        for scopes, status in ((("read",), 403), (("wallets",), 403), (("admin",), 201)):
            response = await create(api, await api.key(*scopes))
            assert response.status_code == status, scopes
        denied = await api.client.get("/v1/webhooks", headers=await api.key("read"))
        assert (denied.status_code, denied.json()["code"]) == (403, "insufficient_scope")


FORBIDDEN_HOSTS = [
    "127.0.0.1",
    "127.1",
    "2130706433",
    "0x7f.0.0.1",
    "localhost",
    "10.0.0.1",
    "172.16.5.4",
    "192.168.1.1",
    "169.254.169.254",
    "100.64.0.1",
    "0.0.0.0",  # noqa: S104 - a host refused, never bound
    "224.0.0.1",
    "[::1]",
    "[::]",
    "[fc00::1]",
    "[fd12:3456::1]",
    "[fe80::1]",
    "[ff02::1]",
    "[::ffff:127.0.0.1]",
    "[::ffff:169.254.169.254]",
    "[::ffff:10.0.0.1]",
    "[64:ff9b::a9fe:a9fe]",
]


class TestSsrfGuard:
    @pytest.fixture
    def settings(self, settings: Settings) -> Settings:
        return settings.model_copy(update={"webhook_allow_private_urls": False})

    async def test_every_private_host_form_is_refused_at_create(self, api: ApiHarness) -> None:
        headers = await api.key("webhooks")
        for host in FORBIDDEN_HOSTS:
            response = await api.client.post(
                "/v1/webhooks", headers=headers, json={"url": f"http://{host}:8080/hook"}
            )
            assert response.status_code == 422, (host, response.text)
            assert response.json()["code"] == "webhook_url_forbidden", host
        assert await endpoint_count(api) == 0

    async def test_a_private_host_is_refused_at_update(self, settings: Settings) -> None:
        open_settings = settings.model_copy(update={"webhook_allow_private_urls": True})
        async with open_api(create_app(open_settings)) as lax:
            created = await create(lax, await lax.key("webhooks"))
        async with open_api(create_app(settings)) as strict:
            headers = await strict.key("webhooks")
            webhook_id = created.json()["id"]
            response = await strict.client.patch(
                f"/v1/webhooks/{webhook_id}",
                headers=headers,
                json={"url": "http://169.254.169.254/latest/meta-data"},
            )
            assert (response.status_code, response.json()["code"]) == (
                422,
                "webhook_url_forbidden",
            )
            after = await strict.client.get(f"/v1/webhooks/{webhook_id}", headers=headers)
            assert after.json()["url"] == URL


class TestManage:
    async def test_update_rotate_and_delete(self, api: ApiHarness) -> None:
        headers = await api.key("webhooks")
        created = (await create(api, headers)).json()
        path = f"/v1/webhooks/{created['id']}"
        patched = await api.client.patch(
            path,
            headers=headers,
            json={"events": ["transaction.confirmed"], "enabled": False, "chain_ids": [1]},
        )
        assert patched.status_code == 200, patched.text
        body = patched.json()
        assert (body["events"], body["enabled"], body["chain_ids"]) == (
            ["transaction.confirmed"],
            False,
            [1],
        )
        assert body["disabled_reason"]
        null = await api.client.patch(path, headers=headers, json={"url": None})
        assert null.status_code == 422
        rotated = await api.client.post(f"{path}/rotate-secret", headers=headers)
        assert rotated.status_code == 200, rotated.text
        assert rotated.json()["secret"].startswith("whsec_")
        assert rotated.json()["secret"] != created["secret"]
        assert rotated.json()["previous_secret_expires_at"] is not None
        deleted = await api.client.delete(path, headers=headers)
        assert deleted.status_code == 204
        gone = await api.client.get(path, headers=headers)
        assert (gone.status_code, gone.json()["code"]) == (404, "webhook_not_found")

    async def test_an_empty_filter_is_refused_null_means_every_one(self, api: ApiHarness) -> None:
        headers = await api.key("webhooks")
        wallet = str(uuid.uuid4())
        created = (await create(api, headers, wallet_ids=[wallet], chain_ids=[1])).json()
        path = f"/v1/webhooks/{created['id']}"
        for field in ("wallet_ids", "chain_ids"):
            response = await api.client.patch(path, headers=headers, json={field: []})
            assert response.status_code == 422, response.text
            assert response.json()["detail"].startswith(f"body.{field}:"), response.text
        kept = (await api.client.get(path, headers=headers)).json()
        assert (kept["wallet_ids"], kept["chain_ids"]) == ([wallet], [1])
        every = await api.client.patch(
            path, headers=headers, json={"wallet_ids": None, "chain_ids": None}
        )
        assert (every.json()["wallet_ids"], every.json()["chain_ids"]) == (None, None)

    async def test_credentials_in_the_url_are_never_shown(self, api: ApiHarness) -> None:
        """Shown with its credentials masked, its host, path and query kept (the old code
        showed only `scheme://host:port/***`); stored, and delivered to, in full."""
        headers = await api.key("webhooks")
        secret_url = "http://hook-user:hook-pass@127.0.0.1:9/hook?token=t0k"
        created = await create(api, headers, url=secret_url)
        assert created.status_code == 201, created.text
        path = f"/v1/webhooks/{created.json()['id']}"
        patched = await api.client.patch(path, headers=headers, json={"url": secret_url})
        rotated = await api.client.post(f"{path}/rotate-secret", headers=headers)
        answers = [
            created,
            patched,
            rotated,
            await api.client.get(path, headers=headers),
            await api.client.get("/v1/webhooks", headers=headers),
        ]
        for response in answers:
            assert response.is_success, response.text
            for secret in ("hook-pass", "hook-user"):
                assert secret not in response.text, response.request.url
        assert created.json()["url"] == "http://***@127.0.0.1:9/hook?token=t0k"
        only_user = (await create(api, headers, url="https://hook-user@127.0.0.1:9/")).json()
        assert only_user["url"] == "https://***@127.0.0.1:9/"
        plain = (await create(api, headers)).json()
        assert plain["url"] == URL  # a URL without credentials is shown as it is
        async with unit_of_work(api.resources.sessionmaker) as session:
            row = await session.get(WebhookEndpoint, uuid.UUID(created.json()["id"]))
            assert row is not None
            assert row.url == secret_url

    async def test_the_masked_url_sent_back_and_undeliverable_credentials_are_refused(
        self, api: ApiHarness
    ) -> None:
        """A client that reads an endpoint and PATCHes it back sent the masked URL, which
        replaced the stored one and its credentials (review); credentials HTTP Basic cannot
        carry made every delivery fail."""
        headers = await api.key("webhooks")
        secret_url = "http://hook-user:hook-pass@127.0.0.1:9/hook"
        created = (await create(api, headers, url=secret_url)).json()
        path = f"/v1/webhooks/{created['id']}"
        sent_back = await api.client.patch(
            path, headers=headers, json={"url": created["url"], "description": "x"}
        )
        assert (sent_back.status_code, sent_back.json()["code"]) == (422, "validation_error")
        assert "masked form" in sent_back.text
        before = "http://127.0.0.1:9/***"  # the form answers showed before this release
        sent_back = await api.client.patch(path, headers=headers, json={"url": before})
        assert (sent_back.status_code, sent_back.json()["code"]) == (422, "validation_error")
        for url in ("http://a%3Ab:p@127.0.0.1:9/hook", "http://u:%E2%82%AC@127.0.0.1:9/hook"):
            refused = await create(api, headers, url=url)
            assert (refused.status_code, refused.json()["code"]) == (422, "validation_error")
        async with unit_of_work(api.resources.sessionmaker) as session:
            row = await session.get(WebhookEndpoint, uuid.UUID(created["id"]))
            assert row is not None
            assert (row.url, row.description) == (secret_url, None)
            count = await session.scalar(select(func.count()).select_from(WebhookEndpoint))
        assert count == 1

    async def test_an_unknown_id_is_404(self, api: ApiHarness) -> None:
        headers = await api.key("webhooks")
        path = "/v1/webhooks/00000000-0000-0000-0000-000000000000"
        for method in ("GET", "DELETE"):
            response = await api.client.request(method, path, headers=headers)
            assert (response.status_code, response.json()["code"]) == (404, "webhook_not_found")
        bad = await api.client.get("/v1/webhooks/nope", headers=headers)
        assert bad.status_code == 422

    async def test_list_pages(self, api: ApiHarness) -> None:
        headers = await api.key("webhooks")
        ids = [(await create(api, headers)).json()["id"] for _ in range(3)]
        first = (await api.client.get("/v1/webhooks?limit=2", headers=headers)).json()
        rest = await api.client.get(
            f"/v1/webhooks?limit=2&cursor={first['next_cursor']}", headers=headers
        )
        assert [w["id"] for w in first["items"] + rest.json()["items"]] == ids


class TestDeliveries:
    async def test_test_event_retry_and_status_filter(self, api: ApiHarness) -> None:
        headers = await api.key("webhooks")
        webhook = (await create(api, headers)).json()
        path = f"/v1/webhooks/{webhook['id']}"
        queued = await api.client.post(f"{path}/test", headers=headers)
        assert queued.status_code == 202, queued.text
        delivery = queued.json()
        assert (delivery["event_type"], delivery["status"], delivery["attempts"]) == (
            "webhook.test",
            "pending",
            [],
        )
        assert delivery["event_id"].startswith("evt_")
        pending = await api.client.get(f"{path}/deliveries?status=pending", headers=headers)
        assert [d["id"] for d in pending.json()["items"]] == [delivery["id"]]
        done = await api.client.get(f"{path}/deliveries?status=succeeded", headers=headers)
        assert done.json()["items"] == []
        bad = await api.client.get(f"{path}/deliveries?status=lost", headers=headers)
        assert bad.status_code == 422
        retried = await api.client.post(
            f"{path}/deliveries/{delivery['id']}/retry", headers=headers
        )
        assert retried.status_code == 202
        assert retried.json()["event_id"] == delivery["event_id"]
        missing = await api.client.post(
            f"{path}/deliveries/00000000-0000-0000-0000-000000000000/retry", headers=headers
        )
        assert (missing.status_code, missing.json()["code"]) == (
            404,
            "webhook_delivery_not_found",
        )

    async def test_replay_after_a_cursor_or_since_a_time(self, api: ApiHarness) -> None:
        headers = await api.key("webhooks")
        webhook = (await create(api, headers, events=["transaction.*"])).json()
        async with unit_of_work(api.resources.sessionmaker) as session:
            for kind in ("transaction.queued", "wallet.low_balance", "transaction.confirmed"):
                append(session, kind, data={})
        async with unit_of_work(api.resources.sessionmaker) as session:
            await sequence_pending(session)
        path = f"/v1/webhooks/{webhook['id']}/replay"
        # Fan-out has not reached them yet: it queues them, a replay would send them twice.
        ahead = await api.client.post(path, headers=headers, json={"after": 0})
        assert ahead.status_code == 202, ahead.text
        assert ahead.json() == {"queued": 0, "already_pending": 0, "last_cursor": None}
        async with unit_of_work(api.resources.sessionmaker) as session:
            assert await fan_out(session, now=utcnow()) == 2
        pending = await api.client.post(path, headers=headers, json={"after": 0})
        assert pending.json() == {"queued": 0, "already_pending": 2, "last_cursor": None}
        async with unit_of_work(api.resources.sessionmaker) as session:
            await session.execute(update(WebhookDelivery).values(status=DeliveryStatus.FAILED))
        after = await api.client.post(path, headers=headers, json={"after": 0})
        assert after.json() == {"queued": 2, "already_pending": 0, "last_cursor": None}
        since = await api.client.post(path, headers=headers, json={"since": "2000-01-01T00:00:00Z"})
        assert since.json()["already_pending"] == 2
        later = await api.client.post(path, headers=headers, json={"after": 3})
        assert later.json()["queued"] == 0
        for body in ({}, {"after": 0, "since": "2000-01-01T00:00:00Z"}, {"since": 5}):
            refused = await api.client.post(path, headers=headers, json=body)
            assert refused.status_code == 422, body
        listed = await api.client.get(f"/v1/webhooks/{webhook['id']}/deliveries", headers=headers)
        assert len(listed.json()["items"]) == 4

    async def test_a_replay_since_past_the_years_of_utc_is_422(self, api: ApiHarness) -> None:
        """Valid RFC 3339 with an offset, outside years 1-9999 once in UTC: refused as input,
        not a 500 (the audit's reproduction)."""
        headers = await api.key("webhooks")
        webhook = (await create(api, headers)).json()
        path = f"/v1/webhooks/{webhook['id']}/replay"
        for since in ("9999-12-31T23:59:59-23:59", "0001-01-01T00:00:00+14:00"):
            refused = await api.client.post(path, headers=headers, json={"since": since})
            assert (refused.status_code, refused.json()["code"]) == (422, "validation_error"), (
                since,
                refused.text,
            )
            assert "years 1 to 9999" in refused.json()["detail"]

    async def test_a_retry_of_a_delivery_being_sent_is_409(self, api: ApiHarness) -> None:
        headers = await api.key("webhooks")
        webhook = (await create(api, headers)).json()
        path = f"/v1/webhooks/{webhook['id']}"
        delivery = (await api.client.post(f"{path}/test", headers=headers)).json()
        async with unit_of_work(api.resources.sessionmaker) as session:
            await sequence_pending(session)
        config = DeliveryConfig(
            master=api.resources.master_key, retry_schedule=(1,), disable_after_s=60
        )
        async with unit_of_work(api.resources.sessionmaker) as session:  # a worker takes it
            [job] = await claim(session, config, now=utcnow(), limit=10)
        retried = await api.client.post(
            f"{path}/deliveries/{delivery['id']}/retry", headers=headers
        )
        assert retried.status_code == 409, retried.text
        problem = retried.json()
        assert problem["code"] == "webhook_delivery_in_flight"
        assert "being attempted now" in problem["detail"]
        assert "retry_at" in problem
        async with unit_of_work(api.resources.sessionmaker) as session:  # its outcome
            await record(session, [_answered(job)], config, now=utcnow())
        again = await api.client.post(f"{path}/deliveries/{delivery['id']}/retry", headers=headers)
        assert (again.status_code, again.json()["status"]) == (202, "pending")


def _answered(job: Job) -> Outcome:
    return Outcome(
        delivery_id=job.delivery_id,
        endpoint_id=job.endpoint_id,
        at=utcnow(),
        status_code=200,
        error=None,
        duration_ms=5,
    )
