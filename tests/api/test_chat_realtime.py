"""The chat live: what capture publishes on room:{id} and user:{id}, who may subscribe, the
chat.* RPC methods, typing, online status and last-seen, on a whole running Syncline."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import httpx
import psycopg
import pytest

from syncline.client import (
    Event,
    Join,
    Leave,
    Publication,
    ReplyError,
    SynclineClient,
    Unsubscribed,
)
from syncline.core.codes import ErrorCode

from helpers.chat import Account, expect, make_account, row_event, wait_for
from helpers.live_server import LiveServer


def connect(server: LiveServer, who: Account) -> SynclineClient:
    return SynclineClient(server.ws_url, token=who.token, timeout=5.0)


async def personal(client: SynclineClient) -> AsyncIterator[Event]:
    """The events of the client's server-side user:{id} subscription."""
    async for _channel, event in client.server_events():
        yield event


async def make_group(http: httpx.AsyncClient, owner: Account, *others: Account) -> int:
    room = await expect(
        await http.post("/api/rooms", json={"name": "live"}, headers=owner.headers), 201
    )
    for other in others:
        url = f"/api/rooms/{room['id']}/members"
        await expect(await http.post(url, json={"user_id": other.id}, headers=owner.headers), 201)
    return int(room["id"])


async def test_only_members_subscribe_to_a_room_or_its_typing(live_server: LiveServer) -> None:
    url = live_server.database_url
    ann, eve = await make_account(url, "ann"), await make_account(url, "eve")
    async with httpx.AsyncClient(base_url=live_server.http_url) as http:
        room = await make_group(http, ann)
    client = connect(live_server, eve)
    try:
        await client.connect()
        for channel in (f"room:{room}", f"typing:{room}"):
            with pytest.raises(ReplyError) as err:
                await client.subscribe(channel)
            assert err.value.code == ErrorCode.PERMISSION_DENIED
        # Nor someone else's personal channel.
        with pytest.raises(ReplyError) as err:
            await client.subscribe(f"user:{ann.id}")
        assert err.value.code == ErrorCode.PERMISSION_DENIED
    finally:
        await client.close()


async def test_room_and_user_channels_carry_the_chat(live_server: LiveServer) -> None:
    url = live_server.database_url
    ann, bob = await make_account(url, "ann"), await make_account(url, "bob")
    ann_ws, bob_ws = connect(live_server, ann), connect(live_server, bob)
    try:
        await ann_ws.connect()
        await bob_ws.connect()
        bob_personal = personal(bob_ws)
        async with httpx.AsyncClient(base_url=live_server.http_url) as http:
            room = await make_group(http, ann)
            # Bob is added: his personal channel says so (a captured room_members insert).
            await expect(
                await http.post(
                    f"/api/rooms/{room}/members", json={"user_id": bob.id}, headers=ann.headers
                ),
                201,
            )
            await wait_for(
                bob_personal, row_event("room_members", "insert", room_id=room, user_id=bob.id)
            )
            sub = await ann_ws.subscribe(f"room:{room}")
            events = sub.events()
            sent = await expect(
                await http.post(
                    f"/api/rooms/{room}/messages", json={"body": "hi"}, headers=bob.headers
                ),
                201,
            )
            pub = await wait_for(events, row_event("messages", "insert", id=sent["id"], body="hi"))
            assert isinstance(pub, Publication)
            assert set(pub.data) == {"table", "op", "row", "old", "lsn", "xid", "commit_time"}
            await expect(
                await http.patch(
                    f"/api/messages/{sent['id']}", json={"body": "hi!"}, headers=bob.headers
                ),
                200,
            )
            await wait_for(events, row_event("messages", "update", id=sent["id"], body="hi!"))
            # Bob reads: the receipt on the room, the unread count on his own channel.
            await expect(
                await http.post(
                    f"/api/rooms/{room}/read", json={"message_id": sent["id"]}, headers=bob.headers
                ),
                204,
            )
            receipt = row_event(
                "room_members", "update", user_id=bob.id, last_read_message_id=sent["id"]
            )
            await wait_for(events, receipt)
            unread = await wait_for(
                bob_personal,
                lambda e: isinstance(e, Publication) and e.data.get("type") == "unread",
            )
            assert isinstance(unread, Publication)
            assert unread.data == {
                "type": "unread",
                "room_id": room,
                "unread_count": 0,
                "last_read_message_id": sent["id"],
            }
            # Deleting publishes the tombstone, without the text.
            await expect(await http.delete(f"/api/messages/{sent['id']}", headers=bob.headers), 200)
            tomb = await wait_for(events, row_event("messages", "update", id=sent["id"], body=""))
            assert isinstance(tomb, Publication)
            assert tomb.data["row"]["deleted_at"] is not None
            # A rename is published to the room with the write.
            await expect(
                await http.patch(f"/api/rooms/{room}", json={"name": "new"}, headers=ann.headers),
                200,
            )
            renamed = await wait_for(
                events, lambda e: isinstance(e, Publication) and e.data.get("type") == "room"
            )
            assert isinstance(renamed, Publication)
            assert renamed.data == {"type": "room", "room_id": room, "name": "new"}
            # Bob leaves: the room hears it, and so does bob's personal channel.
            await expect(
                await http.delete(f"/api/rooms/{room}/members/me", headers=bob.headers), 204
            )
            await wait_for(
                events, row_event("room_members", "delete", room_id=room, user_id=bob.id)
            )
            await wait_for(
                bob_personal, row_event("room_members", "delete", room_id=room, user_id=bob.id)
            )
    finally:
        await ann_ws.close()
        await bob_ws.close()


