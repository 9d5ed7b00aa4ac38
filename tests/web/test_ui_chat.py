"""The chat in real browsers: two users talk in the global room (messages, typing, presence,
read receipts), one of them drops off the network and catches up, history loads on scroll,
messages are edited and deleted, groups and direct rooms are made, joined and left, a room whose
subscription the server refused for a while catches up."""

from __future__ import annotations

import asyncio
import json
import re
import secrets

import pytest
import websockets
from playwright.async_api import Page, Route, WebSocketRoute, expect

from helpers.accounts import register_user
from helpers.live_server import LiveServer
from web.ui import Pages, api, login, messages_with, wait_connected


async def send(page: Page, text: str) -> None:
    await page.get_by_test_id("message-input").fill(text)
    await page.get_by_test_id("message-send").click()


async def general_id(page: Page) -> int:
    await expect(page).to_have_url(re.compile(r"#/chat/\d+$"))
    return int(page.url.rsplit("/", 1)[1])


async def test_two_users_chat_with_typing_presence_and_receipts(pages: Pages) -> None:
    ann, ann_pair = await pages.signed_in("ann")
    ben, _ = await pages.signed_in("ben")
    room = await general_id(ann)
    assert await general_id(ben) == room
    await expect(ann.locator("#conv-title")).to_have_text("General")

    # Presence: both are in the room.
    await expect(ann.get_by_test_id("room-online")).to_have_text(re.compile(r"2 online"))
    await ann.get_by_role("button", name="Members").click()
    await expect(ann.get_by_test_id("member").filter(has_text="Ben")).to_have_attribute(
        "data-online", "true"
    )

    # Typing: Ann types, Ben sees it; it goes away when her message arrives.
    await ann.get_by_test_id("message-input").press_sequentially("Hello Ben", delay=20)
    await expect(ben.get_by_test_id("typing-indicator")).to_have_text("Ann is typing…")
    await ann.get_by_test_id("message-send").click()
    await expect(ann.get_by_test_id("message-input")).to_have_value("")

    # Ann's own message: shown at once, confirmed when the captured row comes back.
    mine = messages_with(ann, "Hello Ben")
    await expect(mine).to_have_count(1)
    await expect(mine).to_have_attribute("data-state", "confirmed")
    await expect(messages_with(ben, "Hello Ben")).to_have_count(1)
    await expect(messages_with(ben, "Hello Ben")).to_have_attribute(
        "data-author", ann_pair["user"]["username"]
    )
    await expect(ben.get_by_test_id("typing-indicator")).to_have_text("")

    # Ben has the room open and scrolled down: he has read it, and Ann sees it.
    await expect(mine.get_by_test_id("seen-by")).to_have_text("Seen by Ben")

    await send(ben, "Hi Ann! 👋")
    await expect(messages_with(ann, "Hi Ann! 👋")).to_have_count(1)
    await expect(messages_with(ben, "Hi Ann! 👋")).to_have_attribute("data-state", "confirmed")
    await expect(messages_with(ben, "Hi Ann! 👋").get_by_test_id("seen-by")).to_have_text(
        "Seen by Ann"
    )
    # The room list shows the last message.
    await expect(
        ann.get_by_test_id("room-item").filter(has_text="General").get_by_test_id("room-preview")
    ).to_have_text("Ben: Hi Ann! 👋")

    # Ben closes his page: Ann sees him leave the room's presence.
    await ben.context.close()
    pages.opened = [(n, p) for n, p in pages.opened if p is not ben]
    await expect(ann.get_by_test_id("room-online")).to_have_text(re.compile(r"1 online"))


