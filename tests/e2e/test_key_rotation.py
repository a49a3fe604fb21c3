"""`chainflow keys rotate-master` SIGKILLed at every step, embedded (key file, SQLite) and
distributed (CHAINFLOW_MASTER_KEY, PostgreSQL): at every instant every wallet decrypts and
signs with keys that exist on disk, a process started meanwhile runs and seals under the current
key, and running the rotation again finishes it (issue 14, finding 7)."""

import signal
from pathlib import Path

import aiohttp
import pytest

from chainflow.core.crashpoints import CrashPoint
from chainflow.infra.datadir import hold_data_dir
from chainflow.infra.db.custody_lock import hold_custody_lock
from chainflow.infra.db.engine import create_engine
from chainflow.infra.signing.keystore import MasterKey
from chainflow.infra.signing.master_source import load_master_key
from tests.support.databases import REDIS_URL
from tests.support.processes import base_env, listening_port, processes, wait_http
from tests.support.rotation import (
    chainflow,
    embedded_settings,
    every_wallet_signs,
    key_ids,
    key_text,
    make_wallets,
    write_key,
)

WALLETS = 5
BATCH = "2"  # 5 wallets: batches of 2, 2 and 1
# Every step of an embedded rotation, in order: the previous-key file (:1) and the new key
# file (:2) each written then renamed, then each batch of rows re-wrapped then committed.
# .ci/run kills at the steps marked CI (between the two key files, after the new one is in
# place, after the first batch commits); scripts/chaos at every one.
_CI_STEPS = {
    f"{CrashPoint.KEY_FILE_WRITTEN}:2",
    f"{CrashPoint.KEY_FILE_INSTALLED}:2",
    f"{CrashPoint.ROTATION_BATCH_COMMITTED}:1",
}


def _steps(points: list[str]) -> list[object]:
    return [
        point if point in _CI_STEPS else pytest.param(point, marks=pytest.mark.chaos_full)
        for point in points
    ]


EMBEDDED_STEPS = _steps(
    [
        CrashPoint.ROTATION_LOCKED,
        f"{CrashPoint.KEY_FILE_WRITTEN}:1",
        f"{CrashPoint.KEY_FILE_INSTALLED}:1",
        f"{CrashPoint.KEY_FILE_WRITTEN}:2",
        f"{CrashPoint.KEY_FILE_INSTALLED}:2",
        f"{CrashPoint.ROTATION_BATCH_REWRAPPED}:1",
        f"{CrashPoint.ROTATION_BATCH_COMMITTED}:1",
        f"{CrashPoint.ROTATION_BATCH_REWRAPPED}:2",
        f"{CrashPoint.ROTATION_BATCH_COMMITTED}:2",
        f"{CrashPoint.ROTATION_BATCH_REWRAPPED}:3",
        f"{CrashPoint.ROTATION_BATCH_COMMITTED}:3",
    ]
)
# With CHAINFLOW_MASTER_KEY no key file is written: the steps are the batches.
DISTRIBUTED_STEPS = _steps(
    [
        CrashPoint.ROTATION_LOCKED,
        f"{CrashPoint.ROTATION_BATCH_REWRAPPED}:1",
        f"{CrashPoint.ROTATION_BATCH_COMMITTED}:1",
        f"{CrashPoint.ROTATION_BATCH_REWRAPPED}:2",
        f"{CrashPoint.ROTATION_BATCH_COMMITTED}:3",
    ]
)


def embedded_env(data_dir: Path, **settings: str) -> dict[str, str]:
    return base_env(data_dir=str(data_dir), log_format="json", **settings)


