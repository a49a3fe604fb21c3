"""`chainflow wallet generate|import --signer pkcs11` as users run it, on a real SoftHSM2 token."""

import re

from tests.e2e.test_cli import Cli, cli, one_error_line
from tests.support.softhsm import PIN, SoftHsm

__all__ = ["cli"]  # the fixture, shared with test_cli.py

WALLET_LINE = re.compile(r"^wallet [0-9a-f-]{36} (0x[0-9a-fA-F]{40})$", re.MULTILINE)


def test_generate_in_the_token_then_bind_by_label(cli: Cli, softhsm: SoftHsm) -> None:
    env = softhsm.env()
    assert cli("db", "upgrade").returncode == 0
    generated = cli("wallet", "generate", "--signer", "pkcs11", "--label", "hsm", env=env)
    assert generated.returncode == 0, generated.stderr
    assert WALLET_LINE.search(generated.stdout), generated.stdout
    missing = cli("wallet", "import", "--signer", "pkcs11", "--key-label", "absent", env=env)
    assert "no key labelled 'absent'" in one_error_line(missing)
    no_label = cli("wallet", "import", "--signer", "pkcs11", env=env)
    assert "--key-label" in one_error_line(no_label)
    unconfigured = cli("wallet", "generate", "--signer", "pkcs11")
    assert "CHAINFLOW_PKCS11_MODULE" in one_error_line(unconfigured)
    listed = cli("wallet", "list")
    assert len(listed.stdout.splitlines()) == 1
    assert PIN not in "".join(cli.output)
