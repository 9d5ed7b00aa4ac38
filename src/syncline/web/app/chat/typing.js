// "… is typing" for the open room: who is typing (from typing:{room_id} publications) and
// sending our own typing events, throttled.

import * as directory from './directory.js';
import { displayName } from '../dom.js';
import * as realtime from '../realtime.js';

const SHOWN_MS = 5000; // a typist is shown this long after their last event
const SEND_EVERY_MS = 2500;

export class TypingTracker {
  /** @param {number} me @param {() => void} onChange called when the list of typists changes */
  constructor(me, onChange) {
    this.me = me;
    this.onChange = onChange;
    /** @type {Map<number, {name: string, until: number}>} */
    this.people = new Map();
    this.lastSent = 0;
    this.mode = 'rpc'; // falls back to a client publish when the server has no chat.typing
    this.timer = setInterval(() => this.expire(), 1000);
  }

  stop() {
    clearInterval(this.timer);
  }

  /** Forgets everyone (another room was opened). */
  reset() {
    this.people.clear();
    this.lastSent = 0;
    this.onChange();
  }

  /**
   * A publication of typing:{room_id}: the RPC's {type: 'typing', …}, or a client publication
   * {typing: true|false}. Who is typing comes only from `info`, which the server stamps from
   * the sender's token: a member can put any user_id or name in `data`, never in `info`.
   */
  note(pub) {
    const data = pub.data ?? {};
    const userId = Number(pub.info?.user);
    if (!userId || userId === this.me) return;
    // The token's info (signed by the server) names the sender at once; the directory may
    // still be fetching them, or hold a placeholder if that fetch failed.
    const known = directory.lookup(userId);
    const name =
      pub.info?.conn_info?.display_name ||
      (known && displayName(known)) ||
      pub.info?.conn_info?.username ||
      'Someone';
    if (data.typing === false) this.people.delete(userId);
    else this.people.set(userId, { name, until: Date.now() + SHOWN_MS });
    this.onChange();
  }

  /** Their message arrived: they are done typing it. */
  clear(userId) {
    if (this.people.delete(Number(userId))) this.onChange();
  }

  names() {
    return [...this.people.values()].map((t) => t.name);
  }

  expire() {
    const now = Date.now();
    let changed = false;
    for (const [id, t] of this.people) {
      if (t.until <= now) {
        this.people.delete(id);
        changed = true;
      }
    }
    if (changed) this.onChange();
  }

  /** Tells the room we are typing, at most every SEND_EVERY_MS. */
  async send(roomId) {
    const now = Date.now();
    if (now - this.lastSent < SEND_EVERY_MS || realtime.getStatus() !== 'connected') return;
    this.lastSent = now;
    if (this.mode === 'rpc') {
      try {
        await realtime.rpc('chat.typing', { room_id: roomId });
        return;
      } catch (err) {
        if (err?.code !== 108) return; // rate limited or offline: skip this one
        this.mode = 'publish'; // no such RPC method on this server
      }
    }
    try {
      await realtime.subscription(`typing:${roomId}`)?.publish({ typing: true });
    } catch {
      // ephemeral: a lost typing event is harmless
    }
  }

  /** The message was sent: the next keystroke announces typing again at once. */
  sent() {
    this.lastSent = 0;
  }
}
