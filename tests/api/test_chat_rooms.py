"""Chat rooms over REST on real PostgreSQL: listing, groups, direct rooms, invites, leaving."""

from __future__ import annotations

import psycopg

from helpers.chat import api_client, expect, global_room_id, make_account


async def test_rooms_need_a_signed_in_user(schema_url: str) -> None:
    async with api_client(schema_url) as http:
        await expect(await http.get("/api/rooms"), 401, "unauthorized")
        bad = {"Authorization": "Bearer not-a-token"}
        await expect(await http.get("/api/rooms", headers=bad), 401, "unauthorized")
        await expect(await http.post("/api/rooms", json={"name": "x"}), 401, "unauthorized")


async def test_a_new_user_sees_the_global_room(schema_url: str) -> None:
    ann = await make_account(schema_url, "ann")
    async with api_client(schema_url) as http:
        rooms = await expect(await http.get("/api/rooms", headers=ann.headers), 200)
    general = await global_room_id(schema_url)
    [room] = [r for r in rooms if r["kind"] == "global"]
    assert room["id"] == general
    assert room["role"] == "member"
    assert room["unread_count"] == 0
    assert room["last_message"] is None
    assert room["peer"] is None
    assert room["member_count"] >= 1


async def test_create_a_group_room_and_read_its_detail(schema_url: str) -> None:
    ann = await make_account(schema_url, "ann", display_name="Ann A")
    async with api_client(schema_url) as http:
        room = await expect(
            await http.post("/api/rooms", json={"name": "  Team  "}, headers=ann.headers), 201
        )
        assert room["kind"] == "group"
        assert room["name"] == "Team"
        assert room["role"] == "owner"
        assert room["member_count"] == 1
        [member] = room["members"]
        assert member["user_id"] == ann.id
        assert member["role"] == "owner"
        assert member["display_name"] == "Ann A"
        again = await expect(await http.get(f"/api/rooms/{room['id']}", headers=ann.headers), 200)
        assert again == room
        listed = await expect(await http.get("/api/rooms", headers=ann.headers), 200)
        assert room["id"] in [r["id"] for r in listed]


async def test_room_input_is_checked(schema_url: str) -> None:
    ann = await make_account(schema_url, "ann")
    h = ann.headers
    async with api_client(schema_url) as http:
        for body in ({"name": ""}, {"name": "   "}, {"name": "x" * 65}, {}, {"name": 5}):
            await expect(await http.post("/api/rooms", json=body, headers=h), 422, "invalid_input")
        extra = {"name": "ok", "kind": "global"}
        await expect(await http.post("/api/rooms", json=extra, headers=h), 422, "invalid_input")
        broken = {**h, "Content-Type": "application/json"}
        await expect(
            await http.post("/api/rooms", content=b'{"name": ', headers=broken),
            422,
            "invalid_input",
        )
        await expect(await http.get("/api/rooms/0", headers=h), 422, "invalid_input")
        await expect(await http.get(f"/api/rooms/{1 << 64}", headers=h), 422, "invalid_input")


async def test_non_members_get_404_for_everything_about_a_room(schema_url: str) -> None:
    ann, bob = await make_account(schema_url, "ann"), await make_account(schema_url, "bob")
    async with api_client(schema_url) as http:
        room = await expect(
            await http.post("/api/rooms", json={"name": "r"}, headers=ann.headers), 201
        )
        rid, h = room["id"], bob.headers
        calls = [
            http.get(f"/api/rooms/{rid}", headers=h),
            http.patch(f"/api/rooms/{rid}", json={"name": "mine"}, headers=h),
            http.post(f"/api/rooms/{rid}/members", json={"user_id": bob.id}, headers=h),
            http.post(f"/api/rooms/{rid}/invites", headers=h),
            http.delete(f"/api/rooms/{rid}/members/me", headers=h),
            http.get(f"/api/rooms/{rid}/messages", headers=h),
            http.post(f"/api/rooms/{rid}/messages", json={"body": "hi"}, headers=h),
            http.post(f"/api/rooms/{rid}/read", json={"message_id": 1}, headers=h),
        ]
        for call in calls:
            await expect(await call, 404, "not_found")
        # The same answer as for a room that does not exist at all.
        await expect(await http.get("/api/rooms/999999", headers=h), 404, "not_found")


