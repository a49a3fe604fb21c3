"""`chainflow apikey create|list|revoke` as users run them, and a revocation seen by a running
`chainflow api` process at its next request (CHAINFLOW_API_KEY_CACHE_S=0). Real processes."""

import hashlib
import json
import sqlite3
import urllib.error
import urllib.request
import uuid
from pathlib import Path

from tests.e2e.test_cli import Cli, one_error_line
from tests.support.processes import base_env, listening_port, processes, wait_http


def _status(url: str, token: str) -> int:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})  # noqa: S310
    try:
        with urllib.request.urlopen(request, timeout=5) as response:  # noqa: S310 - loopback
            json.loads(response.read())
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)


def _create(cli: Cli, *args: str) -> tuple[str, str]:
    """(id, token) of a new key: the token alone on the last line, the id on the first."""
    created = cli("apikey", "create", *args)
    assert created.returncode == 0, created.stderr
    lines = created.stdout.splitlines()
    return lines[0].split()[3], lines[-1]


class TestListAndRevoke:
    def test_list_shows_keys_without_secrets_and_revoke_is_idempotent(self, tmp_path: Path) -> None:
        cli = Cli(tmp_path / "data")
        assert cli("db", "upgrade").returncode == 0
        ci_id, ci_token = _create(cli, "--scopes", "read", "--name", "ci runner")
        admin_id, admin_token = _create(cli, "--scopes", "admin", "--scopes", "read")

        listed = cli("apikey", "list")
        assert listed.returncode == 0, listed.stderr
        ci_line, admin_line = listed.stdout.splitlines()
        assert ci_line.startswith(ci_id)
        assert ci_line.endswith("active  ci runner")
        assert admin_line.startswith(admin_id)
        assert " admin,read " in admin_line
        for token in (ci_token, admin_token):
            secret = token.split("_", 2)[2]
            assert secret not in listed.stdout
            assert hashlib.sha256(secret.encode()).hexdigest() not in listed.stdout
            assert token.startswith("cf_")
            assert f"{token.split('_')[1]}_…" in listed.stdout

        revoked = cli("apikey", "revoke", ci_id)
        assert revoked.returncode == 0, revoked.stderr
        assert revoked.stdout.startswith(f"revoked API key {ci_id}")
        again = cli("apikey", "revoke", ci_id)
        assert again.returncode == 0, again.stderr
        assert "already revoked" in again.stdout
        assert "revoked=" in cli("apikey", "list").stdout.splitlines()[0]

        missing = "00000000-0000-0000-0000-000000000001"
        assert missing in one_error_line(cli("apikey", "revoke", missing))
        assert "does not exist" in one_error_line(cli("apikey", "revoke", missing))
        assert admin_token not in one_error_line(cli("apikey", "revoke", admin_token))


class TestRevocationOnARunningApi:
    def test_the_next_request_after_revoke_is_401(self, tmp_path: Path) -> None:
        cli = Cli(tmp_path / "data")
        assert cli("db", "upgrade").returncode == 0
        key_id, token = _create(cli, "--scopes", "read")
        env = base_env(data_dir=str(tmp_path / "data"), api_key_cache_s="0")
        with processes([["api", "--port", "0"]], env, tmp_path) as (api,):
            base = f"http://127.0.0.1:{listening_port(api)}"
            wait_http(f"{base}/healthz", api)
            assert _status(f"{base}/v1/chains", token) == 200
            assert cli("apikey", "revoke", key_id).returncode == 0
            assert _status(f"{base}/v1/chains", token) == 401


def _audit_rows(data_dir: Path) -> list[tuple[str, str | None, str, str]]:
    with sqlite3.connect(data_dir / "chainflow.db") as db:
        query = "SELECT action, key_id, actor, resource_id FROM audit_log ORDER BY at"
        return [tuple(row) for row in db.execute(query)]


class TestRestrictedKeys:
    def test_limits_are_stored_listed_and_audited(self, tmp_path: Path) -> None:
        cli = Cli(tmp_path / "data")
        assert cli("db", "upgrade").returncode == 0
        generated = cli("wallet", "generate")
        assert generated.returncode == 0, generated.stderr
        wallet_id = generated.stdout.split()[1]
        key_id, _ = _create(
            cli,
            *("--scopes", "transactions:write", "--wallet", wallet_id),
            *("--expires-in", "30d", "--rate", "5/s"),
        )
        line = cli("apikey", "list").stdout.splitlines()[0]
        assert f"wallets={wallet_id}" in line
        assert "expires=" in line
        assert "rate=5/s" in line
        assert cli("apikey", "revoke", key_id).returncode == 0
        assert _audit_rows(tmp_path / "data") == [
            ("wallet.generated", None, "cli", wallet_id),
            ("api_key.created", None, "cli", key_id),
            ("api_key.revoked", None, "cli", key_id),
        ]

    def test_bad_limits_create_nothing(self, tmp_path: Path) -> None:
        cli = Cli(tmp_path / "data")
        assert cli("db", "upgrade").returncode == 0
        # Each rule of cli/options.py is unit-sized; one bad duration and one bad rate here
        # (a CLI start costs seconds on a loaded machine).
        for args in (("--expires-in", "4000d"), ("--rate", "0/s")):
            result = cli("apikey", "create", "--scopes", "read", *args)
            assert result.returncode == 2, (args, result.stderr)  # a usage error
        unknown = cli("apikey", "create", "--scopes", "read", "--wallet", str(uuid.uuid4()))
        assert "does not exist" in one_error_line(unknown)
        assert cli("apikey", "list").stdout == ""
        assert _audit_rows(tmp_path / "data") == []
