"""POST /v1/wallets with a `signer`: keys kept in a real SoftHSM2 token, over HTTP."""

import gc
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from chainflow.api.app import create_app
from chainflow.core.settings import Settings
from chainflow.domain.wallets.models import Wallet
from chainflow.infra.db.uow import unit_of_work
from chainflow.infra.signing.ecdsa import address_of_public_key, public_key_from_spki
from chainflow.infra.signing.pkcs11 import Pkcs11Token
from tests.integration.signing.test_pkcs11 import p256_key_in
from tests.support.chains import add_anvil_chain
from tests.support.fixtures import ApiHarness, open_api
from tests.support.localstack import AWS_ENV, LocalStack
from tests.support.polling import eventually
from tests.support.processes import refusing_port
from tests.support.softhsm import PIN, SoftHsm

pytestmark = pytest.mark.parametrize("dialect", ["sqlite"], indirect=True)


@pytest.fixture
async def hsm_api(settings: Settings, softhsm: SoftHsm) -> AsyncIterator[ApiHarness]:
    with_token = settings.model_copy(
        update={
            "pkcs11_module": softhsm.config.module,
            "pkcs11_token_label": softhsm.token_label,
            "pkcs11_pin_file": softhsm.pin_file,
        }
    )
    async with open_api(create_app(with_token)) as harness:
        yield harness


async def wallet_rows(api: ApiHarness) -> int:
    async with unit_of_work(api.resources.sessionmaker) as session:
        return int(await session.scalar(select(func.count()).select_from(Wallet)) or 0)


class TestPkcs11Binding:
    async def test_generate_keeps_the_key_in_the_token(
        self, hsm_api: ApiHarness, softhsm: SoftHsm
    ) -> None:
        response = await hsm_api.client.post(
            "/v1/wallets",
            headers=await hsm_api.key("wallets"),
            json={"signer": {"type": "pkcs11", "generate": True}, "label": "hsm"},
        )
        assert response.status_code == 201, response.text
        body = response.json()
        assert body["signer"]["type"] == "pkcs11"
        label = body["signer"]["key_ref"]
        token = Pkcs11Token(softhsm.config)
        try:
            assert address_of_public_key(token.public_key(label)) == body["address"]
        finally:
            token.close()
        assert PIN not in response.text

    async def test_binding_by_label_gives_the_keys_address(
        self, hsm_api: ApiHarness, softhsm: SoftHsm
    ) -> None:
        token = Pkcs11Token(softhsm.config)
        label, _ = token.generate()
        token.close()
        headers = await hsm_api.key("wallets")
        response = await hsm_api.client.post(
            "/v1/wallets",
            headers=headers,
            json={"signer": {"type": "pkcs11", "key_label": label}},
        )
        assert response.status_code == 201, response.text
        assert response.json()["signer"] == {"type": "pkcs11", "key_ref": label}
        again = await hsm_api.client.post(
            "/v1/wallets", headers=headers, json={"signer": {"type": "pkcs11", "key_label": label}}
        )
        assert again.status_code == 409, again.text

    async def test_a_key_on_another_curve_is_refused_and_nothing_stored(
        self, hsm_api: ApiHarness, softhsm: SoftHsm
    ) -> None:
        p256_key_in(softhsm, "api-p256")
        response = await hsm_api.client.post(
            "/v1/wallets",
            headers=await hsm_api.key("wallets"),
            json={"signer": {"type": "pkcs11", "key_label": "api-p256"}},
        )
        assert response.status_code == 422, response.text
        assert response.json()["code"] == "signer_wrong_curve"
        assert await wallet_rows(hsm_api) == 0

    async def test_an_unknown_label_is_refused(self, hsm_api: ApiHarness) -> None:
        response = await hsm_api.client.post(
            "/v1/wallets",
            headers=await hsm_api.key("wallets"),
            json={"signer": {"type": "pkcs11", "key_label": "nope"}},
        )
        assert (response.status_code, response.json()["code"]) == (422, "signer_key_not_found")

    @pytest.mark.parametrize(
        "signer",
        [
            {"type": "pkcs11"},
            {"type": "pkcs11", "generate": True, "key_label": "x"},
            {"type": "pkcs11", "key_id": "x"},
            {"type": "vault", "generate": True},
        ],
    )
    async def test_malformed_signer_bodies_are_422(
        self, hsm_api: ApiHarness, signer: dict[str, object]
    ) -> None:
        response = await hsm_api.client.post(
            "/v1/wallets", headers=await hsm_api.key("wallets"), json={"signer": signer}
        )
        assert response.status_code == 422, response.text

    async def test_signer_and_private_key_together_are_422(self, hsm_api: ApiHarness) -> None:
        response = await hsm_api.client.post(
            "/v1/wallets",
            headers=await hsm_api.key("wallets"),
            json={"signer": {"type": "pkcs11", "generate": True}, "generate": True},
        )
        assert response.status_code == 422, response.text