async def test_only_the_owner_renames_a_group(schema_url: str) -> None:
    ann, bob = await make_account(schema_url, "ann"), await make_account(schema_url, "bob")
    async with api_client(schema_url) as http:
        room = await expect(
            await http.post("/api/rooms", json={"name": "r"}, headers=ann.headers), 201
        )
        rid = room["id"]
        await expect(
            await http.post(
                f"/api/rooms/{rid}/members", json={"user_id": bob.id}, headers=ann.headers
            ),
            201,
        )
        await expect(
            await http.patch(f"/api/rooms/{rid}", json={"name": "bob's"}, headers=bob.headers),
            403,
            "forbidden",
        )
        renamed = await expect(
            await http.patch(f"/api/rooms/{rid}", json={"name": "renamed"}, headers=ann.headers),
            200,
        )
        assert renamed["name"] == "renamed"
        general = await global_room_id(schema_url)
        await expect(
            await http.patch(f"/api/rooms/{general}", json={"name": "x"}, headers=ann.headers),
            403,
            "forbidden",
        )


async def test_adding_members(schema_url: str) -> None:
    ann, bob = await make_account(schema_url, "ann"), await make_account(schema_url, "bob")
    cat = await make_account(schema_url, "cat")
    async with api_client(schema_url) as http:
        room = await expect(
            await http.post("/api/rooms", json={"name": "r"}, headers=ann.headers), 201
        )
        url = f"/api/rooms/{room['id']}/members"
        added = await expect(
            await http.post(url, json={"user_id": bob.id}, headers=ann.headers), 201
        )
        assert added["user_id"] == bob.id
        assert added["role"] == "member"
        assert added["username"] == bob.username
        # Any member may add; a member twice is a conflict; unknown users are 404.
        await expect(await http.post(url, json={"user_id": cat.id}, headers=bob.headers), 201)
        await expect(
            await http.post(url, json={"user_id": cat.id}, headers=ann.headers),
            409,
            "already_member",
        )
        await expect(
            await http.post(url, json={"user_id": 987654321}, headers=ann.headers), 404, "not_found"
        )
        detail = await expect(await http.get(f"/api/rooms/{room['id']}", headers=cat.headers), 200)
        assert [m["user_id"] for m in detail["members"]] == [ann.id, bob.id, cat.id]
        assert detail["member_count"] == 3
        # Not into the global room.
        general = await global_room_id(schema_url)
        await expect(
            await http.post(
                f"/api/rooms/{general}/members", json={"user_id": cat.id}, headers=ann.headers
            ),
            400,
            "not_a_group",
        )


async def test_direct_rooms_are_one_per_pair(schema_url: str) -> None:
    ann = await make_account(schema_url, "ann", display_name="Ann")
    bob = await make_account(schema_url, "bob", display_name="Bob")
    async with api_client(schema_url) as http:
        first = await expect(
            await http.post("/api/rooms/direct", json={"user_id": bob.id}, headers=ann.headers), 200
        )
        assert first["kind"] == "direct"
        assert first["name"] == "Bob"  # called after the other person
        assert first["peer"]["id"] == bob.id
        assert first["peer"]["online"] is False
        assert {m["user_id"] for m in first["members"]} == {ann.id, bob.id}
        from_bob = await expect(
            await http.post("/api/rooms/direct", json={"user_id": ann.id}, headers=bob.headers), 200
        )
        assert from_bob["id"] == first["id"]
        assert from_bob["name"] == "Ann"
        assert from_bob["peer"]["id"] == ann.id
        await expect(
            await http.post("/api/rooms/direct", json={"user_id": ann.id}, headers=ann.headers),
            400,
            "invalid_peer",
        )
        await expect(
            await http.post("/api/rooms/direct", json={"user_id": 987654321}, headers=ann.headers),
            404,
            "not_found",
        )
        await expect(
            await http.post(f"/api/rooms/{first['id']}/invites", headers=ann.headers),
            400,
            "not_a_group",
        )
    async with await psycopg.AsyncConnection.connect(schema_url) as conn:
        cur = await conn.execute("SELECT direct_key FROM rooms WHERE id = %s", (first["id"],))
        assert await cur.fetchone() == (f"{min(ann.id, bob.id)}:{max(ann.id, bob.id)}",)