class TestEmbedded:
    async def prepare(self, tmp_path: Path) -> tuple[Path, str, MasterKey]:
        data = tmp_path / "data"
        assert (await chainflow(embedded_env(data), "db", "upgrade")).code == 0
        settings = embedded_settings(data)
        old = load_master_key(settings, allow_generate=True)
        await make_wallets(settings.resolved_database_url, old, WALLETS)
        return data, settings.resolved_database_url, old

    @pytest.mark.parametrize("point", EMBEDDED_STEPS)
    async def test_killed_at_a_step_then_run_again(self, point: str, tmp_path: Path) -> None:
        data, url, old = await self.prepare(tmp_path)
        new = MasterKey.generate()
        new_file = write_key(tmp_path / "new.key", new)
        env = embedded_env(data, key_rotation_batch_size=BATCH)

        killed = await chainflow(
            env | {"CHAINFLOW_TEST_CRASH_AT": point}, "keys", "rotate-master", stdin=key_text(new)
        )
        assert killed.code == -signal.SIGKILL, killed.stderr
        on_disk = load_master_key(embedded_settings(data), allow_generate=False)
        assert on_disk.known_ids <= {old.key_id, new.key_id}
        assert await every_wallet_signs(url, on_disk) == WALLETS

        # A process started before the rotation is run again: it runs, and seals under the
        # key `master.key` holds now.
        started = await chainflow(env, "wallet", "generate")
        assert started.code == 0, started.stderr
        assert set((await key_ids(url)).values()) <= {old.key_id, new.key_id}

        again = await chainflow(env, "keys", "rotate-master", "--new-key-file", str(new_file))
        assert again.code == 0, again.stderr
        assert f"under master key {new.key_id}" in again.stdout
        current = load_master_key(embedded_settings(data), allow_generate=False)
        assert current.key_id == new.key_id
        assert set((await key_ids(url)).values()) == {new.key_id}
        assert await every_wallet_signs(url, current.only()) == WALLETS + 1
        assert key_text(new) not in again.stdout + again.stderr + killed.stderr

    async def test_a_rotation_to_another_key_first_finishes_the_interrupted_one(
        self, tmp_path: Path
    ) -> None:
        data, url, old = await self.prepare(tmp_path)
        env = embedded_env(data, key_rotation_batch_size=BATCH)
        first, second = MasterKey.generate(), MasterKey.generate()
        crash = {"CHAINFLOW_TEST_CRASH_AT": f"{CrashPoint.ROTATION_BATCH_COMMITTED}:1"}
        killed = await chainflow(env | crash, "keys", "rotate-master", stdin=key_text(first))
        assert killed.code == -signal.SIGKILL
        assert set((await key_ids(url)).values()) == {old.key_id, first.key_id}

        done = await chainflow(env, "keys", "rotate-master", stdin=key_text(second))
        assert done.code == 0, done.stderr
        current = load_master_key(embedded_settings(data), allow_generate=False)
        assert (current.key_id, [k.key_id for k in current.previous]) == (
            second.key_id,
            [first.key_id],
        )
        assert await every_wallet_signs(url, second) == WALLETS


@pytest.mark.parametrize("dialect", ["postgresql"], indirect=True)
class TestDistributed:
    @pytest.mark.parametrize("point", DISTRIBUTED_STEPS)
    async def test_killed_at_a_step_then_run_again(
        self, point: str, database_url: str, tmp_path: Path
    ) -> None:
        old, new = MasterKey.generate(), MasterKey.generate()
        await make_wallets(database_url, old, WALLETS)
        new_file = write_key(tmp_path / "new.key", new)
        env = base_env(
            database_url=database_url,
            redis_url=REDIS_URL,
            master_key=key_text(old),
            key_rotation_batch_size=BATCH,
            log_format="json",
        )
        rotate = ("keys", "rotate-master", "--new-key-file", str(new_file))

        killed = await chainflow(env | {"CHAINFLOW_TEST_CRASH_AT": point}, *rotate)
        assert killed.code == -signal.SIGKILL, killed.stderr
        assert await every_wallet_signs(database_url, new.with_previous(old)) == WALLETS

        # Processes restarted on the new key, the old one as CHAINFLOW_MASTER_KEY_PREVIOUS, run
        # and seal under the new key before the rotation is finished.
        switched = env | {
            "CHAINFLOW_MASTER_KEY": key_text(new),
            "CHAINFLOW_MASTER_KEY_PREVIOUS": key_text(old),
        }
        started = await chainflow(switched, "wallet", "generate")
        assert started.code == 0, started.stderr

        again = await chainflow(env, *rotate)
        assert again.code == 0, again.stderr
        assert set((await key_ids(database_url)).values()) == {new.key_id}
        assert await every_wallet_signs(database_url, new) == WALLETS + 1

    async def test_a_new_key_on_stdin_is_refused_and_nothing_changes(
        self, database_url: str
    ) -> None:
        old, new = MasterKey.generate(), MasterKey.generate()
        await make_wallets(database_url, old, 2)
        env = base_env(database_url=database_url, redis_url=REDIS_URL, master_key=key_text(old))
        refused = await chainflow(env, "keys", "rotate-master", stdin=key_text(new))
        assert "--new-key-file" in refused.error_line()
        assert set((await key_ids(database_url)).values()) == {old.key_id}


async def post_wallet(base: str, token: str) -> str:
    """Generate a wallet over the API; return its address."""
    headers = {"Authorization": f"Bearer {token}"}
    async with (
        aiohttp.ClientSession(headers=headers) as http,
        http.post(f"{base}/v1/wallets", json={"generate": True}) as response,
    ):
        assert response.status == 201, await response.text()
        address: str = (await response.json())["address"]
        return address


