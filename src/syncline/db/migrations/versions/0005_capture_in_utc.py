"""Trigger capture renders times in UTC, whatever the writing session's TimeZone.

to_jsonb() writes a timestamptz in the session's zone: rows captured by the trigger carried
the writer's offset (+01:00), while logical capture, the server API and REST give UTC.

Revision ID: 0005
Revises: 0004
"""

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("ALTER FUNCTION syncline.capture_row() SET TimeZone = 'UTC'")


def downgrade() -> None:
    op.execute("ALTER FUNCTION syncline.capture_row() RESET TimeZone")
