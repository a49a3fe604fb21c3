"""Key custody on PostgreSQL and SQLite: sealed rows, tampering, rotation, wrong master key."""

import inspect

import pytest
from eth_account import Account
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from chainflow.cli import rotation
from chainflow.core.crashpoints import Crasher
from chainflow.core.settings import Settings
from chainflow.core.types import SecretBytes
from chainflow.domain.master_key import check_master_key, foreign_key_ids
from chainflow.domain.wallets import custody, service
from chainflow.domain.wallets.custody import rewrap_batch, seal_into, signer_for
from chainflow.domain.wallets.errors import MasterKeyMismatch, MasterKeyRotated
from chainflow.domain.wallets.models import Wallet
from chainflow.domain.wallets.repository import master_key_ids
from chainflow.domain.webhooks import secrets as webhook_secrets
from chainflow.domain.webhooks import service as webhooks
from chainflow.domain.webhooks.models import WebhookEndpoint
from chainflow.domain.webhooks.schemas import WebhookCreate
from chainflow.infra.db.uow import unit_of_work
from chainflow.infra.signing.keystore import DecryptionFailed, MasterKey
from chainflow.infra.signing.local import generate_private_key
from chainflow.infra.signing.signer import KeyUnreadable
from tests.support.fixtures import ApiHarness
from tests.support.rotation import TX

Sessionmaker = async_sessionmaker[AsyncSession]


async def make_wallets(sessionmaker: Sessionmaker, master: MasterKey, n: int) -> list[Wallet]:
    async with unit_of_work(sessionmaker) as session:
        return [
            await service.import_wallet(
                session, generate_private_key(), master=master, sealed_rows=foreign_key_ids
            )
            for _ in range(n)
        ]


async def signs_as_itself(sessionmaker: Sessionmaker, wallet: Wallet, master: MasterKey) -> bool:
    async with unit_of_work(sessionmaker) as session:
        loaded = await service.get_wallet(session, wallet.id)
    signed = await signer_for(loaded, master=master).sign_transaction(TX)
    return bool(Account.recover_transaction(signed.raw) == wallet.address)


class TestSealedRows:
    async def test_a_tampered_ciphertext_fails_to_decrypt(
        self, sessionmaker: Sessionmaker, master_key: MasterKey
    ) -> None:
        [wallet] = await make_wallets(sessionmaker, master_key, 1)
        async with unit_of_work(sessionmaker) as session:
            loaded = await service.get_wallet(session, wallet.id)
            blob = bytearray(loaded.encrypted_key or b"")
            blob[-1] ^= 1
            loaded.encrypted_key = bytes(blob)
        async with unit_of_work(sessionmaker) as session:
            loaded = await service.get_wallet(session, wallet.id)
        with pytest.raises(KeyUnreadable):
            signer_for(loaded, master=master_key)

    async def test_a_ciphertext_moved_to_another_row_fails_to_decrypt(
        self, sessionmaker: Sessionmaker, master_key: MasterKey
    ) -> None:
        first, second = await make_wallets(sessionmaker, master_key, 2)
        async with unit_of_work(sessionmaker) as session:
            a = await service.get_wallet(session, first.id)
            b = await service.get_wallet(session, second.id)
            b.encrypted_key, b.wrapped_data_key = a.encrypted_key, a.wrapped_data_key
        async with unit_of_work(sessionmaker) as session:
            moved = await service.get_wallet(session, second.id)
        with pytest.raises(KeyUnreadable):
            signer_for(moved, master=master_key)

    @pytest.mark.parametrize("sealed", ["not a key", "another wallet's key"])
    async def test_a_row_sealed_over_a_wrong_key_is_unreadable_not_a_crash(
        self, sessionmaker: Sessionmaker, master_key: MasterKey, sealed: str
    ) -> None:
        """Sealed with the row's own associated data, so it decrypts: a plaintext that is no
        secp256k1 key raised the curve library's error, which aborted the chain's whole drain,
        and another key signed as the wallet (review). Only the holder of the master key can
        write such a row; the lane then waits like any unreadable key."""
        [wallet] = await make_wallets(sessionmaker, master_key, 1)
        key = SecretBytes(bytes(32)) if sealed == "not a key" else generate_private_key()
        async with unit_of_work(sessionmaker) as session:
            loaded = await service.get_wallet(session, wallet.id)
            seal_into(loaded, key, master=master_key)
        async with unit_of_work(sessionmaker) as session:
            loaded = await service.get_wallet(session, wallet.id)
        with pytest.raises(
            KeyUnreadable, match=f"wallet {wallet.id}: its sealed key is not"
        ) as caught:
            signer_for(loaded, master=master_key)
        assert caught.value.__cause__ is None  # nothing chained: no key in a traceback
        assert caught.value.__suppress_context__ or caught.value.__context__ is None


