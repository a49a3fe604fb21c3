"""Programmatic Alembic: upgrade, downgrade and compare the head with the models."""

import logging
from pathlib import Path
from typing import Any

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Connection

from chainflow.domain.models import metadata

_HERE = Path(__file__).parent


def alembic_config(database_url: str) -> Config:
    """An Alembic config pointing at the packaged migrations."""
    config = Config()
    config.set_main_option("script_location", str(_HERE))
    config.set_main_option("sqlalchemy.url", database_url.replace("%", "%%"))
    return config


def upgrade(database_url: str, revision: str = "head") -> None:
    """Migrate the database up to `revision`."""
    command.upgrade(alembic_config(database_url), revision)


def downgrade(database_url: str, revision: str) -> None:
    """Migrate the database down to `revision`."""
    command.downgrade(alembic_config(database_url), revision)


def diff_against_models(connection: Connection) -> list[Any]:
    """Differences between the migrated schema and the models; empty when they match."""
    context = MigrationContext.configure(connection, opts={"compare_type": True})
    return list(compare_metadata(context, metadata))


def head_revision() -> str | None:
    """The newest revision shipped with this version of Chainflow."""
    return ScriptDirectory.from_config(alembic_config("sqlite://")).get_current_head()


def current_revision(connection: Connection) -> str | None:
    """The revision the database is at (None if never migrated)."""
    # Quietly: every CLI command asks this first, and Alembic's "Context impl SQLiteImpl."
    # lines at info level would precede a command's own output or its one error line.
    migration_log = logging.getLogger("alembic.runtime.migration")
    level = migration_log.level
    migration_log.setLevel(logging.WARNING)
    try:
        return MigrationContext.configure(connection).get_current_revision()
    finally:
        migration_log.setLevel(level)
