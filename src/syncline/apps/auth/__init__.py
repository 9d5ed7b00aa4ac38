"""Accounts, sessions and tokens for the reference applications."""