async def test_join_by_invite(schema_url: str) -> None:
    ann, bob = await make_account(schema_url, "ann"), await make_account(schema_url, "bob")
    async with api_client(schema_url) as http:
        room = await expect(
            await http.post("/api/rooms", json={"name": "r"}, headers=ann.headers), 201
        )
        invite = await expect(
            await http.post(f"/api/rooms/{room['id']}/invites", headers=ann.headers), 201
        )
        assert len(invite["token"]) >= 32
        joined = await expect(
            await http.post(
                "/api/rooms/join", json={"token": invite["token"]}, headers=bob.headers
            ),
            200,
        )
        assert joined["id"] == room["id"]
        assert joined["role"] == "member"
        # Joining again is harmless.
        await expect(
            await http.post(
                "/api/rooms/join", json={"token": invite["token"]}, headers=bob.headers
            ),
            200,
        )
        for token in ("nope", invite["token"] + "x"):
            await expect(
                await http.post("/api/rooms/join", json={"token": token}, headers=bob.headers),
                404,
                "invalid_invite",
            )
        await expect(
            await http.post("/api/rooms/join", json={"token": "x" * 129}, headers=bob.headers),
            422,
            "invalid_input",
        )
    # Expired invites are refused; only the hash is stored.
    async with await psycopg.AsyncConnection.connect(schema_url) as conn:
        cur = await conn.execute("SELECT token_hash FROM room_invites")
        [(stored,)] = await cur.fetchall()
        assert invite["token"].encode() not in bytes(stored)
        await conn.execute("UPDATE room_invites SET expires_at = now() - interval '1 second'")
        await conn.commit()
    cat = await make_account(schema_url, "cat")
    async with api_client(schema_url) as http:
        await expect(
            await http.post(
                "/api/rooms/join", json={"token": invite["token"]}, headers=cat.headers
            ),
            404,
            "invalid_invite",
        )


async def test_leaving(schema_url: str) -> None:
    ann, bob = await make_account(schema_url, "ann"), await make_account(schema_url, "bob")
    async with api_client(schema_url) as http:
        room = await expect(
            await http.post("/api/rooms", json={"name": "r"}, headers=ann.headers), 201
        )
        rid = room["id"]
        await expect(
            await http.post(
                f"/api/rooms/{rid}/members", json={"user_id": bob.id}, headers=ann.headers
            ),
            201,
        )
        # The owner leaves: bob owns the room now.
        await expect(await http.delete(f"/api/rooms/{rid}/members/me", headers=ann.headers), 204)
        await expect(await http.get(f"/api/rooms/{rid}", headers=ann.headers), 404, "not_found")
        detail = await expect(await http.get(f"/api/rooms/{rid}", headers=bob.headers), 200)
        assert [(m["user_id"], m["role"]) for m in detail["members"]] == [(bob.id, "owner")]
        # The last member leaves: the room is gone.
        await expect(await http.delete(f"/api/rooms/{rid}/members/me", headers=bob.headers), 204)
        general = await global_room_id(schema_url)
        await expect(
            await http.delete(f"/api/rooms/{general}/members/me", headers=bob.headers),
            400,
            "cannot_leave",
        )
    async with await psycopg.AsyncConnection.connect(schema_url) as conn:
        cur = await conn.execute("SELECT count(*) FROM rooms WHERE id = %s", (rid,))
        assert await cur.fetchone() == (0,)


async def test_rooms_are_listed_by_activity_a_new_room_first(schema_url: str) -> None:
    ann = await make_account(schema_url, "ann")
    general = await global_room_id(schema_url)
    h = ann.headers
    async with api_client(schema_url) as http:
        old = await expect(await http.post("/api/rooms", json={"name": "Old"}, headers=h), 201)
        said = {"body": "hello"}
        await expect(await http.post(f"/api/rooms/{old['id']}/messages", json=said, headers=h), 201)
        new = await expect(await http.post("/api/rooms", json={"name": "New"}, headers=h), 201)
        listed = await expect(await http.get("/api/rooms", headers=h), 200)
        # No message yet, but made last: first, above the room with an older message.
        order = [r["id"] for r in listed]
        assert order.index(new["id"]) < order.index(old["id"]) < order.index(general)
        first = listed[0]
        assert first["last_message"] is None and first["activity_at"] == new["activity_at"]
        await expect(await http.post(f"/api/rooms/{old['id']}/messages", json=said, headers=h), 201)
        listed = await expect(await http.get("/api/rooms", headers=h), 200)
        assert [r["id"] for r in listed][:2] == [old["id"], new["id"]]
        assert listed[0]["activity_at"] == listed[0]["last_message"]["created_at"]