async def test_a_member_who_leaves_is_unsubscribed(live_server: LiveServer) -> None:
    url = live_server.database_url
    ann, bob = await make_account(url, "ann"), await make_account(url, "bob")
    client = connect(live_server, bob)
    try:
        await client.connect()
        async with httpx.AsyncClient(base_url=live_server.http_url) as http:
            room = await make_group(http, ann, bob)
            sub = await client.subscribe(f"room:{room}")
            events = sub.events()
            await expect(
                await http.delete(f"/api/rooms/{room}/members/me", headers=bob.headers), 204
            )
            end = await wait_for(events, lambda e: isinstance(e, Unsubscribed))
            assert isinstance(end, Unsubscribed)
            with pytest.raises(ReplyError):
                await client.subscribe(f"room:{room}")
    finally:
        await client.close()


async def test_rpc_methods_use_the_same_rules(live_server: LiveServer) -> None:
    url = live_server.database_url
    ann, bob = await make_account(url, "ann"), await make_account(url, "bob")
    eve = await make_account(url, "eve")
    async with httpx.AsyncClient(base_url=live_server.http_url) as http:
        room = await make_group(http, ann, bob)
    ann_ws, bob_ws, eve_ws = (connect(live_server, a) for a in (ann, bob, eve))
    try:
        for c in (ann_ws, bob_ws, eve_ws):
            await c.connect()
        sub = await bob_ws.subscribe(f"room:{room}")
        events = sub.events()
        sent = await ann_ws.rpc(
            "chat.send", {"room_id": room, "body": "via rpc", "client_msg_id": "r1"}
        )
        assert sent["body"] == "via rpc" and sent["user_id"] == ann.id
        assert (
            await ann_ws.rpc(
                "chat.send", {"room_id": room, "body": "via rpc", "client_msg_id": "r1"}
            )
            == sent
        )
        await wait_for(events, row_event("messages", "insert", id=sent["id"]))
        edited = await ann_ws.rpc("chat.edit", {"message_id": sent["id"], "body": "edited"})
        assert edited["body"] == "edited" and edited["edited_at"] is not None
        assert await bob_ws.rpc("chat.read", {"room_id": room, "message_id": sent["id"]}) == {
            "moved": True
        }
        assert await bob_ws.rpc("chat.read", {"room_id": room, "message_id": sent["id"]}) == {
            "moved": False
        }

        async def refused(client: SynclineClient, method: str, data: Any) -> ReplyError:
            with pytest.raises(ReplyError) as err:
                await client.rpc(method, data)
            return err.value

        err = await refused(bob_ws, "chat.edit", {"message_id": sent["id"], "body": "mine"})
        assert err.code == 403 and err.message.startswith("forbidden")
        err = await refused(bob_ws, "chat.delete", {"message_id": sent["id"]})
        assert err.code == 403
        err = await refused(eve_ws, "chat.send", {"room_id": room, "body": "let me in"})
        assert err.code == 404 and err.message.startswith("not_found")
        err = await refused(eve_ws, "chat.typing", {"room_id": room})
        assert err.code == 404
        for bad in (
            {"room_id": room},
            {"room_id": room, "body": "x" * 4001},
            {"room_id": room, "body": "a", "x": 1},
            [1],
            None,
        ):
            err = await refused(ann_ws, "chat.send", bad)
            assert err.code == ErrorCode.BAD_REQUEST, err
            assert err.message.startswith("invalid_input"), err
        tomb = await ann_ws.rpc("chat.delete", {"message_id": sent["id"]})
        assert tomb["body"] == "" and tomb["deleted_at"] is not None
        await wait_for(events, row_event("messages", "update", id=sent["id"], body=""))
    finally:
        for c in (ann_ws, bob_ws, eve_ws):
            await c.close()


