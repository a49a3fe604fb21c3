"""The AWS KMS signer against LocalStack's KMS (host mode): curve and usage checked when a key
is read, aliases resolved to the key's ARN, errors mapped without AWS's messages, throttling
and 5xx retried with jitter, the per-key rate cap, and an unreachable KMS reported at once."""

import time
from collections.abc import AsyncIterator
from dataclasses import replace

import aiohttp
import pytest
from aiohttp import web
from eth_utils.crypto import keccak

from chainflow.infra.signing.aws_kms import (
    HEALTH_TIMEOUT_S,
    AwsKms,
    AwsKmsSigner,
    KmsKeyNotFound,
    WrongKeyUsage,
)
from chainflow.infra.signing.ecdsa import SECP256K1_N, WrongCurve
from chainflow.infra.signing.signer import HEALTHY, SignerHealth, SignerUnavailable
from tests.support.localstack import AWS_ENV, LocalStack, kms_config
from tests.support.polling import eventually
from tests.support.processes import refusing_port

DIGEST = keccak(b"chainflow kms test")


@pytest.fixture
def kms(localstack: LocalStack) -> AwsKms:
    return AwsKms(kms_config(localstack.url))


async def new_signer(kms: AwsKms) -> AwsKmsSigner:
    arn, public_key = await kms.public_key(await kms.create_key())
    return AwsKmsSigner(kms, arn, public_key)


async def test_a_created_key_signs_low_s_for_its_address(kms: AwsKms) -> None:
    signer = await new_signer(kms)
    assert signer.key_ref.startswith("arn:aws:kms:")
    for _ in range(20):  # about half of KMS's raw signatures are high-s
        signature = await signer.sign_digest(DIGEST)
        assert signature.s <= SECP256K1_N // 2
        assert signature.recovery_id in (0, 1)


async def test_a_key_on_another_curve_is_refused(kms: AwsKms, localstack: LocalStack) -> None:
    key = localstack.client().create_key(KeySpec="ECC_NIST_P256", KeyUsage="SIGN_VERIFY")
    with pytest.raises(WrongCurve):
        await kms.public_key(key["KeyMetadata"]["KeyId"])


async def test_a_symmetric_key_is_refused(kms: AwsKms, localstack: LocalStack) -> None:
    key = localstack.client().create_key()  # SYMMETRIC_DEFAULT, ENCRYPT_DECRYPT
    with pytest.raises(WrongKeyUsage):
        await kms.public_key(key["KeyMetadata"]["KeyId"])


async def test_an_alias_resolves_to_the_keys_arn(kms: AwsKms, localstack: LocalStack) -> None:
    signer = await new_signer(kms)
    localstack.client().create_alias(AliasName="alias/chainflow-test", TargetKeyId=signer.key_ref)
    arn, public_key = await kms.public_key("alias/chainflow-test")
    assert (arn, public_key) == (signer.key_ref, signer.public_key)


async def test_an_unknown_key_is_not_found(kms: AwsKms) -> None:
    with pytest.raises(KmsKeyNotFound) as caught:
        await kms.public_key("alias/nope")
    assert "nope" not in str(caught.value)  # AWS's own message is never passed on


async def test_a_disabled_key_makes_the_signer_unavailable_until_enabled(
    kms: AwsKms, localstack: LocalStack
) -> None:
    signer = await new_signer(kms)
    localstack.client().disable_key(KeyId=signer.key_ref)
    with pytest.raises(SignerUnavailable, match="DisabledException"):
        await signer.sign_digest(DIGEST)
    localstack.client().enable_key(KeyId=signer.key_ref)
    assert (await signer.sign_digest(DIGEST)).s <= SECP256K1_N // 2


async def test_an_unreachable_kms_is_unavailable_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in AWS_ENV.items():
        monkeypatch.setenv(name, value)
    kms = AwsKms(kms_config(f"http://127.0.0.1:{refusing_port()}"))  # nothing listens there
    started = time.monotonic()
    with pytest.raises(SignerUnavailable, match="cannot be reached"):
        await kms.create_key()
    assert time.monotonic() - started < 5
    # For a moment after, calls fail without waiting for another connection or timeout.
    with pytest.raises(SignerUnavailable, match="a moment ago"):
        await kms.public_key("alias/any")


async def test_signing_is_capped_per_key(localstack: LocalStack) -> None:
    kms = AwsKms(kms_config(localstack.url, rate=20))
    signer = await new_signer(kms)
    started = time.monotonic()
    for _ in range(11):
        await signer.sign_digest(DIGEST)
    assert time.monotonic() - started >= 10 / 20 * 0.95


