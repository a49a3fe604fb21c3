"""A real `chainflow api` process on PostgreSQL whose wallet INSERT fails in the database (a
trigger raises): the caller gets a 500 problem, and the process log, where uvicorn writes the
traceback of an unhandled error, holds none of the statement's parameters (the sealed key
bytes, the label) and no key-shaped path."""

import asyncio
import base64
import re
from pathlib import Path

import asyncpg
import httpx
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from chainflow.domain.apikeys.service import create_api_key
from chainflow.infra.db.engine import create_engine, create_sessionmaker
from chainflow.infra.db.uow import unit_of_work
from chainflow.infra.signing.keystore import MasterKey
from tests.support.databases import TestDatabases
from tests.support.processes import base_env, listening_port, processes, wait_http

CANARY = "canary-label-9c2d"
KEY = "4c0883a69102937d6231471b5dbb6204fe5129617082792ae468d01a3f362318"
FAIL_WALLET_INSERTS = """
CREATE FUNCTION refuse_wallet() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN RAISE EXCEPTION 'forced failure' USING ERRCODE = 'XX000'; END $$;
CREATE TRIGGER refuse_wallet BEFORE INSERT ON wallets
FOR EACH ROW EXECUTE FUNCTION refuse_wallet();
"""


async def prepare(url: str) -> str:
    """A database whose wallet inserts fail, and an admin API key for it."""
    connection = await asyncpg.connect(url)
    try:
        await connection.execute(FAIL_WALLET_INSERTS)
    finally:
        await connection.close()
    engine = create_engine(url)
    sessionmaker: async_sessionmaker[AsyncSession] = create_sessionmaker(engine)
    async with unit_of_work(sessionmaker) as session:
        _, token = await create_api_key(session, ["admin"])
    await engine.dispose()
    return token


async def test_database_error_logs_no_parameter(
    test_databases: dict[str, TestDatabases], tmp_path: Path
) -> None:
    url = await test_databases["postgresql"].clone()
    token = await prepare(url)
    master = base64.b64encode(MasterKey.generate().secret.reveal()).decode()
    env = base_env(
        database_url=url, master_key=master, log_format="json", data_dir=str(tmp_path / "d")
    )
    headers = {"Authorization": f"Bearer {token}"}
    with processes([["api", "--host", "127.0.0.1", "--port", "0"]], env, tmp_path) as [api]:
        base = f"http://127.0.0.1:{await asyncio.to_thread(listening_port, api)}"
        await asyncio.to_thread(wait_http, f"{base}/healthz", api)
        async with httpx.AsyncClient(base_url=base, headers=headers, timeout=10) as client:
            missing = await client.get(f"/v1/wallets/0x{KEY}")
            assert missing.status_code == 404
            assert KEY not in missing.text
            # Last: uvicorn closes the connection of a request that raised.
            failed = await client.post("/v1/wallets", json={"generate": True, "label": CANARY})
            assert (failed.status_code, failed.json()["code"]) == (500, "internal_error")
    await test_databases["postgresql"].drop(url)
    log = (tmp_path / "proc-0.log").read_text()
    assert "api.unhandled_error" in log, log
    assert "InternalError" in log, log
    assert CANARY not in log
    assert "[parameters" not in log
    assert not re.search(r"\\\\x[0-9a-f]{2}", log), "a bytes repr reached the log"
    assert not re.search(r"[0-9a-fA-F]{64}", log), "a key-shaped value reached the log"
