"""Wallet use cases on PostgreSQL and SQLite: import, generate, lifecycle, lanes."""

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from chainflow.domain.chains.errors import ChainNotFound, UnknownChain
from chainflow.domain.master_key import foreign_key_ids
from chainflow.domain.wallets import service
from chainflow.domain.wallets.errors import (
    AdminRequired,
    InvalidStatusTransition,
    WalletExists,
    WalletNotFound,
)
from chainflow.domain.wallets.models import Wallet, WalletStatus
from chainflow.infra.db.uow import unit_of_work
from chainflow.infra.signing.keystore import MasterKey, validate_private_key
from chainflow.infra.signing.local import generate_private_key
from tests.support.chains import add_anvil_chain

Sessionmaker = async_sessionmaker[AsyncSession]
KEY_HEX = "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d"
KEY_ADDRESS = "0x70997970C51812dc3A010C7d01b50e0d17dc79C8"


async def count_wallets(sessionmaker: Sessionmaker) -> int:
    async with unit_of_work(sessionmaker) as session:
        return int(await session.scalar(select(func.count()).select_from(Wallet)) or 0)


class TestImport:
    async def test_stores_checksummed_address_and_sealed_key(
        self, sessionmaker: Sessionmaker, master_key: MasterKey
    ) -> None:
        async with unit_of_work(sessionmaker) as session:
            wallet = await service.import_wallet(
                session,
                validate_private_key(KEY_HEX),
                master=master_key,
                label="ops",
                sealed_rows=foreign_key_ids,
            )
        assert wallet.address == KEY_ADDRESS
        assert wallet.status is WalletStatus.ACTIVE
        assert wallet.master_key_id == master_key.key_id
        stored = (wallet.encrypted_key or b"") + (wallet.wrapped_data_key or b"")
        assert bytes.fromhex(KEY_HEX[2:]) not in stored
        assert KEY_HEX[2:].encode() not in stored

    async def test_a_key_imported_twice_is_refused_without_a_second_row(
        self, sessionmaker: Sessionmaker, master_key: MasterKey
    ) -> None:
        async with unit_of_work(sessionmaker) as session:
            await service.import_wallet(
                session,
                validate_private_key(KEY_HEX),
                master=master_key,
                sealed_rows=foreign_key_ids,
            )
        with pytest.raises(WalletExists, match=KEY_ADDRESS):
            async with unit_of_work(sessionmaker) as session:
                await service.import_wallet(
                    session,
                    validate_private_key(KEY_HEX.upper().replace("0X", "")),
                    master=master_key,
                    sealed_rows=foreign_key_ids,
                )
        assert await count_wallets(sessionmaker) == 1

    async def test_unknown_chain_is_refused_without_a_row(
        self, sessionmaker: Sessionmaker, master_key: MasterKey
    ) -> None:
        with pytest.raises(UnknownChain, match="chain 999"):
            async with unit_of_work(sessionmaker) as session:
                await service.import_wallet(
                    session,
                    validate_private_key(KEY_HEX),
                    master=master_key,
                    chain_ids=[999],
                    sealed_rows=foreign_key_ids,
                )
        assert await count_wallets(sessionmaker) == 0

    async def test_generated_keys_give_distinct_wallets(
        self, sessionmaker: Sessionmaker, master_key: MasterKey
    ) -> None:
        async with unit_of_work(sessionmaker) as session:
            first = await service.import_wallet(
                session, generate_private_key(), master=master_key, sealed_rows=foreign_key_ids
            )
            second = await service.import_wallet(
                session, generate_private_key(), master=master_key, sealed_rows=foreign_key_ids
            )
        assert first.address != second.address


class TestGet:
    async def test_finds_by_id_and_by_address_in_any_case(
        self, sessionmaker: Sessionmaker, master_key: MasterKey
    ) -> None:
        async with unit_of_work(sessionmaker) as session:
            wallet = await service.import_wallet(
                session,
                validate_private_key(KEY_HEX),
                master=master_key,
                sealed_rows=foreign_key_ids,
            )
        async with unit_of_work(sessionmaker) as session:
            by_id = await service.get_wallet(session, str(wallet.id))
            by_address = await service.get_wallet(session, KEY_ADDRESS.lower())
        assert by_id.id == by_address.id == wallet.id

    @pytest.mark.parametrize("ref", ["nope", "0x1234", "3f1c9a4e-0000-4000-8000-000000000000"])
    async def test_unknown_reference_is_not_found(
        self, sessionmaker: Sessionmaker, ref: str
    ) -> None:
        with pytest.raises(WalletNotFound):
            async with unit_of_work(sessionmaker) as session:
                await service.get_wallet(session, ref)


