"""`chainflow wallet generate|import --signer pkcs11|aws_kms` as users run it, on a real SoftHSM2
token and LocalStack's KMS."""

import re

from tests.e2e.test_cli import Cli, cli, one_error_line
from tests.support.localstack import AWS_ENV, LocalStack
from tests.support.processes import refusing_port
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


def test_generate_in_kms_then_bind_by_alias(cli: Cli, localstack: LocalStack) -> None:
    env = localstack.env()
    assert cli("db", "upgrade").returncode == 0
    generated = cli("wallet", "generate", "--signer", "aws_kms", "--label", "kms", env=env)
    assert generated.returncode == 0, generated.stderr
    assert WALLET_LINE.search(generated.stdout), generated.stdout
    client = localstack.client()
    key = client.create_key(KeySpec="ECC_SECG_P256K1", KeyUsage="SIGN_VERIFY")["KeyMetadata"]
    client.create_alias(AliasName="alias/cli-hot", TargetKeyId=key["KeyId"])
    bound = cli("wallet", "import", "--signer", "aws_kms", "--key-id", "alias/cli-hot", env=env)
    assert bound.returncode == 0, bound.stderr
    missing = cli("wallet", "import", "--signer", "aws_kms", "--key-id", "alias/absent", env=env)
    assert "KMS has no such key" in one_error_line(missing)
    down = {**env, "CHAINFLOW_AWS_KMS_ENDPOINT_URL": f"http://127.0.0.1:{refusing_port()}"}
    assert "cannot be reached" in one_error_line(
        cli("wallet", "generate", "--signer", "aws_kms", env=down)
    )
    listed = cli("wallet", "list")
    assert len(listed.stdout.splitlines()) == 2
    assert AWS_ENV["AWS_SECRET_ACCESS_KEY"] not in "".join(cli.output)
