"""What each command imports: every `chainflow` process once paid ~1.2 s of CPU for the API,
the workers and eth-account's BLS code (py_ecc) before doing anything, and the end-to-end
tests start a process per CLI call. Checked by module name in a fresh interpreter, never by
time: on a loaded machine a timing is flaky, while a module is loaded or it is not."""

import json
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.support.polling import eventually_sync
from tests.support.processes import CHAINFLOW, base_env

# Runs the `chainflow` entry point in this interpreter, then names what is loaded.
_RUN_CLI = """
import sys
from chainflow.cli import main
try:
    main()
except SystemExit:
    pass
print("loaded:", " ".join(sorted({name.split(".")[0] for name in sys.modules})))
"""

# eth-account imports eth-keyfile, which imports py_ecc's BLS code: ~0.5 s on its own.
SIGNING_LIBRARY = ["eth_account", "eth_keyfile", "py_ecc"]
HTTP_SERVER = ["fastapi", "starlette", "uvicorn"]
QUEUE = ["bullmq", "redis"]
NODE_CLIENT = ["aiohttp"]
KEY_BACKENDS = ["PyKCS11", "boto3"]
DATABASE = ["sqlalchemy", "alembic", "pydantic_settings"]


def _env(data_dir: Path) -> dict[str, str]:
    return base_env(data_dir=str(data_dir), log_format="json")


@pytest.fixture(scope="module")
def migrated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data folder with a migrated embedded database, shared by the commands run here."""
    data_dir = tmp_path_factory.mktemp("migrated")
    subprocess.run(
        [CHAINFLOW, "db", "upgrade"],
        env=_env(data_dir),
        capture_output=True,
        timeout=120,
        check=True,
    )
    return data_dir


def _loaded_by(args: list[str], data_dir: Path) -> set[str]:
    """Run `chainflow *args` to its end in a fresh interpreter; the top-level modules loaded."""
    result = subprocess.run(
        [sys.executable, "-c", _RUN_CLI, *args],
        env=_env(data_dir),
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    # Nothing on stderr: a library imported late, once logging is configured, can log there
    # what it logged unseen at start-up before (alembic's "setup plugin" lines).
    assert result.stderr == ""
    return _parse(result.stdout)


def _loaded_by_service(
    args: list[str], data_dir: Path, *, ready: Callable[[str], bool]
) -> set[str]:
    """Start a service command, stop it (SIGTERM) once `ready(its log)`, and name what it
    loaded in between: its start-up and first rounds, not only its module imports."""
    log = data_dir / "service.log"
    with log.open("w") as stderr:
        process = subprocess.Popen(
            [sys.executable, "-c", _RUN_CLI, *args],
            env=_env(data_dir),
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
        )
        try:

            def started() -> bool:
                assert process.poll() is None, log.read_text()
                return ready(log.read_text())

            eventually_sync(
                started, timeout_s=60, what=lambda: f"the service ready; its log: {log.read_text()}"
            )
            process.send_signal(signal.SIGTERM)
            stdout, _ = process.communicate(timeout=60)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
    assert process.returncode == 0, log.read_text()
    return _parse(stdout)


def _parse(stdout: str) -> set[str]:
    line = stdout.splitlines()[-1]
    assert line.startswith("loaded: "), stdout
    return set(line.removeprefix("loaded: ").split())


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2):  # noqa: S310 - loopback test URL
            return True
    except (urllib.error.URLError, ConnectionError):
        return False


class TestLightCommands:
    @pytest.mark.parametrize("args", [["--help"], ["apikey", "--help"], ["worker", "--help"]])
    def test_help_loads_no_database_server_queue_or_signing(
        self, args: list[str], tmp_path: Path
    ) -> None:
        heavy = SIGNING_LIBRARY + HTTP_SERVER + QUEUE + NODE_CLIENT + KEY_BACKENDS + DATABASE
        assert _loaded_by(args, tmp_path) & set(heavy) == set()

    @pytest.mark.parametrize(
        ("args", "heavy"),
        [
            (
                ["apikey", "list"],
                SIGNING_LIBRARY + HTTP_SERVER + QUEUE + NODE_CLIENT + KEY_BACKENDS,
            ),
            (["wallet", "list"], SIGNING_LIBRARY + HTTP_SERVER + QUEUE + NODE_CLIENT),
        ],
        ids=["apikey-list", "wallet-list"],
    )
    def test_a_database_command_loads_no_server_queue_or_node_client(
        self, args: list[str], heavy: list[str], migrated: Path
    ) -> None:
        loaded = _loaded_by(args, migrated)

        assert "sqlalchemy" in loaded  # it did run: it read the database
        assert loaded & set(heavy) == set()


class TestServices:
    def test_a_worker_loads_no_http_server(self, migrated: Path) -> None:
        loaded = _loaded_by_service(
            ["worker", "--metrics-port", "0"],
            migrated,
            ready=lambda log: "worker.started" in log,
        )

        assert "aiohttp" in loaded  # it did start: its engine holds the node clients
        assert loaded & set(HTTP_SERVER) == set()
        # It signs: its engine loads eth-account's serializers when it opens, not in a drain.
        assert "eth_account" in loaded

    def test_the_api_loads_no_eth_account(self, migrated: Path) -> None:
        def ready(log: str) -> bool:
            # --port 0: the port its own bind picked, from its api.listening line (JSON; only
            # whole lines: the last one may still be being written).
            whole = [line for line in log.split("\n")[:-1] if line.startswith("{")]
            events = [json.loads(line) for line in whole]
            ports = [e["port"] for e in events if e.get("event") == "api.listening"]
            return bool(ports) and _answers(f"http://127.0.0.1:{ports[0]}/healthz")

        loaded = _loaded_by_service(["api", "--port", "0"], migrated, ready=ready)

        assert "uvicorn" in loaded
        assert loaded & set(SIGNING_LIBRARY) == set()
