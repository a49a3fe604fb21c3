"""The data folder: durable key files, private modes, and the lock of its users."""

import stat
from pathlib import Path

import pytest

from chainflow.core.errors import ConfigError
from chainflow.core.settings import Settings
from chainflow.infra.datadir import create_durably, hold_data_dir, secure_data_dir, write_durably


def settings_for(folder: Path) -> Settings:
    return Settings(data_dir=folder, master_key=None, database_url=None, redis_url=None)


def mode_of(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


class TestDurableFiles:
    def test_write_replaces_the_file_whole_and_private(self, tmp_path: Path) -> None:
        path = tmp_path / "master.key"
        path.write_text("old\n")
        write_durably(path, "new\n")
        assert path.read_text() == "new\n"
        assert mode_of(path) == 0o600
        assert sorted(p.name for p in tmp_path.iterdir()) == ["master.key"]

    def test_create_keeps_the_first_file(self, tmp_path: Path) -> None:
        path = tmp_path / "master.key"
        assert create_durably(path, "first\n")
        assert not create_durably(path, "second\n")
        assert path.read_text() == "first\n"
        assert sorted(p.name for p in tmp_path.iterdir()) == ["master.key"]


class TestSecureDataDir:
    def test_a_new_folder_is_0700_with_a_0600_database(self, tmp_path: Path) -> None:
        folder = tmp_path / "data"
        secure_data_dir(settings_for(folder))
        assert mode_of(folder) == 0o700
        assert mode_of(folder / "chainflow.db") == 0o600

    def test_looser_modes_are_tightened(self, tmp_path: Path) -> None:
        folder = tmp_path / "data"
        folder.mkdir(mode=0o755)
        folder.chmod(0o755)
        for name in ("chainflow.db", "chainflow.db-wal", "master.key"):
            (folder / name).write_text("")
            (folder / name).chmod(0o644)
        secure_data_dir(settings_for(folder))
        assert mode_of(folder) == 0o700
        assert {mode_of(path) for path in folder.iterdir()} == {0o600}


class TestLock:
    def test_users_share_it_and_a_rotation_is_refused_meanwhile(self, tmp_path: Path) -> None:
        settings = settings_for(tmp_path / "data")
        with (
            hold_data_dir(settings, exclusive=False),
            hold_data_dir(settings, exclusive=False),
            pytest.raises(ConfigError, match="stop it before rotating"),
            hold_data_dir(settings, exclusive=True),
        ):
            pass
        with (
            hold_data_dir(settings, exclusive=True),
            pytest.raises(ConfigError, match="rotation is running"),
            hold_data_dir(settings, exclusive=False),
        ):
            pass