class TestMasterKeyCheck:
    async def test_a_wrong_master_key_is_refused_naming_key_ids_only(
        self, sessionmaker: Sessionmaker, master_key: MasterKey
    ) -> None:
        await make_wallets(sessionmaker, master_key, 2)
        wrong = MasterKey.generate()
        with pytest.raises(MasterKeyMismatch, match=f"2 by {master_key.key_id}") as caught:
            async with unit_of_work(sessionmaker) as session:
                await check_master_key(session, master=wrong)
        assert wrong.key_id in str(caught.value)

    async def test_the_right_master_key_passes(
        self, sessionmaker: Sessionmaker, master_key: MasterKey
    ) -> None:
        await make_wallets(sessionmaker, master_key, 2)
        async with unit_of_work(sessionmaker) as session:
            await check_master_key(session, master=master_key)


async def rotate(sessionmaker: Sessionmaker, keys: MasterKey, new: MasterKey, limit: int) -> int:
    """Re-wrap in committed batches until none is left, as `chainflow keys rotate-master`."""
    total = 0
    while True:
        async with unit_of_work(sessionmaker) as session:
            count = await rewrap_batch(session, keys=keys, new=new, limit=limit)
        if not count:
            return total
        total += count


class TestRotation:
    async def test_every_wallet_stays_usable_under_the_new_key_only(
        self, sessionmaker: Sessionmaker, master_key: MasterKey
    ) -> None:
        wallets = await make_wallets(sessionmaker, master_key, 3)
        new = MasterKey.generate()
        assert await rotate(sessionmaker, master_key, new, limit=2) == 3
        for wallet in wallets:
            assert await signs_as_itself(sessionmaker, wallet, new)
        async with unit_of_work(sessionmaker) as session:
            await check_master_key(session, master=new)
            loaded = await service.get_wallet(session, wallets[0].id)
        with pytest.raises(KeyUnreadable):
            signer_for(loaded, master=master_key)

    async def test_running_it_again_is_a_no_op(
        self, sessionmaker: Sessionmaker, master_key: MasterKey
    ) -> None:
        wallets = await make_wallets(sessionmaker, master_key, 2)
        new = MasterKey.generate()
        await rotate(sessionmaker, master_key, new, limit=10)
        assert await rotate(sessionmaker, master_key, new, limit=10) == 0
        assert await signs_as_itself(sessionmaker, wallets[1], new)

    async def test_a_half_done_rotation_leaves_every_wallet_usable_with_both_keys(
        self, sessionmaker: Sessionmaker, master_key: MasterKey
    ) -> None:
        wallets = await make_wallets(sessionmaker, master_key, 3)
        new = MasterKey.generate()
        async with unit_of_work(sessionmaker) as session:
            assert await rewrap_batch(session, keys=master_key, new=new, limit=2) == 2
        with pytest.raises(MasterKeyMismatch, match="1 by"):
            async with unit_of_work(sessionmaker) as session:
                await check_master_key(session, master=new)
        both = new.with_previous(master_key)
        async with unit_of_work(sessionmaker) as session:
            await check_master_key(session, master=both)
        for wallet in wallets:
            assert await signs_as_itself(sessionmaker, wallet, both)
        assert await rotate(sessionmaker, both, new, limit=2) == 1
        async with unit_of_work(sessionmaker) as session:
            await check_master_key(session, master=new)

    async def test_a_row_under_an_unknown_key_stops_the_batch_unchanged(
        self, sessionmaker: Sessionmaker, master_key: MasterKey
    ) -> None:
        [wallet] = await make_wallets(sessionmaker, master_key, 1)
        with pytest.raises(
            DecryptionFailed,
            match=f"wallet {wallet.id}'s key: sealed under master key {master_key.key_id}",
        ):
            await rotate(sessionmaker, MasterKey.generate(), MasterKey.generate(), limit=5)
        assert await signs_as_itself(sessionmaker, wallet, master_key)