async def test_typing_is_ephemeral_and_rate_limited(live_server: LiveServer) -> None:
    url = live_server.database_url
    ann, bob = await make_account(url, "ann"), await make_account(url, "bob")
    async with httpx.AsyncClient(base_url=live_server.http_url) as http:
        room = await make_group(http, ann, bob)
    ann_ws, bob_ws = connect(live_server, ann), connect(live_server, bob)
    try:
        await ann_ws.connect()
        await bob_ws.connect()
        sub = await ann_ws.subscribe(f"typing:{room}", recoverable=False)
        events = sub.events()
        assert await bob_ws.rpc("chat.typing", {"room_id": room}) == {}
        typing = await wait_for(events, lambda e: isinstance(e, Publication))
        assert isinstance(typing, Publication)
        assert typing.data == {"type": "typing", "user_id": bob.id, "username": bob.username}
        assert typing.offset == 0  # no position: never stored, never replayed
        with pytest.raises(ReplyError) as err:
            await bob_ws.rpc("chat.typing", {"room_id": room})
        assert err.value.code == 429
        # A client publication into the typing channel takes the same road.
        bob_sub = await bob_ws.subscribe(f"typing:{room}", recoverable=False)
        await bob_sub.publish({"typing": True})
        direct = await wait_for(events, lambda e: isinstance(e, Publication))
        assert isinstance(direct, Publication)
        assert direct.data == {"typing": True}
    finally:
        await ann_ws.close()
        await bob_ws.close()
    async with await psycopg.AsyncConnection.connect(url) as conn:
        cur = await conn.execute(
            "SELECT count(*) FROM syncline.changes WHERE channel LIKE 'typing:%%'"
        )
        assert await cur.fetchone() == (0,)


async def test_online_and_last_seen(live_server: LiveServer) -> None:
    url = live_server.database_url
    ann, bob = await make_account(url, "ann"), await make_account(url, "bob")
    async with httpx.AsyncClient(base_url=live_server.http_url) as http:
        direct_url = "/api/rooms/direct"

        async def peer() -> dict[str, Any]:
            room = await expect(
                await http.post(direct_url, json={"user_id": bob.id}, headers=ann.headers), 200
            )
            found: dict[str, Any] = room["peer"]
            return found

        assert (await peer())["online"] is False
        assert (await peer())["last_seen_at"] is None
        tabs = [connect(live_server, bob), connect(live_server, bob)]
        for tab in tabs:
            await tab.connect()
        assert (await peer())["online"] is True
        await tabs[0].close()
        # One tab is still open: still online, not yet "last seen".
        await asyncio.sleep(0.3)
        seen = await peer()
        assert seen["online"] is True and seen["last_seen_at"] is None
        await tabs[1].close()
        for _ in range(100):
            seen = await peer()
            if not seen["online"] and seen["last_seen_at"] is not None:
                break
            await asyncio.sleep(0.05)
        assert seen["online"] is False
        assert seen["last_seen_at"] is not None


async def test_presence_and_join_leave_in_a_room(live_server: LiveServer) -> None:
    url = live_server.database_url
    ann, bob = await make_account(url, "ann"), await make_account(url, "bob")
    async with httpx.AsyncClient(base_url=live_server.http_url) as http:
        room = await make_group(http, ann, bob)
    ann_ws, bob_ws = connect(live_server, ann), connect(live_server, bob)
    try:
        await ann_ws.connect()
        await bob_ws.connect()
        ann_sub = await ann_ws.subscribe(f"room:{room}", join_leave=True)
        events = ann_sub.events()
        bob_sub = await bob_ws.subscribe(f"room:{room}")
        joined = await wait_for(
            events, lambda e: isinstance(e, Join) and e.info.user == str(bob.id)
        )
        assert isinstance(joined, Join) and joined.info.user == str(bob.id)
        assert joined.info.conn_info == {"username": bob.username, "display_name": bob.username}
        present = await ann_sub.presence()
        assert {info.user for info in present.values()} == {str(ann.id), str(bob.id)}
        await bob_sub.unsubscribe()
        left = await wait_for(events, lambda e: isinstance(e, Leave))
        assert isinstance(left, Leave) and left.info.user == str(bob.id)
    finally:
        await ann_ws.close()
        await bob_ws.close()
