"""The orders dashboard demo: CRUD over PostgreSQL, live on the `orders` channel by capture."""
