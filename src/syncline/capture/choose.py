"""Which capture source to run: `auto` picks logical when it can, else trigger; and fallbacks."""

from __future__ import annotations

from dataclasses import dataclass

import psycopg
from psycopg.rows import TupleRow

# When a source fails at start, the next one is tried.
FALLBACK = {"logical": "trigger", "trigger": "poll"}


@dataclass(frozen=True)
class ServerCapabilities:
    """What the database allows, and why not when it does not."""

    wal_level: str
    can_replicate: bool
    role: str

    @property
    def logical_problem(self) -> str | None:
        if self.wal_level != "logical":
            return f"wal_level is {self.wal_level}, not logical"
        if not self.can_replicate:
            return f"role {self.role} has no REPLICATION privilege"
        return None


async def capabilities(conn: psycopg.AsyncConnection[TupleRow]) -> ServerCapabilities:
    row = await (
        await conn.execute(
            "SELECT current_setting('wal_level'), rolreplication OR rolsuper, rolname"
            " FROM pg_roles WHERE rolname = current_user"
        )
    ).fetchone()
    assert row is not None
    return ServerCapabilities(wal_level=row[0], can_replicate=bool(row[1]), role=row[2])


def choose(requested: str, caps: ServerCapabilities) -> tuple[str, str]:
    """The mode to start with, and why (logged for the operator)."""
    if requested != "auto":
        return requested, f"capture = {requested} in settings"
    problem = caps.logical_problem
    if problem is None:
        return "logical", "wal_level=logical and the role may replicate"
    return "trigger", f"{problem}: using trigger capture"
