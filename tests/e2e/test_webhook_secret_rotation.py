"""`chainflow keys rotate-master` re-wraps webhook signing secrets with the wallet keys: after
it, every endpoint's secrets decrypt under the new key alone and are the same secrets."""

from pathlib import Path

from sqlalchemy import select

from chainflow.domain.webhooks import service
from chainflow.domain.webhooks.models import WebhookEndpoint
from chainflow.domain.webhooks.schemas import WebhookCreate
from chainflow.domain.webhooks.secrets import stored_secrets
from chainflow.domain.webhooks.signing import secret_text
from chainflow.infra.db.engine import create_engine, create_sessionmaker
from chainflow.infra.db.uow import unit_of_work
from chainflow.infra.signing.keystore import MasterKey
from chainflow.infra.signing.master_source import load_master_key
from tests.support.processes import base_env
from tests.support.rotation import chainflow, embedded_settings, make_wallets, write_key

ENDPOINTS = 3


async def make_endpoints(url: str, master: MasterKey) -> list[str]:
    engine = create_engine(url)
    try:
        async with unit_of_work(create_sessionmaker(engine)) as session:
            body = WebhookCreate(url="https://example.com/hook")
            return [
                (await service.create_endpoint(session, body, master=master))[1]
                for _ in range(ENDPOINTS)
            ]
    finally:
        await engine.dispose()


async def secrets_under(url: str, master: MasterKey) -> tuple[set[str], list[str]]:
    """The master key ids the endpoints name, and their current secrets decrypted."""
    engine = create_engine(url)
    try:
        async with unit_of_work(create_sessionmaker(engine)) as session:
            rows = (await session.scalars(select(WebhookEndpoint))).all()
            return {r.master_key_id for r in rows}, [
                secret_text(stored_secrets(r, master=master)[0]) for r in rows
            ]
    finally:
        await engine.dispose()


class TestRotation:
    async def test_webhook_secrets_move_to_the_new_key(self, tmp_path: Path) -> None:
        data = tmp_path / "data"
        env = base_env(data_dir=str(data), log_format="json", key_rotation_batch_size="2")
        assert (await chainflow(env, "db", "upgrade")).code == 0
        settings = embedded_settings(data)
        old = load_master_key(settings, allow_generate=True)
        url = settings.resolved_database_url
        await make_wallets(url, old, 2)
        shown = await make_endpoints(url, old)
        new = MasterKey.generate()
        rotated = await chainflow(
            env, "keys", "rotate-master", "--new-key-file", str(write_key(tmp_path / "k", new))
        )
        assert rotated.code == 0, rotated.stderr
        key_ids, secrets = await secrets_under(url, new.only())
        assert key_ids == {new.key_id}
        assert sorted(secrets) == sorted(shown)
        assert not any(s in rotated.stdout + rotated.stderr for s in shown)
