"""The PKCS#11 signer against a real SoftHSM2 token."""

import asyncio
import gc
import shutil
import threading
import time
from collections.abc import Iterator

import PyKCS11
import pytest
from eth_account import Account
from eth_utils.crypto import keccak

from chainflow.infra.signing.ecdsa import (
    SECP256K1_N,
    WrongCurve,
    WrongDigestLength,
    address_of_public_key,
)
from chainflow.infra.signing.pkcs11 import (
    HEALTH_TIMEOUT_S,
    KeyNotFound,
    Pkcs11Signer,
    Pkcs11Token,
)
from chainflow.infra.signing.signer import HEALTHY, SignerHealth, SignerUnavailable
from tests.support.polling import eventually
from tests.support.softhsm import PIN, SoftHsm, user_session


@pytest.fixture
def token(softhsm: SoftHsm) -> Iterator[Pkcs11Token]:
    token = Pkcs11Token(softhsm.config)
    yield token
    token.close()


def p256_key_in(softhsm: SoftHsm, label: str) -> None:
    """A key on the wrong curve (P-256), made with PyKCS11 directly."""
    session = user_session(softhsm, rw=True)
    p256 = bytes.fromhex("06082a8648ce3d030107")
    common = [(PyKCS11.CKA_TOKEN, True), (PyKCS11.CKA_LABEL, label)]
    session.generateKeyPair(
        [(PyKCS11.CKA_CLASS, PyKCS11.CKO_PUBLIC_KEY), (PyKCS11.CKA_EC_PARAMS, p256), *common],
        [(PyKCS11.CKA_CLASS, PyKCS11.CKO_PRIVATE_KEY), (PyKCS11.CKA_SIGN, True), *common],
        mecha=PyKCS11.Mechanism(PyKCS11.CKM_EC_KEY_PAIR_GEN, None),
    )
    session.closeSession()


class TestGenerate:
    def test_a_generated_key_signs_low_s_signatures_that_recover(self, token: Pkcs11Token) -> None:
        label, public_key = token.generate()
        signer = Pkcs11Signer(token, label, public_key)
        for i in range(40):  # ~half of SoftHSM's raw signatures are high-s
            digest = keccak(i.to_bytes(2, "big"))
            signature = asyncio.run(signer.sign_digest(digest))
            assert signature.s <= SECP256K1_N // 2
            vrs = (signature.recovery_id + 27, signature.r, signature.s)
            assert Account._recover_hash(digest, vrs=vrs) == signer.address

    def test_a_bound_label_gives_the_same_address(self, token: Pkcs11Token) -> None:
        label, public_key = token.generate()
        assert token.public_key(label) == public_key
        assert address_of_public_key(public_key) == Pkcs11Signer(token, label, public_key).address

    def test_the_private_key_cannot_be_read(self, softhsm: SoftHsm, token: Pkcs11Token) -> None:
        label, _ = token.generate()
        session = user_session(softhsm)
        (key,) = session.findObjects(
            [(PyKCS11.CKA_CLASS, PyKCS11.CKO_PRIVATE_KEY), (PyKCS11.CKA_LABEL, label)]
        )
        flags = session.getAttributeValue(
            key, [PyKCS11.CKA_SENSITIVE, PyKCS11.CKA_EXTRACTABLE, PyKCS11.CKA_NEVER_EXTRACTABLE]
        )
        assert flags == [True, False, True]
        session.closeSession()


class TestRefusals:
    @pytest.mark.parametrize("length", [20, 31, 33, 64])
    def test_a_digest_of_the_wrong_length_is_refused(self, token: Pkcs11Token, length: int) -> None:
        label, public_key = token.generate()
        signer = Pkcs11Signer(token, label, public_key)
        with pytest.raises(WrongDigestLength):
            asyncio.run(signer.sign_digest(bytes(length)))

    def test_a_key_on_another_curve_is_refused_at_binding(
        self, softhsm: SoftHsm, token: Pkcs11Token
    ) -> None:
        p256_key_in(softhsm, "p256-key")
        with pytest.raises(WrongCurve):
            token.public_key("p256-key")

    def test_an_unknown_label_is_not_found(self, token: Pkcs11Token) -> None:
        with pytest.raises(KeyNotFound):
            token.public_key("no-such-key")

    def test_a_long_unknown_label_is_shown_cut_to_the_api_bound(self, token: Pkcs11Token) -> None:
        """`chainflow wallet import --signer pkcs11 --key-label` takes any length; the error
        (signer_key_not_found) shows the label, cut to the API's 200 characters."""
        label = "k" * 250 + "TAIL" * 2_000
        with pytest.raises(KeyNotFound) as caught:
            token.public_key(label)
        message = str(caught.value)
        assert "k" * 200 in message
        assert "TAIL" not in message
        assert len(message) < 300

    def test_a_key_pasted_as_a_long_label_is_not_shown_cut(self, token: Pkcs11Token) -> None:
        """Scrubbed before it is cut: cut first, a key across the 200th character was no
        longer key-shaped, and 63 of its 64 digits reached stderr (review)."""
        key = "ab" * 32
        with pytest.raises(KeyNotFound) as caught:
            token.public_key("hsm-" + "x" * 133 + key)
        message = str(caught.value)
        assert "[redacted]" in message
        assert "abab" not in message

    def test_a_missing_token_is_unavailable_and_names_no_pin(self, softhsm: SoftHsm) -> None:
        # A fresh module load: another Pkcs11Token in this process may hold the login.
        config = softhsm.config
        bad = Pkcs11Token(type(config)(config.module, "no-such-token", config.pin))
        with pytest.raises(SignerUnavailable) as caught:
            bad.generate()
        assert PIN not in str(caught.value)