class TestSealingAfterRotation:
    @pytest.mark.parametrize("seal", [service.import_wallet, custody.check_sealing_key])
    def test_every_sealing_path_names_the_rows_it_counts(self, seal: object) -> None:
        """`sealed_rows` has no default: its None counted the wallets' rows alone, which
        missed a rotation told by webhook secrets only (review of the fix that made every
        caller pass domain/master_key.foreign_key_ids)."""
        assert callable(seal)
        parameter = inspect.signature(seal).parameters["sealed_rows"]
        assert parameter.default is inspect.Parameter.empty

    async def test_a_process_with_the_old_key_cannot_seal_a_new_wallet(
        self, sessionmaker: Sessionmaker, master_key: MasterKey
    ) -> None:
        await make_wallets(sessionmaker, master_key, 1)
        await rotate(sessionmaker, master_key, MasterKey.generate(), limit=10)
        with pytest.raises(MasterKeyRotated, match="restart it with the current"):
            await make_wallets(sessionmaker, master_key, 1)

    async def test_the_old_key_seals_nothing_where_only_webhook_secrets_were_rotated(
        self, api: ApiHarness, master_key: MasterKey
    ) -> None:
        """No local wallet is stored, only a webhook secret; a rotation re-wraps it. An API
        process still on the old key sealed a new wallet (and a new webhook secret) under the
        retired key: its check counted wallet rows alone. It is refused now, as with wallets."""
        headers = await api.key("admin")
        hook = {"url": "http://127.0.0.1:9/hook"}
        created = await api.client.post("/v1/webhooks", headers=headers, json=hook)
        assert created.status_code == 201, created.text
        # Re-wrapped as `keys rotate-master` does (on PostgreSQL the custody lock keeps a
        # running process out of a rotation; on SQLite nothing does, and this check is all).
        async with unit_of_work(api.resources.sessionmaker) as session:
            moved = await webhook_secrets.rewrap_batch(
                session, keys=master_key, new=MasterKey.generate(), limit=10
            )
        assert moved == 1
        rotate_secret = f"/v1/webhooks/{created.json()['id']}/rotate-secret"
        for path, body in (
            ("/v1/wallets", {"generate": True}),
            ("/v1/wallets", {"private_key": "0x" + generate_private_key().reveal().hex()}),
            ("/v1/webhooks", hook),
            (rotate_secret, None),
        ):
            response = await api.client.post(path, headers=headers, json=body)
            answer = (response.status_code, response.json().get("code"))
            assert answer == (503, "master_key_rotated"), (path, response.text)
        async with unit_of_work(api.resources.sessionmaker) as session:
            assert await master_key_ids(session) == {}

    async def test_a_process_with_the_new_and_previous_key_seals_under_the_new(
        self, sessionmaker: Sessionmaker, master_key: MasterKey
    ) -> None:
        await make_wallets(sessionmaker, master_key, 1)
        new = MasterKey.generate()
        [wallet] = await make_wallets(sessionmaker, new.with_previous(master_key), 1)
        assert wallet.master_key_id == new.key_id


async def make_webhook(sessionmaker: Sessionmaker, master: MasterKey) -> WebhookEndpoint:
    body = WebhookCreate.model_validate({"url": "http://127.0.0.1:9/hook"})
    async with unit_of_work(sessionmaker) as session:
        endpoint, _ = await webhooks.create_endpoint(session, body, master=master)
        return endpoint


class TestEverySealedRow:
    """Webhook signing secrets are sealed by the master key too: the start-up check and the
    rotation's check count them (audit: a process started with a key that wrapped no webhook
    secret, and a rotation then blamed a "wallet key" for a webhook's secrets)."""

    async def test_a_key_that_did_not_wrap_the_webhook_secrets_is_refused_at_start(
        self, sessionmaker: Sessionmaker, master_key: MasterKey
    ) -> None:
        await make_webhook(sessionmaker, master_key)
        wrong = MasterKey.generate()
        with pytest.raises(MasterKeyMismatch) as caught:
            async with unit_of_work(sessionmaker) as session:
                await check_master_key(session, master=wrong)
        message = str(caught.value)
        assert f"webhook signing secrets (1 by {master_key.key_id})" in message
        assert "wallet" not in message
        async with unit_of_work(sessionmaker) as session:
            await check_master_key(session, master=master_key)

    async def test_each_kind_of_row_is_named_with_its_own_key_ids(
        self, sessionmaker: Sessionmaker, master_key: MasterKey
    ) -> None:
        await make_wallets(sessionmaker, master_key, 2)
        other = MasterKey.generate()
        await make_webhook(sessionmaker, other)
        with pytest.raises(MasterKeyMismatch) as caught:
            async with unit_of_work(sessionmaker) as session:
                await check_master_key(session, master=MasterKey.generate())
        message = str(caught.value)
        assert f"wallet keys (2 by {master_key.key_id})" in message
        assert f"webhook signing secrets (1 by {other.key_id})" in message

    async def test_a_rotation_names_the_webhook_and_changes_no_row(
        self, sessionmaker: Sessionmaker, master_key: MasterKey, settings: Settings
    ) -> None:
        [wallet] = await make_wallets(sessionmaker, master_key, 1)
        other = MasterKey.generate()
        endpoint = await make_webhook(sessionmaker, other)
        new = MasterKey.generate()
        with pytest.raises(
            MasterKeyMismatch, match=f"webhook signing secrets \\(1 by {other.key_id}\\)"
        ):
            await rotation.rotate(settings, master_key, new, Crasher())
        async with unit_of_work(sessionmaker) as session:
            assert (await service.get_wallet(session, wallet.id)).master_key_id == master_key.key_id
            assert (await webhooks.get_endpoint(session, endpoint.id)).master_key_id == other.key_id

    async def test_a_webhook_under_an_unknown_key_stops_its_batch_naming_the_webhook(
        self, sessionmaker: Sessionmaker, master_key: MasterKey
    ) -> None:
        endpoint = await make_webhook(sessionmaker, master_key)
        wrong, new = MasterKey.generate(), MasterKey.generate()
        with pytest.raises(
            DecryptionFailed, match=f"webhook {endpoint.id}'s signing secrets: sealed under"
        ):
            async with unit_of_work(sessionmaker) as session:
                await webhook_secrets.rewrap_batch(session, keys=wrong, new=new, limit=5)
