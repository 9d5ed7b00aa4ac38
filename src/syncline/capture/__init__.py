"""Capture sources: every committed change of a synced table, in commit order."""
