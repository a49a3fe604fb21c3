"""Shared fixtures: real PostgreSQL and SQLite databases, a real anvil, the API app."""

import base64
import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
from pydantic import SecretStr
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from chainflow.api.app import create_app
from chainflow.core.settings import Settings
from chainflow.domain.chains.probe import ChainIdProbe, rpc_chain_id_probe
from chainflow.infra.anvil import run_anvil
from chainflow.infra.db.engine import create_engine, create_sessionmaker
from chainflow.infra.net.urlguard import UrlGuard
from chainflow.infra.rpc.client import new_http_session
from chainflow.infra.signing.keystore import MasterKey
from tests.support.databases import PostgresDatabases, SqliteDatabases, TestDatabases
from tests.support.fixtures import ApiHarness, open_api
from tests.support.localstack import AWS_ENV, LocalStack, run_localstack
from tests.support.softhsm import SoftHsm, start_softhsm

# No test may reach AWS or the instance-metadata address (169.254.169.254) through boto3's
# standard chain: a KMS client without an endpoint goes to a closed loopback port instead.
os.environ["AWS_EC2_METADATA_DISABLED"] = "true"
os.environ["AWS_ENDPOINT_URL"] = "http://127.0.0.1:9"


@pytest.fixture(scope="session")
async def test_databases(
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[dict[str, TestDatabases]]:
    """Migrated templates on both dialects; PostgreSQL must be reachable (no skip)."""
    postgres = PostgresDatabases()
    sqlite = SqliteDatabases(tmp_path_factory.mktemp("sqlite"))
    await postgres.start()
    await sqlite.start()
    yield {"postgresql": postgres, "sqlite": sqlite}
    await postgres.stop()


@pytest.fixture(params=["sqlite", "postgresql"])
def dialect(request: pytest.FixtureRequest) -> str:
    value: str = request.param
    return value


@pytest.fixture
async def database_url(
    dialect: str, test_databases: dict[str, TestDatabases]
) -> AsyncIterator[str]:
    url = await test_databases[dialect].clone()
    yield url
    await test_databases[dialect].drop(url)


@pytest.fixture
async def sessionmaker(database_url: str) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    engine = create_engine(database_url, pool_size=2)
    yield create_sessionmaker(engine)
    await engine.dispose()


@pytest.fixture
def master_key() -> MasterKey:
    return MasterKey.generate()


@pytest.fixture(scope="session")
async def anvil_url() -> AsyncIterator[str]:
    async with run_anvil() as url:
        yield url


@pytest.fixture
async def own_anvil_url() -> AsyncIterator[str]:
    """An anvil for one test: base-fee spikes and reorgs must not reach the shared one."""
    async with run_anvil() as url:
        yield url


@pytest.fixture
def settings(database_url: str, tmp_path: Path, master_key: MasterKey) -> Settings:
    return Settings(
        database_url=database_url,
        data_dir=tmp_path / "data",
        master_key=SecretStr(base64.b64encode(master_key.secret.reveal()).decode()),
        rpc_timeout_s=3,
        rpc_allow_private_urls=True,  # the test chain is an anvil on loopback
        webhook_allow_private_urls=True,  # receivers are on loopback; names are not resolved
    )


@pytest.fixture
async def api(settings: Settings) -> AsyncIterator[ApiHarness]:
    async with open_api(create_app(settings)) as harness:
        yield harness


@pytest.fixture
async def client(api: ApiHarness) -> httpx.AsyncClient:
    return api.client


@pytest.fixture
async def probe() -> AsyncIterator[ChainIdProbe]:
    guard = UrlGuard(allow_private=True)  # the test chain is an anvil on loopback
    async with new_http_session(guard=guard) as http:
        yield rpc_chain_id_probe(http, timeout_s=3, guard=guard)


@pytest.fixture(scope="session")
def softhsm(tmp_path_factory: pytest.TempPathFactory) -> SoftHsm:
    """A SoftHSM2 token for this test session; fails (no skip) when softhsm2 is missing."""
    return start_softhsm(tmp_path_factory.mktemp("softhsm"))


@pytest.fixture(scope="session")
def localstack_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    """LocalStack's KMS for this test session (host mode, loopback); fails (no skip) when
    .cache/localstack is missing."""
    with run_localstack(tmp_path_factory.mktemp("localstack")) as stack:
        yield stack


@pytest.fixture
def localstack(localstack_server: LocalStack, monkeypatch: pytest.MonkeyPatch) -> LocalStack:
    """LocalStack, with its dummy AWS credentials and region in the environment for this test
    only (boto3's standard chain reads them; other tests must find KMS unconfigured)."""
    for name, value in AWS_ENV.items():
        monkeypatch.setenv(name, value)
    return localstack_server
