"""The `chainflow` command as users run it: real processes, embedded SQLite, exit codes, stdin."""

import base64
import os
import re
import signal
import sqlite3
import stat
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from chainflow.infra.anvil import DEV_PRIVATE_KEY_HEX
from tests.support.databases import REDIS_URL
from tests.support.polling import eventually_sync
from tests.support.processes import listening_port, processes, wait_http

CHAINFLOW = str(Path(sys.executable).parent / "chainflow")
REPO = Path(__file__).resolve().parents[2]
# A DCA demo run that swapped: "dca run 2 at …: succeeded: 10.0000 A for 19.9340 B at …"
SUCCEEDED = re.compile(r"dca run \d+ at \S+: succeeded: ([0-9.]+) A for ([0-9.]+) B at")
KEY_HEX = "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d"


class Cli:
    """Runs `chainflow` with a private data dir and collects every line it printed."""

    def __init__(self, data_dir: Path) -> None:
        self.env = {
            key: value for key, value in os.environ.items() if not key.startswith("CHAINFLOW_")
        }
        self.env |= {"CHAINFLOW_DATA_DIR": str(data_dir), "CHAINFLOW_LOG_FORMAT": "json"}
        if "CHAINFLOW_ANVIL_BIN" in os.environ:
            self.env["CHAINFLOW_ANVIL_BIN"] = os.environ["CHAINFLOW_ANVIL_BIN"]
        self.output: list[str] = []

    def __call__(
        self, *args: str, stdin: str = "", env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [CHAINFLOW, *args],
            input=stdin,
            capture_output=True,
            text=True,
            timeout=60,
            env=self.env | (env or {}),
            check=False,
        )
        self.output += [result.stdout, result.stderr]
        return result