class TestSignerHealthOnTheLane:
    async def test_a_removed_token_shows_on_the_lane_and_clears_once_back(
        self, hsm_api: ApiHarness, softhsm: SoftHsm, anvil_url: str
    ) -> None:
        async with unit_of_work(hsm_api.resources.sessionmaker) as session:
            await add_anvil_chain(session, anvil_url)
        headers = await hsm_api.key("wallets")
        created = await hsm_api.client.post(
            "/v1/wallets",
            headers=headers,
            json={"signer": {"type": "pkcs11", "generate": True}, "chain_ids": [31337]},
        )
        assert created.status_code == 201, created.text
        path = f"/v1/wallets/{created.json()['id']}/chains/31337"
        lane = (await hsm_api.client.get(path, headers=headers)).json()
        assert (lane["signer_healthy"], lane["signer_error"]) == (True, None)
        gc.collect()  # PyKCS11 modules other tests left loaded (see test_pkcs11.TestHealth)

        async def lane_with(healthy: bool) -> dict[str, Any] | None:
            # The token's answer is kept pkcs11.HEALTH_CACHE_S: reads within it see the last one.
            read = (await hsm_api.client.get(path, headers=headers)).json()
            return read if read["signer_healthy"] is healthy else None

        away = softhsm.tokens.with_name("tokens.api")
        shutil.move(softhsm.tokens, away)
        try:
            lane = await eventually(lambda: lane_with(False), timeout_s=20, interval_s=0.5)
        finally:
            shutil.move(away, softhsm.tokens)
        assert "PKCS#11" in lane["signer_error"] or "no key labelled" in lane["signer_error"]
        assert PIN not in str(lane)
        lane = await eventually(lambda: lane_with(True), timeout_s=20, interval_s=0.5)
        assert lane["signer_error"] is None


@pytest.fixture
async def kms_api(settings: Settings, localstack: LocalStack) -> AsyncIterator[ApiHarness]:
    with_kms = settings.model_copy(update={"aws_kms_endpoint_url": localstack.url})
    async with open_api(create_app(with_kms)) as harness:
        yield harness