async def test_a_page_that_was_offline_catches_up_without_gaps_or_duplicates(
    pages: Pages,
) -> None:
    ann, _ = await pages.signed_in("ann")
    ben, _ = await pages.signed_in("ben")
    room = await general_id(ann)
    await send(ann, "before the drop")
    await expect(messages_with(ben, "before the drop")).to_have_count(1)
    # Record how Ben's room subscription comes back (the page's own module instance: a
    # dynamic import of the same URL returns it).
    await ben.evaluate(
        """async (channel) => {
            const realtime = await import('/web/app/realtime.js');
            window.resubscribed = [];
            realtime.subscription(channel).on('subscribed', (ctx) => window.resubscribed.push(
                { recovering: ctx.wasRecovering, recovered: ctx.recovered }));
        }""",
        f"room:{room}",
    )

    # Chromium's offline emulation fires the page's `offline` event (and fails new
    # connections); the page closes its socket on that event, so the drop is real.
    await ben.context.set_offline(True)
    await expect(ben.get_by_test_id("connection-status")).to_have_attribute("data-state", "offline")
    for i in range(1, 6):
        await send(ann, f"while away {i}")
    for i in range(1, 6):
        await expect(messages_with(ann, f"while away {i}")).to_have_attribute(
            "data-state", "confirmed"
        )
    await expect(messages_with(ben, "while away")).to_have_count(0)

    await ben.context.set_offline(False)
    await wait_connected(ben)
    for i in range(1, 6):
        await expect(messages_with(ben, f"while away {i}")).to_have_count(1)
    texts = await ben.get_by_test_id("message-body").all_inner_texts()
    assert texts == ["before the drop"] + [f"while away {i}" for i in range(1, 6)]
    ids = await ben.get_by_test_id("message-item").evaluate_all(
        "items => items.map(i => Number(i.dataset.id))"
    )
    assert ids == sorted(set(ids))
    # They came from the channel's history by the saved offset, not from a reload.
    assert await ben.evaluate("window.resubscribed") == [{"recovering": True, "recovered": True}]

    # And the live stream goes on after the recovery.
    await send(ann, "after the drop")
    await expect(messages_with(ben, "after the drop")).to_have_count(1)


async def test_history_loads_on_scroll_up_and_own_messages_are_edited_and_deleted(
    pages: Pages, web_server: LiveServer
) -> None:
    ann, ann_pair = await pages.signed_in("ann")
    room = await general_id(ann)
    token = ann_pair["access_token"]
    for i in range(1, 121):
        await api(
            web_server, "POST", f"/api/rooms/{room}/messages", token, json={"body": f"old {i}"}
        )
    ben, _ = await pages.signed_in("ben")
    await expect(messages_with(ben, "old 120")).to_be_visible()
    items = ben.get_by_test_id("message-item")
    count = await items.count()
    assert count < 120  # one page, the rest on demand
    scroller = ben.locator(".scroller")
    for _ in range(10):
        if await items.count() == 120:
            break
        await scroller.evaluate("el => { el.scrollTop = 0; }")
        await ben.wait_for_timeout(300)
    await expect(items).to_have_count(120)
    await expect(ben.get_by_text("This is the beginning of the conversation.")).to_be_visible()
    texts = await ben.get_by_test_id("message-body").all_inner_texts()
    assert texts == [f"old {i}" for i in range(1, 121)]

    # Ann edits and deletes her own messages; Ben sees both live.
    await ben.locator(".scroller").evaluate("el => { el.scrollTop = el.scrollHeight; }")
    await send(ann, "typo mesage")
    target = messages_with(ann, "typo mesage")
    await expect(target).to_have_attribute("data-state", "confirmed")
    await target.hover()
    await target.get_by_test_id("message-edit").click()
    await ann.get_by_test_id("edit-input").fill("fixed message")
    await ann.get_by_test_id("edit-input").press("Enter")
    await expect(messages_with(ben, "fixed message")).to_contain_text("(edited)")
    await expect(messages_with(ben, "typo mesage")).to_have_count(0)

    fixed = messages_with(ann, "fixed message")
    await fixed.hover()
    await fixed.get_by_test_id("message-delete").click()
    await ann.get_by_test_id("confirm-ok").click()
    await expect(messages_with(ben, "fixed message")).to_have_count(0)
    await expect(ben.get_by_text("This message was deleted.")).to_have_count(1)
    # Ben can't edit Ann's messages.
    await expect(messages_with(ben, "old 120").get_by_test_id("message-edit")).to_have_count(0)


async def hold_room_reads(page: Page, until: asyncio.Event) -> None:
    """Answer the page's GET /api/rooms/{id} with the room as it was when asked, but only once
    `until` is set: a snapshot older than what the channels deliver meanwhile, the race a room
    list must survive (it lost the first message of a new direct room to it)."""

    async def handler(route: Route) -> None:
        if route.request.method != "GET":
            await route.continue_()
            return
        response = await route.fetch()
        await until.wait()
        await route.fulfill(response=response)

    await page.route(re.compile(r"/api/rooms/\d+$"), handler)


