"""Chat messages over REST on real PostgreSQL: send, idempotency, limits, edit, delete,
history pages, read receipts and unread counts."""

from __future__ import annotations

import httpx
import psycopg

from helpers.chat import Account, api_client, expect, make_account


async def group_with(http: httpx.AsyncClient, owner: Account, *others: Account) -> int:
    room = await expect(
        await http.post("/api/rooms", json={"name": "g"}, headers=owner.headers), 201
    )
    for other in others:
        await expect(
            await http.post(
                f"/api/rooms/{room['id']}/members",
                json={"user_id": other.id},
                headers=owner.headers,
            ),
            201,
        )
    return int(room["id"])


async def send(http: httpx.AsyncClient, who: Account, room: int, body: str) -> dict[str, object]:
    message: dict[str, object] = await expect(
        await http.post(f"/api/rooms/{room}/messages", json={"body": body}, headers=who.headers),
        201,
    )
    return message


async def test_send_and_read_back(schema_url: str) -> None:
    ann = await make_account(schema_url, "ann")
    async with api_client(schema_url) as http:
        room = await group_with(http, ann)
        sent = await send(http, ann, room, "hello\n world ")
        assert sent["room_id"] == room
        assert sent["user_id"] == ann.id
        assert sent["body"] == "hello\n world "
        assert sent["client_msg_id"] is None
        assert sent["edited_at"] is None and sent["deleted_at"] is None
        page = await expect(await http.get(f"/api/rooms/{room}/messages", headers=ann.headers), 200)
        assert page == {"messages": [sent], "has_more": False}


async def test_send_is_idempotent_by_client_msg_id(schema_url: str) -> None:
    ann = await make_account(schema_url, "ann")
    async with api_client(schema_url) as http:
        room = await group_with(http, ann)
        other = await group_with(http, ann)
        url = f"/api/rooms/{room}/messages"
        body = {"body": "once", "client_msg_id": "c-1"}
        first = await expect(await http.post(url, json=body, headers=ann.headers), 201)
        again = await expect(await http.post(url, json=body, headers=ann.headers), 200)
        assert again == first
        page = await expect(await http.get(url, headers=ann.headers), 200)
        assert len(page["messages"]) == 1
        await expect(
            await http.post(f"/api/rooms/{other}/messages", json=body, headers=ann.headers),
            409,
            "client_msg_id_conflict",
        )


async def test_message_input_limits(schema_url: str) -> None:
    ann = await make_account(schema_url, "ann")
    async with api_client(schema_url) as http:
        room = await group_with(http, ann)
        url, h = f"/api/rooms/{room}/messages", ann.headers
        await expect(await http.post(url, json={"body": "x" * 4000}, headers=h), 201)
        for body in (
            {"body": "x" * 4001},
            {"body": ""},
            {"body": " \n\t"},
            {},
            {"body": None},
            {"body": "ok", "client_msg_id": "x" * 65},
            {"body": "ok", "user_id": 1},
        ):
            await expect(await http.post(url, json=body, headers=h), 422, "invalid_input")
        raw = {**h, "Content-Type": "application/json"}
        await expect(await http.post(url, content=b"{not json", headers=raw), 422, "invalid_input")
        await expect(await http.post(url, content=b"[1, 2]", headers=raw), 422, "invalid_input")


async def test_history_pages(schema_url: str) -> None:
    ann = await make_account(schema_url, "ann")
    async with api_client(schema_url) as http:
        room = await group_with(http, ann)
        ids = [int(str((await send(http, ann, room, f"m{n}"))["id"])) for n in range(7)]
        url, h = f"/api/rooms/{room}/messages", ann.headers

        async def page(**params: int) -> tuple[list[int], bool]:
            got = await expect(await http.get(url, params=params, headers=h), 200)
            return [m["id"] for m in got["messages"]], got["has_more"]

        assert await page(limit=3) == (ids[4:], True)  # the newest, ascending
        assert await page(limit=3, before=ids[4]) == (ids[1:4], True)
        assert await page(limit=3, before=ids[1]) == (ids[:1], False)
        assert await page(limit=3, after=ids[0]) == (ids[1:4], True)  # catching up
        assert await page(limit=3, after=ids[3]) == (ids[4:], False)
        assert await page(after=ids[6]) == ([], False)
        assert await page(after=ids[1], before=ids[5]) == (ids[2:5], False)
        assert await page(after=ids[1], before=ids[6], limit=2) == (ids[2:4], True)
        assert await page(limit=100) == (ids, False)
        for bad in ({"limit": 0}, {"limit": 101}, {"before": -1}, {"after": 1 << 64}):
            await expect(await http.get(url, params=bad, headers=h), 422, "invalid_input")
        await expect(
            await http.get(url, params={"after": 5, "before": 5}, headers=h), 400, "invalid_cursor"
        )
        await expect(await http.get(url, params={"limit": "ten"}, headers=h), 422, "invalid_input")


async def test_only_the_author_edits(schema_url: str) -> None:
    ann, bob = await make_account(schema_url, "ann"), await make_account(schema_url, "bob")
    outsider = await make_account(schema_url, "eve")
    async with api_client(schema_url) as http:
        room = await group_with(http, ann, bob)
        sent = await send(http, bob, room, "tpyo")
        url = f"/api/messages/{sent['id']}"
        await expect(
            await http.patch(url, json={"body": "x"}, headers=ann.headers), 403, "forbidden"
        )
        # Someone outside the room can't even learn that the message exists.
        await expect(
            await http.patch(url, json={"body": "x"}, headers=outsider.headers), 404, "not_found"
        )
        await expect(
            await http.patch("/api/messages/99999999", json={"body": "x"}, headers=bob.headers),
            404,
            "not_found",
        )
        for body in ({"body": ""}, {"body": "x" * 4001}, {"body": "ok", "room_id": 1}):
            await expect(
                await http.patch(url, json=body, headers=bob.headers), 422, "invalid_input"
            )
        edited = await expect(
            await http.patch(url, json={"body": "typo"}, headers=bob.headers), 200
        )
        assert edited["body"] == "typo"
        assert edited["edited_at"] is not None
        assert edited["created_at"] == sent["created_at"]