class TestList:
    async def test_pages_with_a_cursor_cover_every_wallet_once(
        self, sessionmaker: Sessionmaker, master_key: MasterKey
    ) -> None:
        async with unit_of_work(sessionmaker) as session:
            for _ in range(5):
                await service.import_wallet(
                    session, generate_private_key(), master=master_key, sealed_rows=foreign_key_ids
                )
        seen: list[str] = []
        cursor: str | None = None
        for _ in range(5):
            async with unit_of_work(sessionmaker) as session:
                page, cursor = await service.list_wallets(session, limit=2, cursor=cursor)
            seen += [w.address for w in page]
            if cursor is None:
                break
        assert len(seen) == len(set(seen)) == 5


class TestStatus:
    @pytest.mark.parametrize(
        ("current", "wanted", "is_admin", "error"),
        [
            (WalletStatus.ACTIVE, WalletStatus.PAUSED, False, None),
            (WalletStatus.PAUSED, WalletStatus.ACTIVE, False, None),
            (WalletStatus.ACTIVE, WalletStatus.DISABLED, False, None),
            (WalletStatus.PAUSED, WalletStatus.DISABLED, False, None),
            (WalletStatus.DISABLED, WalletStatus.ACTIVE, True, None),
            (WalletStatus.DISABLED, WalletStatus.ACTIVE, False, AdminRequired),
            (WalletStatus.DISABLED, WalletStatus.PAUSED, True, InvalidStatusTransition),
        ],
    )
    def test_lifecycle(
        self,
        current: WalletStatus,
        wanted: WalletStatus,
        is_admin: bool,
        error: type[Exception] | None,
    ) -> None:
        if error is None:
            service.check_status_change(current, wanted, is_admin=is_admin)
        else:
            with pytest.raises(error):
                service.check_status_change(current, wanted, is_admin=is_admin)

    async def test_refused_change_leaves_the_row(
        self, sessionmaker: Sessionmaker, master_key: MasterKey
    ) -> None:
        async with unit_of_work(sessionmaker) as session:
            wallet = await service.import_wallet(
                session, generate_private_key(), master=master_key, sealed_rows=foreign_key_ids
            )
            wallet.status = WalletStatus.DISABLED
        with pytest.raises(InvalidStatusTransition):
            async with unit_of_work(sessionmaker) as session:
                loaded = await service.get_wallet(session, wallet.id)
                changes: dict[str, object] = {"status": WalletStatus.PAUSED, "label": "x"}
                await service.update_wallet(session, loaded, changes=changes, is_admin=True)
        async with unit_of_work(sessionmaker) as session:
            loaded = await service.get_wallet(session, wallet.id)
            assert (loaded.status, loaded.label) == (WalletStatus.DISABLED, None)


class TestChains:
    async def test_enable_then_disable_keeps_the_lane(
        self, sessionmaker: Sessionmaker, master_key: MasterKey, anvil_url: str
    ) -> None:
        async with unit_of_work(sessionmaker) as session:
            await add_anvil_chain(session, anvil_url)
            wallet = await service.import_wallet(
                session, generate_private_key(), master=master_key, sealed_rows=foreign_key_ids
            )
            lane = await service.set_chain_enabled(session, wallet, 31337, enabled=True)
            lane.next_nonce = 7
        async with unit_of_work(sessionmaker) as session:
            lane = await service.set_chain_enabled(session, wallet, 31337, enabled=False)
        assert (lane.enabled, lane.next_nonce) == (False, 7)

    async def test_unknown_chain_is_not_found(
        self, sessionmaker: Sessionmaker, master_key: MasterKey
    ) -> None:
        with pytest.raises(ChainNotFound):
            async with unit_of_work(sessionmaker) as session:
                wallet = await service.import_wallet(
                    session, generate_private_key(), master=master_key, sealed_rows=foreign_key_ids
                )
                await service.set_chain_enabled(session, wallet, 424242, enabled=True)
