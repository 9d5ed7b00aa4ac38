"""Syncline: every committed PostgreSQL change, in order, to the clients allowed to see it."""

__version__ = "0.1.0"
