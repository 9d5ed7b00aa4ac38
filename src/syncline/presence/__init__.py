"""Presence: who is in a channel, across every Syncline process (memory or Redis)."""
