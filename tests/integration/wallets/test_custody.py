"""Key custody on PostgreSQL and SQLite: sealed rows, tampering, rotation, wrong master key."""

import pytest
from eth_account import Account
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from chainflow.domain.wallets import service
from chainflow.domain.wallets.custody import check_master_key, rotate_master_key, signer_for
from chainflow.domain.wallets.errors import MasterKeyMismatch
from chainflow.domain.wallets.models import Wallet
from chainflow.infra.db.uow import unit_of_work
from chainflow.infra.signing.keystore import DecryptionFailed, MasterKey
from chainflow.infra.signing.local import generate_private_key

Sessionmaker = async_sessionmaker[AsyncSession]
TX = {
    "type": 2,
    "chainId": 31337,
    "nonce": 0,
    "to": "0x000000000000000000000000000000000000dEaD",
    "value": 1,
    "gas": 21000,
    "maxFeePerGas": 2_000_000_000,
    "maxPriorityFeePerGas": 1_000_000_000,
    "data": b"",
}


async def make_wallets(sessionmaker: Sessionmaker, master: MasterKey, n: int) -> list[Wallet]:
    async with unit_of_work(sessionmaker) as session:
        return [
            await service.import_wallet(session, generate_private_key(), master=master)
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
        with pytest.raises(DecryptionFailed):
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
        with pytest.raises(DecryptionFailed):
            signer_for(moved, master=master_key)


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


class TestRotation:
    async def test_every_wallet_stays_usable_under_the_new_key_only(
        self, sessionmaker: Sessionmaker, master_key: MasterKey
    ) -> None:
        wallets = await make_wallets(sessionmaker, master_key, 3)
        new = MasterKey.generate()
        async with unit_of_work(sessionmaker) as session:
            assert await rotate_master_key(session, old=master_key, new=new) == 3
        for wallet in wallets:
            assert await signs_as_itself(sessionmaker, wallet, new)
        async with unit_of_work(sessionmaker) as session:
            await check_master_key(session, master=new)
            loaded = await service.get_wallet(session, wallets[0].id)
        with pytest.raises(DecryptionFailed):
            signer_for(loaded, master=master_key)

    async def test_running_it_again_is_a_no_op(
        self, sessionmaker: Sessionmaker, master_key: MasterKey
    ) -> None:
        wallets = await make_wallets(sessionmaker, master_key, 2)
        new = MasterKey.generate()
        async with unit_of_work(sessionmaker) as session:
            await rotate_master_key(session, old=master_key, new=new)
        async with unit_of_work(sessionmaker) as session:
            assert await rotate_master_key(session, old=master_key, new=new) == 0
        assert await signs_as_itself(sessionmaker, wallets[1], new)

    async def test_an_interrupted_rotation_changes_nothing(
        self, sessionmaker: Sessionmaker, master_key: MasterKey
    ) -> None:
        wallets = await make_wallets(sessionmaker, master_key, 2)
        new = MasterKey.generate()
        with pytest.raises(RuntimeError):
            async with unit_of_work(sessionmaker) as session:
                await rotate_master_key(session, old=master_key, new=new)
                raise RuntimeError("process died before commit")
        async with unit_of_work(sessionmaker) as session:
            await check_master_key(session, master=master_key)
        assert await signs_as_itself(sessionmaker, wallets[0], master_key)
