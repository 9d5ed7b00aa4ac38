"""The chat application: rooms, messages, receipts, typing and presence over PostgreSQL."""
