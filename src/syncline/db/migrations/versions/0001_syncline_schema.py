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
    # The outbox: triggers append one row per changed row; the reader claims, publishes and
    # deletes them. xid lets the reader stay below the oldest running transaction, so that a
    # row whose transaction commits after a row with a higher id is never skipped. A claim
    # (batch number, index in batch) is the row's durable position in publication order: after
    # a crash, claimed rows are published again with the same position and the channel log
    # recognizes the ones it already has.
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
            created_at timestamptz NOT NULL DEFAULT clock_timestamp(),
            claim bigint,
            claim_seq integer
        )
        """
    )
    op.execute("CREATE INDEX changes_unclaimed_idx ON syncline.changes (id) WHERE claim IS NULL")
    op.execute("CREATE INDEX changes_claim_idx ON syncline.changes (claim) WHERE claim IS NOT NULL")
    op.execute("CREATE SEQUENCE syncline.changes_claim_batch")
    # NOTIFY carries no row: payloads are capped at 8,000 bytes and lost while nobody listens.
    # It is only a wake-up; the outbox is the truth. Identical notifications in one transaction
    # are folded into one by PostgreSQL, so a bulk write costs one wake-up.
    op.execute(
        """
        CREATE FUNCTION syncline.capture_row() RETURNS trigger
        LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
        BEGIN
            IF TG_OP = 'INSERT' THEN
                INSERT INTO syncline.changes (schema_name, table_name, op, row)
                VALUES (TG_TABLE_SCHEMA, TG_TABLE_NAME, 'insert', to_jsonb(NEW));
            ELSIF TG_OP = 'UPDATE' THEN
                INSERT INTO syncline.changes (schema_name, table_name, op, row, old)
                VALUES (TG_TABLE_SCHEMA, TG_TABLE_NAME, 'update', to_jsonb(NEW), to_jsonb(OLD));
            ELSE
                INSERT INTO syncline.changes (schema_name, table_name, op, old)
                VALUES (TG_TABLE_SCHEMA, TG_TABLE_NAME, 'delete', to_jsonb(OLD));
            END IF;
            PERFORM pg_notify('syncline_changes', '');
            RETURN NULL;
        END
        $$
        """
    )
    op.execute(
        """
        CREATE FUNCTION syncline.capture_truncate() RETURNS trigger
        LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
        BEGIN
            INSERT INTO syncline.changes (schema_name, table_name, op)
            VALUES (TG_TABLE_SCHEMA, TG_TABLE_NAME, 'truncate');
            PERFORM pg_notify('syncline_changes', '');
            RETURN NULL;
        END
        $$
        """
    )


def downgrade() -> None:
    op.execute("DROP FUNCTION IF EXISTS syncline.capture_truncate() CASCADE")
    op.execute("DROP FUNCTION IF EXISTS syncline.capture_row() CASCADE")
    op.execute("DROP SEQUENCE IF EXISTS syncline.changes_claim_batch")
    op.execute("DROP TABLE IF EXISTS syncline.changes")
