"""Capture against a real PostgreSQL, for each source."""
