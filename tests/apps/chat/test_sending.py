"""Group commit of chat sends (SendBatcher) against a real PostgreSQL: concurrent sends share one
statement and one transaction, and each still gets the answer it would have got alone."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import psycopg
import pytest
from psycopg_pool import AsyncConnectionPool

from syncline.apps.chat.sending import SendBatcher
from syncline.apps.chat.service import ChatService
from syncline.apps.errors import AppError

ROOMS = (2, 3, 4)
MEMBERS = (5, 6, 7)
STRANGER = 8


@pytest.fixture
async def pool(schema_url: str) -> AsyncIterator[AsyncConnectionPool]:
    with psycopg.connect(schema_url, autocommit=True) as conn:
        for room in ROOMS:
            for user in MEMBERS:
                conn.execute(
                    "INSERT INTO room_members (room_id, user_id) VALUES (%s, %s)", (room, user)
                )
    async with AsyncConnectionPool(
        schema_url, min_size=2, max_size=4, kwargs={"autocommit": True}
    ) as opened:
        yield opened


async def _stored(pool: AsyncConnectionPool) -> list[tuple[int, int, int, str, str | None, str]]:
    """Every message, with the transaction that wrote it (xmin)."""
    async with pool.connection() as conn:
        cur = await conn.execute(
            "SELECT id, room_id, user_id, body, client_msg_id, xmin::text FROM messages ORDER BY id"
        )
        return list(await cur.fetchall())


async def test_concurrent_sends_are_one_statement_with_each_answer_its_own(
    pool: AsyncConnectionPool,
) -> None:
    sender = SendBatcher(pool, max_in_flight=1)
    # Made in one turn of the event loop: they go together.
    sends = [(ROOMS[i % 3], MEMBERS[i % 3], f"m{i}", f"c{i}" if i % 2 else None) for i in range(30)]
    sends += [(3, STRANGER, "not a member", None), (99, 5, "no such membership", "x1")]
    sends += [(4, 7, "a retry of c1's id, same author? no: c1 is member 6's", "c1")]
    sends += [(3, 6, "member 6 repeats c1", "c1")]  # a repeat inside the same batch
    rows = await asyncio.gather(*(sender.send(*s) for s in sends))
    await sender.close()

    stored = await _stored(pool)
    by_id = {row[0]: row for row in stored}
    refused = {"not a member", "no such membership", "member 6 repeats c1"}
    for (room, user, body, client_msg_id), row in zip(sends, rows, strict=True):
        if body in refused:
            assert row is None, body
            continue
        assert row is not None, body
        assert (row["room_id"], row["user_id"], row["body"], row["client_msg_id"]) == (
            room,
            user,
            body,
            client_msg_id,
        )
        assert by_id[row["id"]][1:5] == (room, user, body, client_msg_id)
    assert len(stored) == len(sends) - len(refused)
    # Ids in the order the sends were made, all in one transaction.
    returned = [row["id"] for row in rows if row is not None]
    assert returned == sorted(returned)
    assert len({row[5] for row in stored}) == 1


async def test_a_lone_send_goes_at_once_and_the_next_ones_wait_to_go_together(
    pool: AsyncConnectionPool,
) -> None:
    # No second batch beside the first however long that takes (a busy machine's first send
    # can outlast STALL_S, and a stalled batch's neighbour may then overtake it).
    sender = SendBatcher(pool, stall_after=60.0)
    first = asyncio.ensure_future(sender.send(2, 5, "first", None))
    await asyncio.sleep(0.001)  # its batch has started
    rest = [sender.send(2, 5, f"m{i}", None) for i in range(5)]
    await asyncio.gather(first, *rest)
    await sender.close()
    transactions = [row[5] for row in await _stored(pool)]
    assert transactions[0] not in transactions[1:]
    assert len(set(transactions[1:])) == 1


async def test_a_row_the_database_refuses_fails_only_its_own_send(
    pool: AsyncConnectionPool,
) -> None:
    sender = SendBatcher(pool, max_in_flight=1)
    first = asyncio.ensure_future(sender.send(2, 5, "first", None))
    await asyncio.sleep(0)
    # NUL cannot be stored in text (the API refuses it before; a direct caller may not).
    batch = [sender.send(2, 5, f"ok {i}", None) for i in range(3)]
    batch.insert(1, sender.send(2, 6, "bad \x00 body", None))
    results = await asyncio.gather(first, *batch, return_exceptions=True)
    await sender.close()
    assert isinstance(results[2], psycopg.DataError)
    good = [r for i, r in enumerate(results) if i != 2]
    assert all(isinstance(r, dict) for r in good)
    stored = await _stored(pool)
    assert [row[3] for row in stored] == ["first", "ok 0", "ok 1", "ok 2"]


async def test_a_batch_stuck_on_a_lock_holds_up_other_rooms_only_until_stall_after(
    pool: AsyncConnectionPool, schema_url: str
) -> None:
    sender = SendBatcher(pool, max_in_flight=2, stall_after=1.0)
    async with await psycopg.AsyncConnection.connect(schema_url) as locker:
        # A leave in progress in room 2: its membership row is locked until it commits.
        await locker.execute(
            "SELECT 1 FROM room_members WHERE room_id = 2 AND user_id = 5 FOR UPDATE"
        )
        held = asyncio.ensure_future(sender.send(2, 5, "waits for the lock", None))
        await asyncio.sleep(0.05)
        other = asyncio.ensure_future(sender.send(3, 6, "another room", None))
        # Not beside the first batch while that one may yet answer promptly...
        await asyncio.sleep(0.2)
        assert not other.done()
        # ...but once it has been out stall_after.
        row = await asyncio.wait_for(other, 5)
        assert row is not None and row["room_id"] == 3
        assert not held.done()
        await locker.rollback()
    assert await asyncio.wait_for(held, 5) is not None
    await sender.close()


async def test_a_cancelled_sender_leaves_the_others_answered(pool: AsyncConnectionPool) -> None:
    sender = SendBatcher(pool, max_in_flight=1)
    first = asyncio.ensure_future(sender.send(2, 5, "first", None))
    await asyncio.sleep(0)
    waiting = [asyncio.ensure_future(sender.send(2, 5, f"w{i}", None)) for i in range(4)]
    await asyncio.sleep(0)
    waiting[1].cancel()
    results = await asyncio.gather(first, *waiting, return_exceptions=True)
    await sender.close()
    assert isinstance(results[2], asyncio.CancelledError)
    assert [r["body"] for r in results if isinstance(r, dict)] == ["first", "w0", "w2", "w3"]


async def test_close_writes_what_waits_and_later_sends_go_alone(pool: AsyncConnectionPool) -> None:
    sender = SendBatcher(pool)
    pending = [asyncio.ensure_future(sender.send(2, 5, f"p{i}", None)) for i in range(5)]
    await asyncio.sleep(0)
    await sender.close()
    assert all(task.done() for task in pending)
    late = await sender.send(2, 5, "after close", None)
    assert late is not None and late["body"] == "after close"
    assert [row[3] for row in await _stored(pool)] == [*(f"p{i}" for i in range(5)), "after close"]


async def test_the_service_through_the_batcher_keeps_its_answers(
    pool: AsyncConnectionPool,
) -> None:
    sender = SendBatcher(pool, max_in_flight=1)
    chat = ChatService(pool, sender=sender)
    results = await asyncio.gather(
        chat.send(2, 5, "new", "same"),
        chat.send(2, 5, "retried", "same"),
        chat.send(3, 5, "other room, same id", "same"),
        chat.send(2, STRANGER, "stranger", None),
        return_exceptions=True,
    )
    await sender.close()
    (first, created), (again, created_again) = results[0], results[1]  # type: ignore[misc]
    assert created is True and first.body == "new"
    assert created_again is False and again.id == first.id and again.body == "new"
    assert isinstance(results[2], AppError) and results[2].status == 409
    assert isinstance(results[3], AppError) and results[3].status in (403, 404)