async def wait_logged(server: LiveServer, channel: str, text: str) -> None:
    """Until a publication containing `text` is in the channel's log (delivered to anyone
    subscribed)."""
    for _ in range(200):
        history = await server.runtime.engine.history(channel, limit=100)
        if any(text.encode() in pub.data for pub in history.publications):
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"{text!r} never reached {channel}")


async def test_groups_invites_direct_rooms_and_leaving(
    pages: Pages, web_server: LiveServer
) -> None:
    ann, _ = await pages.signed_in("ann")
    ben, ben_pair = await pages.signed_in("ben")
    ben_username = ben_pair["user"]["username"]

    await ann.get_by_test_id("new-group").click()
    await ann.get_by_test_id("group-name").fill("Book club")
    await ann.get_by_test_id("new-group-submit").click()
    await expect(ann.locator("#conv-title")).to_have_text("Book club")
    # A room made now is the newest activity: at the top before its first message.
    await expect(ann.get_by_test_id("room-item").first).to_contain_text("Book club")
    await ann.get_by_test_id("invite").click()
    link = await ann.get_by_test_id("invite-link").input_value()
    assert "#/join?token=" in link
    await ann.keyboard.press("Escape")

    await ben.goto(link)
    await expect(ben.get_by_test_id("join")).to_be_visible()
    await ben.get_by_test_id("join-submit").click()
    await expect(ben.locator("#conv-title")).to_have_text("Book club")
    await wait_connected(ben)
    await send(ben, "Thanks for the invite")
    await expect(messages_with(ann, "Thanks for the invite")).to_have_count(1)

    # A direct conversation: Ann finds Ben; Ben's list gets the room through his own channel.
    # Both pages read the room over REST while its first message is written, and get their
    # answers only after the message is on the room's channel: the stale snapshot must not
    # hide it (Ann's preview), nor may the message fall between it and the subscription
    # (Ben's badge).
    written = asyncio.Event()
    await hold_room_reads(ann, written)
    await hold_room_reads(ben, written)
    await ann.get_by_test_id("new-direct").click()
    await ann.get_by_test_id("user-search").fill(ben_username[:5])
    await ann.locator(f"[data-testid=user-result][data-username='{ben_username}']").click()
    await expect(ann.locator("#conv-title")).to_have_text("Ben")
    direct_id = await general_id(ann)
    await send(ann, "Psst, a secret")
    await expect(messages_with(ann, "Psst, a secret")).to_have_attribute("data-state", "confirmed")
    await wait_logged(web_server, f"room:{direct_id}", "Psst, a secret")
    written.set()
    mine = ann.get_by_test_id("room-item").first
    await expect(mine).to_contain_text("Ben")
    await expect(mine.get_by_test_id("room-preview")).to_have_text("You: Psst, a secret")
    direct = ben.get_by_test_id("room-item").filter(has_text="Ann")
    await expect(direct).to_be_visible()
    await expect(direct.get_by_test_id("unread-badge")).to_have_text("1")
    await expect(ben.get_by_test_id("room-item").first).to_contain_text("Ann")
    for page in (ann, ben):  # later reads go straight through
        await page.unroute_all(behavior="wait")
    await direct.click()
    await expect(messages_with(ben, "Psst, a secret")).to_have_count(1)
    await expect(direct.get_by_test_id("unread-badge")).to_have_count(0)

    # Ben leaves the group: gone from his list; Ann's member count drops.
    await ben.get_by_test_id("room-item").filter(has_text="Book club").click()
    # The room is open before its Leave is clicked: on a busy machine the click can land on
    # the previous room's button while the page switches (and leave the direct room instead).
    await expect(ben.locator("#conv-title")).to_have_text("Book club")
    await ben.get_by_test_id("leave-room").click()
    await expect(ben.get_by_test_id("confirm-dialog")).to_contain_text("Leave Book club?")
    await ben.get_by_test_id("confirm-ok").click()
    await expect(ben.get_by_test_id("room-item").filter(has_text="Book club")).to_have_count(0)
    await ann.get_by_test_id("room-item").filter(has_text="Book club").click()
    await expect(ann.get_by_test_id("room-online")).to_have_text(re.compile(r"^1 member\b"))


