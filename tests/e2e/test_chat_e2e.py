"""End to end: users registered over the API chat in a room with the Python client — typing,
presence, receipts — and a user who was offline gets every message on return, by recovery
from a saved position and by REST `after`."""

from __future__ import annotations

from typing import Any

import httpx

from syncline.client import Join, Publication, Subscribed, SynclineClient

from helpers.accounts import bearer, register_user
from helpers.chat import expect, row_event, wait_for
from helpers.live_server import LiveServer


def client(server: LiveServer, pair: dict[str, Any]) -> SynclineClient:
    return SynclineClient(server.ws_url, token=pair["access_token"], timeout=5.0)


def is_typing(event: object) -> bool:
    return isinstance(event, Publication) and event.data.get("type") == "typing"


async def test_two_users_chat_and_a_third_catches_up(live_server: LiveServer) -> None:
    ann = await register_user(live_server.http_url, "e2e_ann", display_name="Ann")
    bob = await register_user(live_server.http_url, "e2e_bob", display_name="Bob")
    cat = await register_user(live_server.http_url, "e2e_cat", display_name="Cat")
    ann_id, bob_id = ann["user"]["id"], bob["user"]["id"]
    async with httpx.AsyncClient(base_url=live_server.http_url, timeout=10) as http:
        # Registration put everyone in the global room.
        for pair in (ann, bob, cat):
            rooms = await expect(await http.get("/api/rooms", headers=bearer(pair)), 200)
            assert [r["kind"] for r in rooms] == ["global"]
        room = await expect(
            await http.post("/api/rooms", json={"name": "Trio"}, headers=bearer(ann)), 201
        )
        rid = room["id"]
        for pair in (bob, cat):
            await expect(
                await http.post(
                    f"/api/rooms/{rid}/members",
                    json={"user_id": pair["user"]["id"]},
                    headers=bearer(ann),
                ),
                201,
            )

        # Cat looks once, keeps the room's position, and goes offline.
        cat_ws = client(live_server, cat)
        await cat_ws.connect()
        cat_sub = await cat_ws.subscribe(f"room:{rid}")
        saved = cat_sub.position
        await cat_ws.close()

        ann_ws, bob_ws = client(live_server, ann), client(live_server, bob)
        try:
            await ann_ws.connect()
            await bob_ws.connect()
            ann_room = await ann_ws.subscribe(f"room:{rid}", join_leave=True)
            ann_events = ann_room.events()
            bob_room = await bob_ws.subscribe(f"room:{rid}")
            bob_events = bob_room.events()
            ann_typing = (await ann_ws.subscribe(f"typing:{rid}", recoverable=False)).events()

            # Presence: Ann sees Bob come in, and both are present.
            joined = await wait_for(
                ann_events, lambda e: isinstance(e, Join) and e.info.user == str(bob_id)
            )
            assert isinstance(joined, Join)
            assert joined.info.conn_info["display_name"] == "Bob"
            present = await ann_room.presence()
            assert {i.user for i in present.values()} == {str(ann_id), str(bob_id)}

            # Bob types; Ann sees it.
            await bob_ws.rpc("chat.typing", {"room_id": rid})
            typing = await wait_for(ann_typing, is_typing)
            assert isinstance(typing, Publication)
            assert typing.data == {"type": "typing", "user_id": bob_id, "username": "e2e_bob"}

            # They talk: Ann over RPC, Bob over REST; both see every message, in order.
            sent: list[dict[str, Any]] = []
            for n in range(3):
                sent.append(
                    await ann_ws.rpc(
                        "chat.send", {"room_id": rid, "body": f"ann {n}", "client_msg_id": f"a{n}"}
                    )
                )
                reply = await http.post(
                    f"/api/rooms/{rid}/messages", json={"body": f"bob {n}"}, headers=bearer(bob)
                )
                sent.append(await expect(reply, 201))
            for events in (ann_events, bob_events):
                seen = []
                for message in sent:
                    pub = await wait_for(events, row_event("messages", "insert", id=message["id"]))
                    assert isinstance(pub, Publication)
                    seen.append(pub.data["row"]["body"])
                assert seen == [m["body"] for m in sent]

            # Bob reads up to the last message: Ann sees the receipt; Bob's tabs the count.
            last = sent[-1]["id"]
            assert await bob_ws.rpc("chat.read", {"room_id": rid, "message_id": last}) == {
                "moved": True
            }
            receipt = await wait_for(
                ann_events,
                row_event("room_members", "update", user_id=bob_id, last_read_message_id=last),
            )
            assert isinstance(receipt, Publication)
            unread = await wait_for(
                (e async for _, e in bob_ws.server_events()),
                lambda e: isinstance(e, Publication) and e.data.get("type") == "unread",
            )
            assert isinstance(unread, Publication)
            assert unread.data["unread_count"] == 0

            # Ann fixes a message and takes another back.
            await ann_ws.rpc("chat.edit", {"message_id": sent[0]["id"], "body": "ann 0 (edited)"})
            await ann_ws.rpc("chat.delete", {"message_id": sent[2]["id"]})
            await wait_for(bob_events, row_event("messages", "update", id=sent[2]["id"], body=""))
        finally:
            await ann_ws.close()
            await bob_ws.close()

        # Cat comes back: recovery from the saved position replays exactly what was missed.
        cat_ws = client(live_server, cat)
        try:
            await cat_ws.connect()
            back = await cat_ws.subscribe(f"room:{rid}", since=saved)
            events = back.events()
            first = await wait_for(events, lambda e: isinstance(e, Subscribed))
            assert isinstance(first, Subscribed)
            assert first.was_recovering and first.recovered
            state: dict[int, dict[str, Any]] = {}
            offsets: list[int] = []
            while not offsets or offsets[-1] < first.offset:
                pub = await wait_for(events, lambda e: isinstance(e, Publication))
                assert isinstance(pub, Publication)
                offsets.append(pub.offset)
                if pub.data.get("table") == "messages":
                    state[pub.data["row"]["id"]] = pub.data["row"]
            assert offsets == list(range(saved[1] + 1, first.offset + 1))  # no gap, no repeat
            assert sorted(state) == [m["id"] for m in sent]
            assert state[sent[0]["id"]]["body"] == "ann 0 (edited)"
            assert state[sent[2]["id"]]["body"] == "" and state[sent[2]["id"]]["deleted_at"]
        finally:
            await cat_ws.close()

        # And the REST road for a client whose position is gone: everything after its last id.
        page = await expect(
            await http.get(f"/api/rooms/{rid}/messages", params={"after": 0}, headers=bearer(cat)),
            200,
        )
        assert [m["id"] for m in page["messages"]] == [m["id"] for m in sent]
        assert page["has_more"] is False
        assert page["messages"][0]["body"] == "ann 0 (edited)"
        assert page["messages"][2]["body"] == ""
        rooms = await expect(await http.get("/api/rooms", headers=bearer(cat)), 200)
        [trio] = [r for r in rooms if r["id"] == rid]
        assert trio["unread_count"] == 5  # six sent, one deleted, none read by Cat
        assert trio["last_message"]["id"] == sent[-1]["id"]