class ThrottlingProxy:
    """Answers the first `fail` Sign calls with a KMS throttling (or 5xx) error; forwards the
    rest, and every other call, to LocalStack."""

    def __init__(self, upstream: str, http: aiohttp.ClientSession) -> None:
        self.upstream, self.http = upstream, http
        self.fail = 0
        self.status = 400
        self.signs = 0

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        target = request.headers.get("X-Amz-Target", "")
        if target.endswith(".Sign"):
            self.signs += 1
            if self.fail > 0:
                self.fail -= 1
                kind = "ThrottlingException" if self.status == 400 else "KMSInternalException"
                return web.json_response(
                    {"__type": kind, "message": "Rate exceeded"},
                    status=self.status,
                    content_type="application/x-amz-json-1.1",
                )
        headers = {k: v for k, v in request.headers.items() if k.lower() != "host"}
        async with self.http.post(self.upstream, data=body, headers=headers) as answer:
            return web.Response(
                body=await answer.read(),
                status=answer.status,
                content_type=answer.content_type,
            )


@pytest.fixture
async def proxy(localstack: LocalStack) -> AsyncIterator[tuple[ThrottlingProxy, str]]:
    async with aiohttp.ClientSession() as http:
        throttler = ThrottlingProxy(localstack.url, http)
        app = web.Application()
        app.router.add_post("/", throttler.handle)
        runner = web.AppRunner(app)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start()  # the OS picks the port at the bind
        port = runner.addresses[-1][1]
        try:
            yield throttler, f"http://127.0.0.1:{port}"
        finally:
            await runner.cleanup()


@pytest.mark.parametrize("status", [400, 500])
async def test_throttling_and_5xx_are_retried(
    proxy: tuple[ThrottlingProxy, str], status: int
) -> None:
    throttler, url = proxy
    signer = await new_signer(AwsKms(kms_config(url)))
    throttler.fail, throttler.status = 3, status
    assert (await signer.sign_digest(DIGEST)).s <= SECP256K1_N // 2
    assert throttler.signs == 4


async def test_throttling_past_the_retries_leaves_the_signer_unavailable(
    proxy: tuple[ThrottlingProxy, str],
) -> None:
    throttler, url = proxy
    signer = await new_signer(AwsKms(kms_config(url)))
    throttler.fail = 100
    with pytest.raises(SignerUnavailable, match="ThrottlingException"):
        await signer.sign_digest(DIGEST)
    assert throttler.signs == 5  # the first try and max_retries = 4


class TestHealth:
    """`health()`: GetPublicKey within a short timeout, its answer kept a while (issue 20)."""

    async def test_a_stopped_kms_is_unhealthy_and_healthy_again_once_back(
        self, localstack: LocalStack
    ) -> None:
        kms = AwsKms(replace(kms_config(localstack.url), health_cache_s=0.2))
        signer = await new_signer(kms)
        assert await signer.health() == HEALTHY
        localstack.pause()
        try:

            async def unhealthy() -> SignerHealth | None:
                health = await signer.health()
                return None if health.ok else health

            started = time.monotonic()
            down = await eventually(unhealthy, timeout_s=15)
            assert "cannot be reached" in (down.detail or "")
            assert time.monotonic() - started < HEALTH_TIMEOUT_S + 3  # bounded, not 10 s
        finally:
            localstack.resume()

        async def healthy() -> bool:
            return (await signer.health()).ok

        assert await eventually(healthy, timeout_s=15)
        assert (await signer.sign_digest(DIGEST)).s <= SECP256K1_N // 2

    async def test_a_disabled_key_is_unhealthy_until_enabled(self, localstack: LocalStack) -> None:
        kms = AwsKms(replace(kms_config(localstack.url), health_cache_s=0))
        signer = await new_signer(kms)
        localstack.client().disable_key(KeyId=signer.key_ref)
        health = await signer.health()
        assert not health.ok
        assert health.detail == "the KMS key is Disabled"
        localstack.client().enable_key(KeyId=signer.key_ref)
        assert await signer.health() == HEALTHY

    async def test_an_answer_is_kept_for_a_few_seconds(self, localstack: LocalStack) -> None:
        kms = AwsKms(kms_config(localstack.url))  # the default: HEALTH_CACHE_S
        signer = await new_signer(kms)
        assert await signer.health() == HEALTHY
        localstack.client().disable_key(KeyId=signer.key_ref)
        try:
            assert await signer.health() == HEALTHY  # no second KMS call within the window
        finally:
            localstack.client().enable_key(KeyId=signer.key_ref)