class TestAwsKmsBinding:
    async def test_generate_creates_a_key_in_kms(
        self, kms_api: ApiHarness, localstack: LocalStack
    ) -> None:
        response = await kms_api.client.post(
            "/v1/wallets",
            headers=await kms_api.key("wallets"),
            json={"signer": {"type": "aws_kms", "generate": True}, "label": "kms"},
        )
        assert response.status_code == 201, response.text
        signer = response.json()["signer"]
        assert signer["type"] == "aws_kms"
        der = localstack.client().get_public_key(KeyId=signer["key_ref"])["PublicKey"]
        assert address_of_public_key(public_key_from_spki(der)) == response.json()["address"]
        assert AWS_ENV["AWS_SECRET_ACCESS_KEY"] not in response.text

    async def test_binding_by_alias_keeps_the_keys_arn(
        self, kms_api: ApiHarness, localstack: LocalStack
    ) -> None:
        client = localstack.client()
        key = client.create_key(KeySpec="ECC_SECG_P256K1", KeyUsage="SIGN_VERIFY")["KeyMetadata"]
        client.create_alias(AliasName="alias/api-hot", TargetKeyId=key["KeyId"])
        headers = await kms_api.key("wallets")
        response = await kms_api.client.post(
            "/v1/wallets",
            headers=headers,
            json={"signer": {"type": "aws_kms", "key_id": "alias/api-hot"}},
        )
        assert response.status_code == 201, response.text
        assert response.json()["signer"] == {"type": "aws_kms", "key_ref": key["Arn"]}
        again = await kms_api.client.post(
            "/v1/wallets",
            headers=headers,
            json={"signer": {"type": "aws_kms", "key_id": key["KeyId"]}},
        )
        assert again.status_code == 409, again.text

    @pytest.mark.parametrize(
        ("create", "code"),
        [
            ({"KeySpec": "ECC_NIST_P256", "KeyUsage": "SIGN_VERIFY"}, "signer_wrong_curve"),
            ({}, "signer_wrong_key_usage"),  # a symmetric encryption key
        ],
    )
    async def test_a_key_that_cannot_sign_for_ethereum_is_refused_and_nothing_stored(
        self, kms_api: ApiHarness, localstack: LocalStack, create: dict[str, str], code: str
    ) -> None:
        key_id = localstack.client().create_key(**create)["KeyMetadata"]["KeyId"]
        response = await kms_api.client.post(
            "/v1/wallets",
            headers=await kms_api.key("wallets"),
            json={"signer": {"type": "aws_kms", "key_id": key_id}},
        )
        assert (response.status_code, response.json()["code"]) == (422, code), response.text
        assert await wallet_rows(kms_api) == 0

    async def test_an_unknown_key_is_refused(self, kms_api: ApiHarness) -> None:
        response = await kms_api.client.post(
            "/v1/wallets",
            headers=await kms_api.key("wallets"),
            json={"signer": {"type": "aws_kms", "key_id": "alias/nope"}},
        )
        assert (response.status_code, response.json()["code"]) == (422, "signer_key_not_found")

    async def test_a_stopped_kms_is_503_and_nothing_stored(
        self, settings: Settings, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        for name, value in AWS_ENV.items():
            monkeypatch.setenv(name, value)
        closed = settings.model_copy(
            update={"aws_kms_endpoint_url": f"http://127.0.0.1:{refusing_port()}"}
        )
        async with open_api(create_app(closed)) as harness:
            response = await harness.client.post(
                "/v1/wallets",
                headers=await harness.key("wallets"),
                json={"signer": {"type": "aws_kms", "generate": True}},
            )
            assert (response.status_code, response.json()["code"]) == (503, "signer_unavailable")
            assert await wallet_rows(harness) == 0


class TestUnconfigured:
    async def test_pkcs11_without_a_module_is_refused(self, api: ApiHarness) -> None:
        response = await api.client.post(
            "/v1/wallets",
            headers=await api.key("wallets"),
            json={"signer": {"type": "pkcs11", "generate": True}},
        )
        assert (response.status_code, response.json()["code"]) == (422, "signer_not_configured")

    async def test_aws_kms_without_a_region_is_refused(
        self, api: ApiHarness, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
    ) -> None:
        for name in ("AWS_REGION", "AWS_DEFAULT_REGION"):
            monkeypatch.delenv(name, raising=False)
        monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
        response = await api.client.post(
            "/v1/wallets",
            headers=await api.key("wallets"),
            json={"signer": {"type": "aws_kms", "key_id": "alias/hot"}},
        )
        assert (response.status_code, response.json()["code"]) == (422, "signer_not_configured")