async def test_a_phone_shows_the_list_then_the_room(pages: Pages) -> None:
    ann, _ = await pages.signed_in("ann", width=390, height=780)
    await expect(ann).to_have_url(re.compile(r"#/chat$"))
    general = ann.get_by_test_id("room-item").filter(has_text="General")
    await expect(general).to_be_visible()
    await expect(ann.get_by_test_id("message-input")).to_be_hidden()
    await general.click()
    await expect(ann.get_by_test_id("message-input")).to_be_visible()
    await expect(ann.get_by_test_id("room-item").first).to_be_hidden()
    await send(ann, "from my phone")
    await expect(messages_with(ann, "from my phone")).to_have_attribute("data-state", "confirmed")
    await ann.get_by_role("link", name="Back to the chats").click()
    await expect(general.get_by_test_id("room-preview")).to_have_text("You: from my phone")


async def test_a_dropped_connection_shows_reconnecting_and_misses_nothing(
    pages: Pages, web_server: LiveServer
) -> None:
    ann, pair = await pages.signed_in("ann")
    room = await general_id(ann)
    await ann.evaluate(
        """async () => {
            const realtime = await import('/web/app/realtime.js');
            window.statuses = [];
            realtime.onStatus((status) => window.statuses.push(status));
        }"""
    )
    gateway = web_server.runtime.gateway
    assert gateway is not None
    # The server goes away for a moment (3001 shutdown: the client reconnects) while a
    # message is written.
    for conn in list(gateway.connections):
        conn.close(3001)
    await api(
        web_server,
        "POST",
        f"/api/rooms/{room}/messages",
        pair["access_token"],
        json={"body": "written during the drop"},
    )
    await wait_connected(ann)
    await expect(messages_with(ann, "written during the drop")).to_have_count(1)
    statuses = await ann.evaluate("window.statuses")
    assert statuses[0] == "connected"
    assert "reconnecting" in statuses
    assert statuses[-1] == "connected"
    await expect(ann.get_by_test_id("connection-status")).to_have_text("Connected")


