"""tx_events and tx_attempts: no foreign key to transactions; refused attempts indexed
(issue 17)

Each row inserted into either table ran PostgreSQL's foreign-key check: a query of
`transactions` by id that locks the request row FOR KEY SHARE, ~6 per confirmed transaction,
most of them writing a heap LOCK record because the row was just updated by the same
transaction. Every such row is written in the DB transaction that inserts or updates its
request (the API's admission, the workers' status changes under the row's lock), and no
request is ever deleted, so the check could only catch what those writers already exclude.

ix_tx_attempts_refused (tx_id, only where a node refused the attempt for lack of funds): each
round asks of every lane with queued requests whether one of its signed requests has such an
attempt, a probe of ix_tx_attempts_tx_id and a heap read per signed request; the partial
index holds only the attempts a node refused for lack of funds (it keeps those of requests
since ended: the query also asks for `signed`).

docs/performance.md item 45 has the measurements.

Revision ID: 0014_log_lean
Revises: 0013_events_lean
Create Date: 2026-12-07 09:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0014_log_lean"
down_revision: str | None = "0013_events_lean"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_TABLES = ("tx_events", "tx_attempts")
_REFUSED = sa.text("last_error = 'insufficient_funds'")


def upgrade() -> None:
    # PostgreSQL: the index first, while only writes of tx_attempts wait for its build; each
    # foreign key's drop then locks `transactions` (ACCESS EXCLUSIVE) from there to the
    # migration's commit, not during the build. SQLite rebuilds both tables to drop the keys, so
    # there the index comes after the rebuild.
    postgres = op.get_bind().dialect.name == "postgresql"
    if postgres:
        _create_refused()
    for table in _TABLES:
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.drop_constraint(f"fk_{table}_tx_id_transactions", type_="foreignkey")
    if not postgres:
        _create_refused()


def _create_refused() -> None:
    op.create_index(
        "ix_tx_attempts_refused",
        "tx_attempts",
        ["tx_id"],
        postgresql_where=_REFUSED,
        sqlite_where=_REFUSED,
    )


def downgrade() -> None:
    """Restores the keys; refused (the database's integrity error) if a row of either table
    has no request, which `tests/support/invariants.py` reports as an orphan."""
    op.drop_index("ix_tx_attempts_refused", table_name="tx_attempts")
    for table in _TABLES:
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.create_foreign_key(
                f"fk_{table}_tx_id_transactions",
                "transactions",
                ["tx_id"],
                ["id"],
                ondelete="CASCADE",
            )
