"""Sync rules added at runtime: kept in the database, so every node has them, and captured,
so a running Syncline applies each one at the commit that added it.

Revision ID: 0006
Revises: 0005
"""

from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # `syncline sync add` inserts a rule (a [[rules]] table as JSON) in the transaction that
    # sets its table up for capture; capture reads the insert in commit order and routes every
    # later commit by it, then records where (applied_position, a publication's "lsn").
    op.execute(
        """
        CREATE TABLE syncline.sync_rules (
            id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            body jsonb NOT NULL CHECK (jsonb_typeof(body) = 'object'),
            added_at timestamptz NOT NULL DEFAULT now(),
            applied_position text
        )
        """
    )


def downgrade() -> None:
    op.execute("DROP TABLE IF EXISTS syncline.sync_rules")
