"""Transactional publish from SQL: syncline.publish(channel, data) and the capture mode it needs.

Revision ID: 0002
Revises: 0001
"""

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

# Kept in step with syncline.publish_limits (documented in docs/protocol.md).
MAX_CHANNEL_LENGTH = 255
MAX_DATA_BYTES = 65536


def upgrade() -> None:
    # Which capture source is running, written by the capture leader when it sets a source up.
    # publish() reads it so that a publication takes the same road as the rows of its
    # transaction: a logical decoding message when capture reads the WAL, an outbox row when it
    # reads the outbox. One row at most.
    op.execute(
        """
        CREATE TABLE syncline.capture_state (
            singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
            mode text NOT NULL CHECK (mode IN ('logical', 'trigger', 'poll')),
            updated_at timestamptz NOT NULL DEFAULT now()
        )
        """
    )
    # Transactional: pg_logical_emit_message(true, ...) and the outbox insert both commit or
    # roll back with the caller's transaction, and are decoded or claimed in its commit order.
    # SECURITY DEFINER because emitting WAL messages and writing the outbox are the owner's
    # rights; EXECUTE is revoked from PUBLIC so that publishing is granted deliberately.
    op.execute(
        f"""
        CREATE FUNCTION syncline.publish(channel text, data jsonb) RETURNS void
        LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
        DECLARE
            size integer;
            capture text;
        BEGIN
            IF channel IS NULL OR channel = '' THEN
                RAISE EXCEPTION 'syncline.publish: channel must not be empty'
                    USING ERRCODE = 'invalid_parameter_value';
            END IF;
            IF length(channel) > {MAX_CHANNEL_LENGTH} THEN
                RAISE EXCEPTION
                    'syncline.publish: channel is % characters, the limit is {MAX_CHANNEL_LENGTH}',
                    length(channel) USING ERRCODE = 'invalid_parameter_value';
            END IF;
            IF channel ~ '[[:space:][:cntrl:]]' THEN
                RAISE EXCEPTION
                    'syncline.publish: channel must not contain spaces or control characters'
                    USING ERRCODE = 'invalid_parameter_value';
            END IF;
            IF data IS NULL THEN
                RAISE EXCEPTION 'syncline.publish: data must not be NULL (use ''null''::jsonb)'
                    USING ERRCODE = 'null_value_not_allowed';
            END IF;
            size := octet_length(data::text);
            IF size > {MAX_DATA_BYTES} THEN
                RAISE EXCEPTION
                    'syncline.publish: data is % bytes, the limit is {MAX_DATA_BYTES}', size
                    USING ERRCODE = 'program_limit_exceeded';
            END IF;
            SELECT mode INTO capture FROM syncline.capture_state;
            IF capture = 'logical' THEN
                PERFORM pg_logical_emit_message(
                    true, 'syncline', jsonb_build_object('channel', channel, 'data', data)::text);
            ELSE
                INSERT INTO syncline.changes (schema_name, table_name, op, row, channel)
                VALUES ('', '', 'message', data, channel);
                PERFORM pg_notify('syncline_changes', '');
            END IF;
        END
        $$
        """
    )
    op.execute("REVOKE ALL ON FUNCTION syncline.publish(text, jsonb) FROM PUBLIC")


def downgrade() -> None:
    op.execute("DROP FUNCTION IF EXISTS syncline.publish(text, jsonb)")
    op.execute("DROP TABLE IF EXISTS syncline.capture_state")