class TestHealth:
    """`health()`: one object search in the token, made again after an error (issue 20).
    These ask the token's search itself; `probe` (what `Pkcs11Signer.health` and lane reads
    ask) keeps its answer a few seconds, tested below."""

    async def test_a_removed_token_is_unhealthy_and_healthy_again_once_back(
        self, softhsm: SoftHsm, token: Pkcs11Token
    ) -> None:
        label, public_key = token.generate()
        signer = Pkcs11Signer(token, label, public_key)
        assert await signer.health() == HEALTHY
        assert await asyncio.to_thread(token.health, label) == HEALTHY
        # PyKCS11 finalises the module only when its last user in the process unloads it:
        # modules other tests left loaded (held by a kept traceback) go first.
        gc.collect()
        away = softhsm.tokens.with_name("tokens.health")
        shutil.move(softhsm.tokens, away)  # the token is gone for the running module
        try:
            for _ in range(2):  # before and after the module is loaded again
                health = await asyncio.to_thread(token.health, label)
                assert not health.ok
                assert PIN not in (health.detail or "")
        finally:
            shutil.move(away, softhsm.tokens)
        assert await asyncio.to_thread(token.health, label) == HEALTHY
        assert (await signer.sign_digest(keccak(b"back"))).s <= SECP256K1_N // 2

    async def test_a_deleted_key_is_unhealthy(self, softhsm: SoftHsm, token: Pkcs11Token) -> None:
        label, public_key = token.generate()
        signer = Pkcs11Signer(token, label, public_key)
        session = user_session(softhsm, rw=True)
        for handle in session.findObjects([(PyKCS11.CKA_LABEL, label)]):
            session.destroyObject(handle)
        session.closeSession()
        health = await signer.health()  # never asked before: no answer kept
        assert not health.ok
        assert label in (health.detail or "")

    async def test_aclose_leaves_no_search_behind(self, token: Pkcs11Token) -> None:
        """An engine or API stopping while a probe searches a wedged token closes it within
        HEALTH_TIMEOUT_S, and no search task is left pending on its loop."""
        label, _ = token.generate()
        release = threading.Event()

        def wedged(_label: str) -> SignerHealth:
            release.wait(30)
            return HEALTHY

        def searches() -> list[asyncio.Task[object]]:
            tasks = asyncio.all_tasks()
            return [t for t in tasks if t.get_name().startswith("pkcs11.search:")]

        async def searching() -> list[asyncio.Task[object]]:
            return searches()

        token.health = wedged  # type: ignore[method-assign,assignment]
        probe = asyncio.ensure_future(token.probe(label))
        try:
            await eventually(searching, timeout_s=5)
            started = time.monotonic()
            await token.aclose()
            assert time.monotonic() - started < HEALTH_TIMEOUT_S + 2
            await asyncio.gather(probe, return_exceptions=True)
            assert not [t for t in searches() if not t.done()]
        finally:
            release.set()

    async def test_probe_keeps_its_answer_and_bounds_a_wedged_module(
        self, token: Pkcs11Token
    ) -> None:
        label, _ = token.generate()
        assert await token.probe(label) == HEALTHY
        searches: list[str] = []
        release = threading.Event()

        def wedged(asked: str) -> SignerHealth:  # a module that stopped answering
            searches.append(asked)
            release.wait(30)
            return HEALTHY

        token.health = wedged  # type: ignore[method-assign,assignment]
        try:
            for _ in range(20):  # a burst of lane reads: one search, at most, per few seconds
                assert await token.probe(label) == HEALTHY
            assert searches == []
            started = time.monotonic()
            answers = await asyncio.gather(*(token.probe("other") for _ in range(5)))
            assert time.monotonic() - started < HEALTH_TIMEOUT_S + 5  # bounded, not 30 s
            assert all(not a.ok and "did not answer" in (a.detail or "") for a in answers)
            assert searches == ["other"]  # one search in flight for the five callers
        finally:
            release.set()
