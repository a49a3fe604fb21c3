"""A database error on a row that carries a sealed key logs no bound parameter, on PostgreSQL
and SQLite: the row's key bytes appear in no form (hex, repr, base64), nor any other value of
the statement, through the production logging set-up (structlog and a stdlib traceback, the
way uvicorn logs an unhandled error)."""

import base64
import io
import logging
import uuid

import pytest
import structlog
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from chainflow.core.logging import configure_logging
from chainflow.domain.master_key import foreign_key_ids
from chainflow.domain.wallets import service
from chainflow.domain.wallets.custody import seal_into
from chainflow.domain.wallets.models import Wallet, WalletStatus
from chainflow.infra.db.uow import unit_of_work
from chainflow.infra.signing.keystore import MasterKey
from chainflow.infra.signing.local import generate_private_key

CANARY = "canary-label-5f1e"


def forms_of(secret: bytes) -> list[str]:
    """How bytes show up in a log line: hex, Python's repr, base64 (a 12-byte slice each,
    long enough to be unmistakable)."""
    return [
        secret.hex()[:24],
        repr(secret)[2:14],
        repr(repr(secret))[3:15],  # repr inside a JSON or repr string: backslashes doubled
        base64.b64encode(secret).decode()[:16],
    ]


async def test_duplicate_sealed_row_logs_no_parameter(
    sessionmaker: async_sessionmaker[AsyncSession], master_key: MasterKey
) -> None:
    configure_logging(json_format=True)
    stream = io.StringIO()
    handler = logging.getLogger().handlers[0]
    assert isinstance(handler, logging.StreamHandler)
    handler.setStream(stream)
    key = generate_private_key()
    async with unit_of_work(sessionmaker) as session:
        first = await service.import_wallet(
            session, key, master=master_key, sealed_rows=foreign_key_ids
        )
    twin = Wallet(id=uuid.uuid4(), address=first.address, label=CANARY, status=WalletStatus.ACTIVE)
    seal_into(twin, key, master=master_key)
    secrets = [twin.encrypted_key, twin.wrapped_data_key, key.reveal()]
    with pytest.raises(IntegrityError):
        async with unit_of_work(sessionmaker) as session:
            session.add(twin)
            try:
                await session.flush()
            except IntegrityError as exc:
                structlog.get_logger("test").exception("wallet.insert_failed")
                logging.getLogger("uvicorn.error").error(
                    "Exception in ASGI application", exc_info=exc
                )
                raise
    logged = stream.getvalue()
    assert "wallet.insert_failed" in logged
    assert "IntegrityError" in logged
    assert CANARY not in logged
    assert "[parameters" not in logged
    assert first.address not in logged
    for secret in secrets:
        assert secret is not None
        for form in forms_of(secret):
            assert form not in logged, form
