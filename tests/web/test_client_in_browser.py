"""syncline-client.js in a real browser, at a moment the UI tests only hit by chance: a
subscription made after the socket opened but before the connect reply arrived."""

from __future__ import annotations

from helpers.live_server import LiveServer
from web.ui import Pages

# A WebSocket whose incoming frames wait until the page releases them: the connect reply is
# held back while the subscription is made.
SUBSCRIBE_WHILE_CONNECTING = """
async ([url, token]) => {
  const { SynclineClient } = await import('/web/syncline-client.js');
  let release;
  const released = new Promise((resolve) => (release = resolve));
  let opened;
  const open = new Promise((resolve) => (opened = resolve));
  class HeldReplies extends WebSocket {
    set onopen(fn) { super.onopen = (event) => { fn(event); opened(); }; }
    get onopen() { return super.onopen; }
    set onmessage(fn) { super.onmessage = (event) => released.then(() => fn(event)); }
    get onmessage() { return super.onmessage; }
  }
  const client = new SynclineClient(url, { token, WebSocket: HeldReplies });
  client.connect();
  await open;
  const sub = client.subscribe('orders');
  const subscribed = new Promise((resolve) => sub.on('subscribed', () => resolve('subscribed')));
  release();
  const timeout = new Promise((resolve) => setTimeout(() => resolve(sub.state), 3000));
  const outcome = await Promise.race([subscribed, timeout]);
  client.disconnect();
  return [client.state, outcome];
}
"""


async def test_a_subscription_made_while_the_connect_reply_is_on_its_way_is_sent(
    pages: Pages, web_server: LiveServer
) -> None:
    page = await pages.new("client")
    await page.goto(web_server.http_url + "/#/login")
    token = web_server.token("42", info={"username": "u42"})
    state, outcome = await page.evaluate(SUBSCRIBE_WHILE_CONNECTING, [web_server.ws_url, token])
    assert outcome == "subscribed"
    assert state == "disconnected"
