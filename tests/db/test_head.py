"""The server's idea of the newest revision matches Alembic's."""

from syncline.db import migrate
from syncline.db.head import HEAD_REVISION


def test_head_revision_constant_matches_the_migrations() -> None:
    assert migrate.head_revision() == HEAD_REVISION, (
        "a migration was added: set HEAD_REVISION in src/syncline/db/head.py to its revision"
    )