async def test_a_message_goes_over_the_socket_and_over_rest_when_the_server_lacks_the_rpc(
    pages: Pages, web_server: LiveServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """chat.send while connected (the cheaper path, issue 19); REST when the RPC is missing."""
    ann, _ = await pages.signed_in("ann")
    await general_id(ann)
    posts: list[str] = []
    ann.on(
        "request",
        lambda request: (
            posts.append(request.url)
            if request.method == "POST" and re.search(r"/api/rooms/\d+/messages$", request.url)
            else None
        ),
    )
    await send(ann, "over the socket")
    await expect(messages_with(ann, "over the socket")).to_have_attribute("data-state", "confirmed")
    assert posts == []

    # A server without chat.send answers 108: the same message goes over REST, and so do the
    # next ones.
    rpc = web_server.runtime.rpc
    lookup = rpc.get
    monkeypatch.setattr(
        rpc, "get", lambda method: None if method == "chat.send" else lookup(method)
    )
    await send(ann, "over REST")
    await expect(messages_with(ann, "over REST")).to_have_attribute("data-state", "confirmed")
    await expect(messages_with(ann, "over REST")).to_have_count(1)
    assert len(posts) == 1
    monkeypatch.undo()
    await send(ann, "still over REST")
    await expect(messages_with(ann, "still over REST")).to_have_attribute("data-state", "confirmed")
    assert len(posts) == 2


async def test_a_member_cannot_show_someone_else_as_typing(pages: Pages) -> None:
    """Who is typing comes from the server-stamped `info`, never from a publication's data."""
    ann, ann_pair = await pages.signed_in("ann")
    ben, _ = await pages.signed_in("ben")
    room = await general_id(ben)
    carl = await register_user(
        pages.server.http_url, f"carl_{secrets.token_hex(3)}", display_name="Carl"
    )
    async with websockets.connect(pages.server.ws_url) as ws:
        await ws.send(json.dumps({"id": 1, "connect": {"token": carl["access_token"]}}))
        await ws.send(json.dumps({"id": 2, "subscribe": {"channel": f"typing:{room}"}}))
        forged = {
            "type": "typing",
            "user_id": ann_pair["user"]["id"],
            "username": ann_pair["user"]["username"],
            "typing": True,
        }
        await ws.send(
            json.dumps({"id": 3, "publish": {"channel": f"typing:{room}", "data": forged}})
        )
        replies: dict[int, dict[str, object]] = {}
        while 3 not in replies:
            for line in str(await asyncio.wait_for(ws.recv(), 5)).split("\n"):
                reply = json.loads(line)
                if "id" in reply:
                    replies[reply["id"]] = reply
        assert "error" not in replies[3], replies[3]
        # Ben sees the publisher, Carl, as typing: never Ann, whom the data names.
        await expect(ben.get_by_test_id("typing-indicator")).to_have_text("Carl is typing…")
    await expect(ann.get_by_test_id("typing-indicator")).not_to_have_text("Ann is typing…")


async def test_a_room_subscription_refused_for_a_while_heals(
    pages: Pages, web_server: LiveServer
) -> None:
    """While the server refuses a room's subscription (as it did in the moment a membership is
    committed but not yet visible), the page sends a message and another member writes one:
    neither reaches the page on the channel. Once the retried subscription is let in, the page
    catches up (the other's message appears) and shows its own as delivered, not 'sent' for
    good."""
    refused: set[str] = set()
    known: set[str] = set()  # the rooms the page had before the gate closed
    blocking = {"on": False}

    async def gate(ws: WebSocketRoute) -> None:
        server = ws.connect_to_server()

        def from_page(message: str | bytes) -> None:
            if isinstance(message, bytes) or not blocking["on"]:
                server.send(message)
                return
            passed = []
            for line in message.split("\n"):
                command = json.loads(line) if line.strip() else {}
                channel = command.get("subscribe", {}).get("channel", "")
                # A room made after the gate closed: its subscribe is answered 103 here.
                if channel.startswith("room:") and channel not in known:
                    refused.add(channel)
                    error = {"code": 103, "message": "permission denied"}
                    ws.send(json.dumps({"id": command["id"], "error": error}))
                else:
                    passed.append(line)
            if passed:
                server.send("\n".join(passed))

        ws.on_message(from_page)
        server.on_message(ws.send)

    ann_name = f"ann_{secrets.token_hex(3)}"
    ann_pair = await register_user(web_server.http_url, ann_name, display_name="Ann")
    ben_pair = await register_user(
        web_server.http_url, f"ben_{secrets.token_hex(3)}", display_name="Ben"
    )
    ann = await pages.new("ann")
    await ann.route_web_socket(re.compile(r".*/connection/websocket.*"), gate)
    await login(ann, web_server, ann_name)
    await wait_connected(ann)
    rooms = await api(web_server, "GET", "/api/rooms", ann_pair["access_token"])
    known.update(f"room:{room['id']}" for room in rooms)
    blocking["on"] = True

    await ann.get_by_test_id("new-group").click()
    await ann.get_by_test_id("group-name").fill("Gap room")
    await ann.get_by_test_id("new-group-submit").click()
    await expect(ann.locator("#conv-title")).to_have_text("Gap room")
    room_id = await general_id(ann)
    for _ in range(100):
        if f"room:{room_id}" in refused:
            break
        await asyncio.sleep(0.05)
    assert f"room:{room_id}" in refused
    await send(ann, "Sent while refused")
    mine = messages_with(ann, "Sent while refused")
    await expect(mine).to_have_attribute("data-state", "sent")
    await api(
        web_server,
        "POST",
        f"/api/rooms/{room_id}/members",
        ann_pair["access_token"],
        json={"user_id": ben_pair["user"]["id"]},
    )
    await api(
        web_server,
        "POST",
        f"/api/rooms/{room_id}/messages",
        ben_pair["access_token"],
        json={"body": "Written while refused"},
    )
    await wait_logged(web_server, f"room:{room_id}", "Written while refused")
    await asyncio.sleep(0.5)
    await expect(messages_with(ann, "Written while refused")).to_have_count(0)

    blocking["on"] = False  # the next retry (within 4 s) is let through
    await expect(messages_with(ann, "Written while refused")).to_have_count(1, timeout=10_000)
    await expect(mine).to_have_attribute("data-state", "confirmed")
    await send(ann, "Sent once subscribed")
    await expect(messages_with(ann, "Sent once subscribed")).to_have_attribute(
        "data-state", "confirmed"
    )
