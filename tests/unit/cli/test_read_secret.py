"""A secret read from stdin when nothing comes: the error names the option of the command
that was run (audit: `keys rotate-master` told the operator to pass --file, which it lacks)."""

import io
import sys
from pathlib import Path

import pytest

from chainflow.cli.rotation import read_new_key
from chainflow.cli.secrets import read_secret
from chainflow.core.errors import InvalidInput
from chainflow.core.settings import Settings


@pytest.fixture
def empty_stdin(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b"")))


@pytest.mark.usefixtures("empty_stdin")
def test_rotate_master_names_new_key_file(tmp_path: Path) -> None:
    settings = Settings(database_url=f"sqlite:///{tmp_path}/c.db", data_dir=tmp_path)
    assert settings.master_key is None  # a key file in the data folder: stdin is allowed
    with pytest.raises(InvalidInput) as caught:
        read_new_key(settings, None)
    assert "--new-key-file PATH" in str(caught.value)
    assert "--file PATH" not in str(caught.value).replace("--new-key-file", "")


@pytest.mark.usefixtures("empty_stdin")
def test_wallet_import_names_file() -> None:
    with pytest.raises(InvalidInput, match="pass --file PATH or pipe it on stdin"):
        read_secret(None, what="private key")
