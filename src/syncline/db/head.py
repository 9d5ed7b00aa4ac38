"""The newest schema revision, known without loading Alembic (the server process never does)."""

# Bump with every new migration; tests/db/test_head.py fails until it matches Alembic's head.
HEAD_REVISION = "0006"