async def test_delete_leaves_a_tombstone(schema_url: str) -> None:
    ann, bob = await make_account(schema_url, "ann"), await make_account(schema_url, "bob")
    cat = await make_account(schema_url, "cat")
    async with api_client(schema_url) as http:
        room = await group_with(http, ann, bob, cat)
        by_bob = await send(http, bob, room, "bob's")
        by_cat = await send(http, cat, room, "cat's")
        # A member may not delete another's message...
        await expect(
            await http.delete(f"/api/messages/{by_cat['id']}", headers=bob.headers),
            403,
            "forbidden",
        )
        # ...the author may, and the group's owner may delete any.
        mine = await expect(
            await http.delete(f"/api/messages/{by_bob['id']}", headers=bob.headers), 200
        )
        owners = await expect(
            await http.delete(f"/api/messages/{by_cat['id']}", headers=ann.headers), 200
        )
        for tomb in (mine, owners):
            assert tomb["body"] == ""
            assert tomb["deleted_at"] is not None
        again = await expect(
            await http.delete(f"/api/messages/{by_bob['id']}", headers=bob.headers), 200
        )
        assert again == mine
        await expect(
            await http.patch(
                f"/api/messages/{by_bob['id']}", json={"body": "x"}, headers=bob.headers
            ),
            409,
            "message_deleted",
        )
        page = await expect(await http.get(f"/api/rooms/{room}/messages", headers=cat.headers), 200)
        assert [(m["body"], m["deleted_at"] is not None) for m in page["messages"]] == [
            ("", True),
            ("", True),
        ]
    # The text is gone from the database too, not only from the answers.
    async with await psycopg.AsyncConnection.connect(schema_url) as conn:
        cur = await conn.execute("SELECT body FROM messages WHERE room_id = %s", (room,))
        assert await cur.fetchall() == [("",), ("",)]


async def test_the_owner_of_a_direct_room_deletes_only_their_own(schema_url: str) -> None:
    ann, bob = await make_account(schema_url, "ann"), await make_account(schema_url, "bob")
    async with api_client(schema_url) as http:
        direct = await expect(
            await http.post("/api/rooms/direct", json={"user_id": bob.id}, headers=ann.headers), 200
        )
        sent = await send(http, bob, int(direct["id"]), "hi")
        await expect(
            await http.delete(f"/api/messages/{sent['id']}", headers=ann.headers), 403, "forbidden"
        )


async def test_read_receipts_and_unread_counts(schema_url: str) -> None:
    ann, bob = await make_account(schema_url, "ann"), await make_account(schema_url, "bob")
    async with api_client(schema_url) as http:
        room = await group_with(http, ann, bob)
        ids = [int(str((await send(http, ann, room, f"m{n}"))["id"])) for n in range(4)]
        await send(http, bob, room, "bob's own")  # one's own messages are never unread

        async def summary(who: Account) -> dict[str, object]:
            rooms = await expect(await http.get("/api/rooms", headers=who.headers), 200)
            [found] = [r for r in rooms if r["id"] == room]
            assert isinstance(found, dict)
            return found

        bob_view = await summary(bob)
        assert bob_view["unread_count"] == 4
        assert bob_view["last_read_message_id"] is None
        last = bob_view["last_message"]
        assert isinstance(last, dict) and last["body"] == "bob's own"
        rooms_first = await expect(await http.get("/api/rooms", headers=bob.headers), 200)
        assert rooms_first[0]["id"] == room  # the most recently active first
        url = f"/api/rooms/{room}/read"
        await expect(await http.post(url, json={"message_id": ids[1]}, headers=bob.headers), 204)
        assert (await summary(bob))["unread_count"] == 2
        # Receipts only move forward.
        await expect(await http.post(url, json={"message_id": ids[0]}, headers=bob.headers), 204)
        bob_view = await summary(bob)
        assert (bob_view["unread_count"], bob_view["last_read_message_id"]) == (2, ids[1])
        # A deleted message is not counted.
        await expect(await http.delete(f"/api/messages/{ids[3]}", headers=ann.headers), 200)
        assert (await summary(bob))["unread_count"] == 1
        await expect(await http.post(url, json={"message_id": ids[3]}, headers=bob.headers), 204)
        assert (await summary(bob))["unread_count"] == 0
        # Receipts name a message of the room.
        other = await group_with(http, ann, bob)
        elsewhere = await send(http, ann, other, "elsewhere")
        await expect(
            await http.post(url, json={"message_id": elsewhere["id"]}, headers=bob.headers),
            404,
            "not_found",
        )
        for body in ({}, {"message_id": 0}, {"message_id": "x"}, {"message_id": 1, "x": 1}):
            await expect(await http.post(url, json=body, headers=bob.headers), 422, "invalid_input")
        detail = await expect(await http.get(f"/api/rooms/{room}", headers=ann.headers), 200)
        receipts = {m["user_id"]: m["last_read_message_id"] for m in detail["members"]}
        assert receipts == {ann.id: None, bob.id: ids[3]}
