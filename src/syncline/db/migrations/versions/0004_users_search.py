"""User search by name prefix: an index that serves `lower(username) LIKE 'pre%'` in any collation.

Revision ID: 0004
Revises: 0003
"""

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # users_username_key (lower(username)) only serves LIKE prefixes under the C collation;
    # text_pattern_ops compares bytes, so the prefix search is an index range scan everywhere.
    op.execute("CREATE INDEX users_username_prefix_idx ON users (lower(username) text_pattern_ops)")


def downgrade() -> None:
    op.execute("DROP INDEX IF EXISTS users_username_prefix_idx")