def one_error_line(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 1, (result.stdout, result.stderr)
    lines = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    return lines[0]


@pytest.fixture
def cli(tmp_path: Path) -> Cli:
    return Cli(tmp_path / "data")


class TestConfiguration:
    def test_invalid_setting_is_one_line_naming_it(self, cli: Cli) -> None:
        line = one_error_line(cli("db", "upgrade", env={"CHAINFLOW_API_PORT": "eighty"}))
        assert "CHAINFLOW_API_PORT" in line

    def test_invalid_master_key_is_refused_without_echo(self, cli: Cli) -> None:
        line = one_error_line(cli("wallet", "generate", env={"CHAINFLOW_MASTER_KEY": "c2hvcnQ="}))
        assert "CHAINFLOW_MASTER_KEY" in line or "master key" in line.lower()
        assert "c2hvcnQ=" not in line

    def test_distributed_mode_needs_a_master_key(self, cli: Cli) -> None:
        result = cli("api", env={"CHAINFLOW_REDIS_URL": REDIS_URL})
        assert "CHAINFLOW_MASTER_KEY" in one_error_line(result)

    def test_unmigrated_database_is_one_line(self, cli: Cli) -> None:
        assert "chainflow db upgrade" in one_error_line(cli("wallet", "list"))


class TestEmbeddedWorkflow:
    def test_upgrade_keys_wallets_and_rotation(self, cli: Cli, tmp_path: Path) -> None:
        upgraded = cli("db", "upgrade")
        assert upgraded.returncode == 0, upgraded.stderr
        assert "9 chain(s) seeded" in upgraded.stdout
        assert cli("db", "upgrade").returncode == 0  # safe to run twice

        created = cli("apikey", "create", "--scopes", "admin", "--scopes", "read")
        assert created.stdout.splitlines()[-1].startswith("cf_")
        assert "unknown scope 'root'" in one_error_line(cli("apikey", "create", "--scopes", "root"))

        imported = cli("wallet", "import", "--chain-id", "31337", stdin=KEY_HEX + "\n")
        assert "0x70997970C51812dc3A010C7d01b50e0d17dc79C8" in imported.stdout, imported.stderr
        assert "already imported" in one_error_line(cli("wallet", "import", stdin=KEY_HEX))
        bad = tmp_path / "bad.key"
        bad.write_text("0x1234")
        assert "short" in one_error_line(cli("wallet", "import", "--file", str(bad)))
        assert cli("wallet", "generate", "--label", "gen").returncode == 0

        key_file = tmp_path / "data" / "master.key"
        assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
        new_key = tmp_path / "new.key"
        new_key.write_text(base64.b64encode(os.urandom(32)).decode())
        rotated = cli("keys", "rotate-master", "--new-key-file", str(new_key))
        assert "re-wrapped 2 wallet key(s)" in rotated.stdout, rotated.stderr
        again = cli("keys", "rotate-master", "--new-key-file", str(new_key))
        assert "re-wrapped 0 wallet key(s)" in again.stdout, again.stderr
        listed = cli("wallet", "list")
        assert len(listed.stdout.splitlines()) == 2
        assert "chains=31337" in listed.stdout

        wrong = base64.b64encode(os.urandom(32)).decode()
        refused = cli("wallet", "generate", env={"CHAINFLOW_MASTER_KEY": wrong})
        assert "did not wrap the stored wallet keys" in one_error_line(refused)
        assert wrong not in "".join(cli.output)
        assert KEY_HEX[2:] not in "".join(cli.output)
        assert new_key.read_text() not in "".join(cli.output)

    def test_wallet_list_shows_a_stored_control_character_escaped(
        self, cli: Cli, tmp_path: Path
    ) -> None:
        # A label stored before the API refused control characters: before, `wallet list`
        # printed it raw, and its "\r" overwrote the line with a forged one.
        assert cli("db", "upgrade").returncode == 0
        assert cli("wallet", "generate", "--label", "plain").returncode == 0
        forged = "x\x1b]0;title\x07\r00000000-0000-0000-0000-000000000000  0xforged"
        with sqlite3.connect(tmp_path / "data" / "chainflow.db") as db:
            db.execute("UPDATE wallets SET label = ?", (forged,))
        listed = cli("wallet", "list")
        assert listed.returncode == 0, listed.stderr
        assert "\r" not in listed.stdout
        assert "\x1b" not in listed.stdout
        assert len(listed.stdout.splitlines()) == 1
        assert listed.stdout.rstrip().endswith(
            "x\\x1b]0;title\\x07\\r00000000-0000-0000-0000-000000000000  0xforged"
        )

    def test_private_key_is_never_a_command_line_argument(self, cli: Cli) -> None:
        result = cli("wallet", "import", KEY_HEX)
        assert result.returncode == 2  # usage error from the parser: no such argument
        assert KEY_HEX[2:] not in result.stdout


KEY_SHAPED = re.compile(r"[0-9a-fA-F]{64}")


class TestNoKeyEcho:
    """A key typed where it does not belong is refused in one line that never repeats it."""

    @pytest.mark.parametrize(
        "args",
        [
            ["wallet", "import", KEY_HEX],
            ["wallet", "import", KEY_HEX[2:].upper()],
            ["wallet", "import", "--chain-id", KEY_HEX],
            ["wallet", "import", "--file", f"/nonexistent/{KEY_HEX}"],
            ["wallet", "generate", "--label", f"my key {KEY_HEX}"],
            ["wallet", KEY_HEX],
            ["apikey", "create", "--scopes", KEY_HEX],
            [KEY_HEX],
        ],
        ids=["argument", "bare-upper", "option", "file-path", "label", "command", "scope", "top"],
    )
    def test_refusal_is_one_line_without_the_key(self, cli: Cli, args: list[str]) -> None:
        assert cli("db", "upgrade").returncode == 0
        result = cli(*args)
        assert result.returncode in (1, 2), (result.stdout, result.stderr)
        errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
        assert len(errors) == 1, result.stderr
        assert "Traceback" not in result.stderr
        assert not KEY_SHAPED.search(result.stdout + result.stderr), result.stderr


class TestDev:
    def test_dev_serves_healthz_with_a_funded_dev_wallet(self, cli: Cli) -> None:
        from tests.e2e.devserver import run_dev_and_probe

        report = run_dev_and_probe(cli.env, CHAINFLOW)
        assert report.healthz == {"status": "ok"}
        assert report.dev_wallet_chain_ids == [31337]
        assert report.dev_wallet_balance_wei > 0
        assert report.exit_code == 0
        assert DEV_PRIVATE_KEY_HEX not in report.output

    def test_the_demo_waits_out_an_overloaded_api(self, cli: Cli, tmp_path: Path) -> None:
        """`./scripts/dev` (the README's first command) on an API admitting two requests at a
        time: its 32 concurrent submitters meet 503s, wait them out and every request is
        confirmed once (it used to abort on the first 503)."""
        env = cli.env | {"CHAINFLOW_API_MAX_IN_FLIGHT": "2"}
        code, output = run_dev_until(
            ["--demo", "60"], env, tmp_path, lambda text: "60 requests" in text, timeout_s=240
        )
        assert "60 requests: confirmed 60" in output, output[-2000:]
        assert code == 0, output[-2000:]


def run_dev_until(
    extra: list[str],
    env: dict[str, str],
    tmp_path: Path,
    done: Callable[[str], bool],
    *,
    timeout_s: float,
) -> tuple[int, str]:
    """`chainflow dev --anvil` (API and anvil on port 0) with `extra` until its output is
    `done` (or it exits), then SIGTERM; its exit code and output."""
    args = ["dev", "--anvil", "--port", "0", "--anvil-port", "0", *extra]
    log = tmp_path / "dev.log"
    with log.open("w") as out:
        process = subprocess.Popen(
            [CHAINFLOW, *args], env=env, stdout=out, stderr=subprocess.STDOUT
        )
        try:
            eventually_sync(
                lambda: done(log.read_text()) or process.poll() is not None,
                timeout_s=timeout_s,
                interval_s=0.2,
                what=lambda: f"chainflow dev done; its output ends {log.read_text()[-3000:]}",
            )
        finally:
            process.send_signal(signal.SIGTERM)
            code = process.wait(timeout=30)
    return code, log.read_text()


class TestDcaDemo:
    """`chainflow dev --anvil --demo-dca` (issue 19): Uniswap V2 from the npm build files on the
    dev anvil, a DCA schedule every few seconds, its runs and average price printed."""

    def test_it_reports_successful_runs_with_the_average_price(
        self, cli: Cli, tmp_path: Path
    ) -> None:
        # Reads at 2/s: the demo's polling (~4 GETs a second) meets 429s and waits them out.
        env = cli.env | {
            "CHAINFLOW_CACHE_DIR": str(REPO / ".cache"),
            "CHAINFLOW_RATE_LIMIT_READ_PER_S": "2",
        }
        code, output = run_dev_until(
            ["--demo-dca"],
            env,
            tmp_path,
            lambda text: len(SUCCEEDED.findall(text)) >= 2,
            timeout_s=180,
        )
        assert len(SUCCEEDED.findall(output)) >= 2, output[-3000:]
        first, second = SUCCEEDED.findall(output)[:2]
        assert first[0] == "10.0000"  # A paid per run
        assert float(second[1]) < float(first[1])  # each swap moved the price
        assert "demo failed" not in output, output[-3000:]
        assert code == 0, output[-3000:]

    def test_missing_build_files_are_one_line_naming_the_install_command(
        self, cli: Cli, tmp_path: Path
    ) -> None:
        empty = tmp_path / "empty-cache"
        empty.mkdir()
        port = ["--port", "0", "--anvil-port", "0"]
        result = cli("dev", "--anvil", "--demo-dca", *port, env={"CHAINFLOW_CACHE_DIR": str(empty)})
        line = one_error_line(result)
        assert "Uniswap V2 build files" in line
        assert "./scripts/bootstrap" in line
        assert not (tmp_path / "data" / "anvil-state.json").exists()  # nothing was started

    def test_it_needs_anvil(self, cli: Cli) -> None:
        line = one_error_line(cli("dev", "--demo-dca", "--port", "0"))
        assert "--demo-dca needs --anvil" in line


class TestWrongMasterKey:
    @pytest.mark.parametrize("command", [["dev"], ["api"], ["worker"]])
    def test_a_service_refuses_in_one_line_without_the_key(
        self, cli: Cli, command: list[str]
    ) -> None:
        assert cli("db", "upgrade").returncode == 0
        assert cli("wallet", "generate").returncode == 0
        wrong = base64.b64encode(os.urandom(32)).decode()
        port = ["--port", "0"] if command[0] != "worker" else []
        result = cli(*command, *port, env={"CHAINFLOW_MASTER_KEY": wrong})
        assert "did not wrap the stored wallet keys" in one_error_line(result)
        assert wrong not in result.stdout + result.stderr

    def test_a_damaged_key_file_is_named_in_one_line(self, cli: Cli, tmp_path: Path) -> None:
        assert cli("db", "upgrade").returncode == 0
        (tmp_path / "data" / "master.key").write_text("not a key\n")
        line = one_error_line(cli("dev", "--port", "0"))
        assert "master key file" in line
        assert "not a key" not in line


def mode_of(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


class TestDataDirPermissions:
    def test_a_new_data_dir_and_its_files_are_private(self, cli: Cli, tmp_path: Path) -> None:
        data = tmp_path / "data"
        assert cli("db", "upgrade").returncode == 0
        assert cli("wallet", "generate").returncode == 0
        assert mode_of(data) == 0o700
        files = {path.name: mode_of(path) for path in data.iterdir()}
        assert {"chainflow.db", "master.key", "chainflow.lock"} <= set(files)
        assert set(files.values()) == {0o600}, files

    def test_the_files_of_a_running_dev_are_private(self, cli: Cli, tmp_path: Path) -> None:
        data = tmp_path / "data"
        with processes([["dev", "--port", "0"]], cli.env, tmp_path) as (dev,):
            port = listening_port(dev)
            wait_http(f"http://127.0.0.1:{port}/healthz", dev)
            files = {path.name: mode_of(path) for path in data.iterdir()}
        assert {"chainflow.db", "chainflow.db-wal", "chainflow.db-shm", "master.key"} <= set(files)
        assert set(files.values()) == {0o600}, files
        assert mode_of(data) == 0o700

    def test_a_looser_existing_data_dir_is_tightened_with_a_warning(
        self, cli: Cli, tmp_path: Path
    ) -> None:
        data = tmp_path / "data"
        assert cli("db", "upgrade").returncode == 0
        assert cli("wallet", "generate").returncode == 0
        data.chmod(0o755)
        for path in data.iterdir():
            path.chmod(0o644)
        listed = cli("wallet", "list")
        assert listed.returncode == 0, listed.stderr
        assert "data_dir.permissions_tightened" in listed.stderr
        assert mode_of(data) == 0o700
        assert {mode_of(path) for path in data.iterdir()} == {0o600}
