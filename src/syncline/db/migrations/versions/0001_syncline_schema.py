"""Syncline's own schema and the change outbox used by the trigger and poll capture sources.

Revision ID: 0001
Revises:
"""

from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("CREATE SCHEMA IF NOT EXISTS syncline")
    # The outbox: triggers append one row per changed row; the reader publishes and deletes them.
    # xid8 lets the reader stay below the oldest running transaction, so that a row whose
    # transaction commits after a row with a higher id is never skipped.
    op.execute(
        """
        CREATE TABLE syncline.changes (
            id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            xid xid8 NOT NULL DEFAULT pg_current_xact_id(),
            schema_name text NOT NULL,
            table_name text NOT NULL,
            op text NOT NULL CHECK (op IN ('insert', 'update', 'delete', 'truncate', 'message')),
            row jsonb,
            old jsonb,
            channel text,
            claim bigint,
            created_at timestamptz NOT NULL DEFAULT clock_timestamp()
        )
        """
    )
    op.execute("CREATE INDEX changes_claim_idx ON syncline.changes (claim) WHERE claim IS NOT NULL")


def downgrade() -> None:
    op.execute("DROP TABLE IF EXISTS syncline.changes")