class TestWhileProcessesRun:
    async def test_embedded_rotation_is_refused_while_dev_runs(self, tmp_path: Path) -> None:
        data = tmp_path / "data"
        env = embedded_env(data)
        assert (await chainflow(env, "db", "upgrade")).code == 0
        token = (await chainflow(env, "apikey", "create", "--scopes", "admin")).stdout.split()[-1]
        url = embedded_settings(data).resolved_database_url
        new = MasterKey.generate()
        new_file = write_key(tmp_path / "new.key", new)
        rotate = ("keys", "rotate-master", "--new-key-file", str(new_file))
        with processes([["dev", "--port", "0"]], env, tmp_path) as (dev,):
            base = f"http://127.0.0.1:{listening_port(dev)}"
            wait_http(f"{base}/healthz", dev)
            old = load_master_key(embedded_settings(data), allow_generate=False)
            await post_wallet(base, token)
            assert "stop it before rotating" in (await chainflow(env, *rotate)).error_line()
            await post_wallet(base, token)  # still running, still on the key it holds
        assert set((await key_ids(url)).values()) == {old.key_id}

        assert (await chainflow(env, *rotate)).code == 0
        (tmp_path / "again").mkdir()
        with processes([["dev", "--port", "0"]], env, tmp_path / "again") as (dev,):
            base = f"http://127.0.0.1:{listening_port(dev)}"
            wait_http(f"{base}/healthz", dev)  # the restart is not refused
            await post_wallet(base, token)
        assert set((await key_ids(url)).values()) == {new.key_id}
        assert await every_wallet_signs(url, new) == 3

    async def test_a_process_is_refused_while_a_rotation_holds_the_data_dir(
        self, tmp_path: Path
    ) -> None:
        data = tmp_path / "data"
        env = embedded_env(data)
        assert (await chainflow(env, "db", "upgrade")).code == 0
        with hold_data_dir(embedded_settings(data), exclusive=True):
            for command in (["dev", "--port", "0"], ["wallet", "generate"]):
                refused = await chainflow(env, *command)
                assert "rotation is running" in refused.error_line()

    @pytest.mark.parametrize("dialect", ["postgresql"], indirect=True)
    async def test_distributed_rotation_is_refused_while_an_api_runs(
        self, database_url: str, tmp_path: Path
    ) -> None:
        old, new = MasterKey.generate(), MasterKey.generate()
        await make_wallets(database_url, old, 2)
        env = base_env(database_url=database_url, redis_url=REDIS_URL, master_key=key_text(old))
        rotate = ("keys", "rotate-master", "--new-key-file", str(write_key(tmp_path / "k", new)))
        with processes([["api", "--port", "0"]], env, tmp_path) as (api,):
            wait_http(f"http://127.0.0.1:{listening_port(api)}/healthz", api)
            assert "stop every one" in (await chainflow(env, *rotate)).error_line()
        assert set((await key_ids(database_url)).values()) == {old.key_id}
        assert (await chainflow(env, *rotate)).code == 0
        assert set((await key_ids(database_url)).values()) == {new.key_id}

    @pytest.mark.parametrize("dialect", ["postgresql"], indirect=True)
    async def test_processes_are_refused_while_a_distributed_rotation_runs(
        self, database_url: str
    ) -> None:
        old = MasterKey.generate()
        await make_wallets(database_url, old, 1)
        env = base_env(database_url=database_url, redis_url=REDIS_URL, master_key=key_text(old))
        engine = create_engine(database_url)
        try:
            async with hold_custody_lock(engine, exclusive=True):
                for command in (
                    ["api", "--port", "0"],
                    ["worker"],
                    ["wallet", "generate"],
                ):
                    refused = await chainflow(env, *command)
                    assert "rotation is running" in refused.error_line()
        finally:
            await engine.dispose()


class TestKeyFileNotWritable:
    async def test_a_rotation_that_cannot_store_the_new_key_changes_no_row(
        self, tmp_path: Path
    ) -> None:
        data = tmp_path / "data"
        env = embedded_env(data)
        assert (await chainflow(env, "db", "upgrade")).code == 0
        settings = embedded_settings(data)
        old = load_master_key(settings, allow_generate=True)
        await make_wallets(settings.resolved_database_url, old, 3)
        # Directories squat the names a key file is written through (the original code's
        # `master.new`, then `master.key.tmp`): the key cannot be stored.
        for name in ("master.new", "master.key.tmp", "master.key.previous.tmp"):
            (data / name).mkdir()
        new = MasterKey.generate()

        failed = await chainflow(env, "keys", "rotate-master", stdin=key_text(new))
        assert "master key file" in failed.error_line()
        assert key_text(new) not in failed.stdout + failed.stderr
        on_disk = load_master_key(settings, allow_generate=False)
        assert await every_wallet_signs(settings.resolved_database_url, on_disk) == 3
        assert set((await key_ids(settings.resolved_database_url)).values()) == {old.key_id}
