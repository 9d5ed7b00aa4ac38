"""A page of history as PostgreSQL writes its JSON equals the page the models would write.

The oracle is the Python path it replaced: the rows SELECTed as they are, made visible
(service.visible) and serialized by the Message model (times by apps/times.rfc3339), paged in
Python. The connection runs in a far time zone and another DateStyle, which must not show.
"""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from psycopg.rows import dict_row

from syncline.apps.chat import messages, policy
from syncline.apps.chat.models import Message
from syncline.apps.chat.service import visible
from syncline.apps.errors import AppError

ROOM, MEMBER, STRANGER = 7, 3, 4
# Times that test the form: trailing zeros, whole seconds, one microsecond, before 1970, far.
TIMES = [
    "2026-11-23 19:04:04.120000+00",
    "2026-11-23 19:04:05+00",
    "2026-11-23 19:04:05.000001+00",
    "1969-12-31 23:59:59.5+00",
    "2999-01-01 00:00:00.999999+05:30",
]
BODIES = ["hi", 'quote " back \\ slash', "line\nbreak\ttab\x01", "émoji 🎉", ""]


def _seed(url: str) -> list[int]:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("INSERT INTO room_members (room_id, user_id) VALUES (%s, %s)", (ROOM, MEMBER))
        ids = []
        for i in range(23):
            row = conn.execute(
                "INSERT INTO messages (id, room_id, user_id, body, client_msg_id, created_at,"
                " edited_at, deleted_at) VALUES (%s, %s, %s, %s, %s, %s, %s, %s) RETURNING id",
                (
                    # Ids past 2^53: JSON numbers written whole, not as floats.
                    2**53 + 3 * i if i % 5 == 4 else 10 + 3 * i,
                    ROOM,
                    MEMBER,
                    BODIES[i % len(BODIES)],
                    f"c-{i}" if i % 3 == 0 else None,
                    TIMES[i % len(TIMES)],
                    TIMES[(i + 1) % len(TIMES)] if i % 4 == 1 else None,
                    # A deleted message whose body was left (older rows): clients see "".
                    TIMES[(i + 2) % len(TIMES)] if i % 6 == 2 else None,
                ),
            ).fetchone()
            assert row is not None
            ids.append(int(row[0]))
        # Another room's messages never show.
        conn.execute(
            "INSERT INTO messages (room_id, user_id, body) VALUES (%s, %s, 'elsewhere')",
            (ROOM + 1, MEMBER),
        )
        return sorted(ids)


def _oracle(url: str, page: policy.Page) -> dict[str, Any]:
    with psycopg.connect(url, row_factory=dict_row) as conn:
        rows = conn.execute(
            f"SELECT {messages.COLUMNS} FROM messages WHERE room_id = %s ORDER BY id", (ROOM,)
        ).fetchall()
    if page.after is not None:
        rows = [r for r in rows if r["id"] > page.after]
    if page.before is not None:
        rows = [r for r in rows if r["id"] < page.before]
    if not page.ascending:
        rows.reverse()
    has_more = len(rows) > page.limit
    rows = sorted(rows[: page.limit], key=lambda r: int(r["id"]))
    return {
        "messages": [
            orjson.loads(Message.model_validate(visible(r)).model_dump_json()) for r in rows
        ],
        "has_more": has_more,
    }


async def _page(url: str, page: policy.Page, user: int = MEMBER) -> dict[str, Any]:
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        await conn.execute("SET TimeZone = 'America/St_Johns'")
        await conn.execute("SET DateStyle = 'SQL, DMY'")
        array, has_more = await messages.history(conn, ROOM, user, page)
    return {"messages": orjson.loads(array), "has_more": has_more}


@pytest.fixture
def seeded(schema_url: str) -> tuple[str, list[int]]:
    return schema_url, _seed(schema_url)


async def test_the_newest_page_equals_the_models(seeded: tuple[str, list[int]]) -> None:
    url, ids = seeded
    page = policy.page(None, None, 50)
    got = await _page(url, page)
    assert got == _oracle(url, page)
    assert [m["id"] for m in got["messages"]] == ids and got["has_more"] is False
    # The exact text of the times, not only their meaning.
    times = {m["created_at"] for m in got["messages"]}
    assert "2026-11-23T19:04:04.12+00:00" in times
    assert "2026-11-23T19:04:05+00:00" in times
    assert "2026-11-23T19:04:05.000001+00:00" in times
    assert "1969-12-31T23:59:59.5+00:00" in times
    assert "2998-12-31T18:30:00.999999+00:00" in times


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    before=st.one_of(st.none(), st.integers(min_value=0, max_value=2**53 + 80)),
    after=st.one_of(st.none(), st.integers(min_value=0, max_value=2**53 + 80)),
    limit=st.integers(min_value=1, max_value=30),
)
def test_every_page_equals_the_models(
    seeded: tuple[str, list[int]], before: int | None, after: int | None, limit: int
) -> None:
    url, _ = seeded
    if before is not None and after is not None and after >= before:
        after, before = before, after + 1
    page = policy.page(before, after, limit)
    assert asyncio.run(_page(url, page)) == _oracle(url, page)


async def test_a_stranger_gets_no_page(seeded: tuple[str, list[int]]) -> None:
    url, _ = seeded
    with pytest.raises(AppError) as raised:
        await _page(url, policy.page(None, None, 50), user=STRANGER)
    assert raised.value.status in (403, 404)
