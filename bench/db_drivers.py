"""The chat's two hot statements through psycopg 3 and asyncpg: client CPU time per statement.

Usage: ``python bench/db_drivers.py [--statements N] [--concurrency C] [--rounds R]``. It starts
an embedded PostgreSQL of its own, migrates it, makes a room with members, then runs the
message INSERT … RETURNING (send_if_member's statement) and the history page SELECT
(messages.history's) through each client, C coroutines at a time over a pool of C connections,
N statements per client and statement, R rounds alternating the clients; it prints the median
CPU µs per statement of this process (user + system: the driver, the pool, the event loop),
which a shared machine's load hardly changes, and the wall rate, which it does. asyncpg is not
a dependency of Syncline: pip install asyncpg to run this. A one-off measurement behind
docs/benchmarks.md (issue 19, third pass), not part of the test suite.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import asyncpg
import psycopg
import uvloop
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool

from syncline.apps.chat.messages import _SEND_IF_MEMBER, COLUMNS
from syncline.apps.sql import fetch_all, fetch_one
from syncline.db.embedded import EmbeddedPostgres
from syncline.db.migrate import upgrade
from syncline.db.pool import make_pool

USERS = 20
# messages.history's statement for the newest page (no before/after), in both dialects.
HISTORY_PG = (
    f"SELECT {COLUMNS} FROM messages WHERE room_id = %s AND EXISTS (SELECT FROM room_members"
    " WHERE room_id = %s AND user_id = %s) ORDER BY id DESC LIMIT %s"
)
HISTORY_APG = (
    f"SELECT {COLUMNS} FROM messages WHERE room_id = $1 AND EXISTS (SELECT FROM room_members"
    " WHERE room_id = $1 AND user_id = $2) ORDER BY id DESC LIMIT $3"
)
SEND_APG = (
    _SEND_IF_MEMBER.replace("%(room_id)s", "$1")
    .replace("%(user_id)s", "$2")
    .replace("%(body)s", "$3")
    .replace("%(client_msg_id)s", "$4")
)
BODY = "a message of ordinary length, about as long as a chat line usually is"

Op = Callable[[int], Awaitable[Any]]


def prepare(url: str) -> int:
    """A group room with USERS members (user ids 1..USERS) and a page of messages; its id."""
    with psycopg.connect(url, autocommit=True) as conn:
        for i in range(1, USERS + 1):
            conn.execute(
                "INSERT INTO users (id, username, email, password_hash) VALUES (%s, %s, %s, 'x')",
                (1000 + i, f"bench_user_{i}", f"u{i}@bench.invalid"),
            )
        row = conn.execute(
            "INSERT INTO rooms (kind, name) VALUES ('group', 'bench') RETURNING id"
        ).fetchone()
        assert row is not None
        room = int(row[0])
        for i in range(1, USERS + 1):
            conn.execute(
                "INSERT INTO room_members (room_id, user_id) VALUES (%s, %s)", (room, 1000 + i)
            )
        for i in range(60):
            conn.execute(
                "INSERT INTO messages (room_id, user_id, body) VALUES (%s, %s, %s)",
                (room, 1001, f"{BODY} {i}"),
            )
    return room


async def run(op: Op, statements: int, concurrency: int) -> tuple[float, float]:
    """(CPU µs per statement of this process, statements per wall second)."""
    per_worker = statements // concurrency

    async def worker(w: int) -> None:
        for i in range(per_worker):
            await op(w * per_worker + i)

    await asyncio.gather(*(worker(w) for w in range(concurrency)))  # warm: prepare, connect
    cpu, wall = time.process_time(), time.perf_counter()
    await asyncio.gather(*(worker(w) for w in range(concurrency)))
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    done = per_worker * concurrency
    return cpu * 1e6 / done, done / wall


async def measure(url: str, room: int, args: argparse.Namespace) -> dict[str, list[float]]:
    size = args.concurrency
    # Syncline's own pool (its dead-connection check on every checkout) and a plain one.
    ours = make_pool(url, size)
    plain = AsyncConnectionPool(url, min_size=size, max_size=size, open=False)
    plain.kwargs = {"autocommit": True}
    await ours.open(wait=True)
    await plain.open(wait=True)
    apg = await asyncpg.create_pool(url, min_size=size, max_size=size)
    assert apg is not None

    def user(i: int) -> int:
        return 1001 + i % USERS

    async def pg_send(i: int) -> Any:
        async with ours.connection() as conn:
            params = {"room_id": room, "user_id": user(i), "body": BODY, "client_msg_id": None}
            return await fetch_one(conn, _SEND_IF_MEMBER, params)

    async def pg_send_plain_tuple(i: int) -> Any:
        async with plain.connection() as conn:
            params = {"room_id": room, "user_id": user(i), "body": BODY, "client_msg_id": None}
            cur = await conn.execute(_SEND_IF_MEMBER, params)
            return await cur.fetchone()

    async def apg_send(i: int) -> Any:
        async with apg.acquire() as conn:
            return dict(await conn.fetchrow(SEND_APG, room, user(i), BODY, None))

    async def pg_history(i: int) -> Any:
        async with ours.connection() as conn:
            return await fetch_all(conn, HISTORY_PG, (room, room, user(i), 51))

    async def pg_history_plain(i: int) -> Any:
        async with plain.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
            await cur.execute(HISTORY_PG, (room, room, user(i), 51))
            return await cur.fetchall()

    async def apg_history(i: int) -> Any:
        async with apg.acquire() as conn:
            return [dict(r) for r in await conn.fetch(HISTORY_APG, room, user(i), 51)]

    ops: dict[str, Op] = {
        "send: psycopg, Syncline's pool, dict rows": pg_send,
        "send: psycopg, plain pool, tuple rows": pg_send_plain_tuple,
        "send: asyncpg pool, dict(record)": apg_send,
        "history: psycopg, Syncline's pool, dict rows": pg_history,
        "history: psycopg, plain pool, dict rows": pg_history_plain,
        "history: asyncpg pool, dict(record)": apg_history,
    }
    results: dict[str, list[float]] = {name: [] for name in ops}
    rates: dict[str, list[float]] = {name: [] for name in ops}
    for _ in range(args.rounds):
        for name, op in ops.items():
            cpu_us, rate = await run(op, args.statements, size)
            results[name].append(cpu_us)
            rates[name].append(rate)
    await ours.close()
    await plain.close()
    await apg.close()
    for name in ops:
        print(
            f"{name:48} CPU µs/statement median {statistics.median(results[name]):7.1f}"
            f" (runs {', '.join(f'{v:.0f}' for v in results[name])});"
            f" {statistics.median(rates[name]):,.0f} statements/s"
        )
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--statements", type=int, default=4000)
    parser.add_argument("--concurrency", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="syncline-drivers-"))
    work.chmod(0o755)
    pg = EmbeddedPostgres(work / "data")
    try:
        url = pg.start().url()
        upgrade(url)
        room = prepare(url)
        uvloop.run(measure(url, room, args))
    finally:
        pg.stop(mode="immediate")


if __name__ == "__main__":
    main()
