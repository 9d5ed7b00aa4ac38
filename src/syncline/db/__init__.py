"""Database adapters: the embedded PostgreSQL, connection pool, migrations."""
