"""Shape adapters: the snapshot reader and the SQL composition of core filters (psycopg)."""
