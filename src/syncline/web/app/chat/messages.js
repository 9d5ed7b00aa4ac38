// The messages of one room as the client knows them: confirmed rows by id (so a message that
// arrives twice — REST reply, live publication, recovery replay — is shown once) plus the
// optimistic ones still on their way (keyed by client_msg_id until the server's row replaces
// them). Pure data, no DOM.

const rank = (m) => [m.deleted_at ? 1 : 0, Date.parse(m.edited_at ?? '') || 0];

/** True when `next` is at least as new a version of a row as `prev`. */
function newer(next, prev) {
  const [a1, a2] = rank(next);
  const [b1, b2] = rank(prev);
  return a1 > b1 || (a1 === b1 && a2 >= b2);
}

export class MessageStore {
  constructor() {
    /** @type {Map<number, object>} */
    this.byId = new Map();
    /** @type {Map<string, object>} optimistic messages by client_msg_id */
    this.pending = new Map();
    /** ids seen in the room's live stream (the capture published the row) */
    this.streamed = new Set();
    /** client_msg_ids sent from this page: only those show "sent" until the stream has them */
    this.sentHere = new Set();
    this.hasMore = true; // older messages may exist on the server
    this.loaded = false; // the first page arrived
    this.version = 0; // bumps on every change: the view re-renders when it moved
  }

  /**
   * Adds or updates a message row; `fromStream`: it came through the room's channel.
   * @returns {boolean} whether anything changed
   */
  upsert(row, { fromStream = false } = {}) {
    const id = Number(row.id);
    if (!Number.isFinite(id)) return false;
    let changed = false;
    if (row.client_msg_id && this.pending.has(row.client_msg_id)) {
      const mine = this.pending.get(row.client_msg_id);
      if (mine.user_id === row.user_id) {
        this.pending.delete(row.client_msg_id);
        changed = true;
      }
    }
    if (fromStream && !this.streamed.has(id)) {
      this.streamed.add(id);
      changed = true;
    }
    const prev = this.byId.get(id);
    if (!prev || newer(row, prev)) {
      const next = { ...prev, ...row, id };
      if (!prev || JSON.stringify(prev) !== JSON.stringify(next)) {
        this.byId.set(id, next);
        changed = true;
      }
    }
    if (changed) this.version++;
    return changed;
  }

  /** Drops a row deleted for good (a hard DELETE in the database). */
  remove(id) {
    const had = this.byId.delete(Number(id));
    if (had) this.version++;
    return had;
  }

  /** An optimistic message, shown at once while the server stores it. */
  addPending({ client_msg_id, room_id, user_id, body }) {
    this.sentHere.add(client_msg_id);
    this.pending.set(client_msg_id, {
      id: null,
      client_msg_id,
      room_id,
      user_id,
      body,
      created_at: new Date().toISOString(),
      edited_at: null,
      deleted_at: null,
      state: 'sending',
    });
    this.version++;
  }

  setPendingState(clientMsgId, state) {
    const msg = this.pending.get(clientMsgId);
    if (!msg || msg.state === state) return;
    msg.state = state;
    this.version++;
  }

  /**
   * The room's subscription started afresh after a gap: what was sent from here until now may
   * have been published while nothing listened, never to be streamed here. Each such row is
   * on the channel already or will be in a moment (it is committed, or its send is on its
   * way), so it shows as confirmed; only later sends wait for the stream.
   */
  settleSent() {
    if (!this.sentHere.size) return;
    this.sentHere.clear();
    this.version++;
  }

  /** Messages in display order: by id, then the pending ones in the order they were sent. */
  list() {
    const rows = [...this.byId.values()].sort((a, b) => a.id - b.id);
    return rows.concat([...this.pending.values()]);
  }

  oldestId() {
    let min = null;
    for (const id of this.byId.keys()) if (min === null || id < min) min = id;
    return min;
  }

  newestId() {
    let max = null;
    for (const id of this.byId.keys()) if (max === null || id > max) max = id;
    return max;
  }

  /**
   * The state shown next to a message: sending / failed, sent (stored, not yet seen on the live
   * channel) or confirmed (the capture published its row; every message loaded from history).
   */
  stateOf(msg) {
    if (msg.id === null) return msg.state;
    if (this.streamed.has(msg.id) || !this.sentHere.has(msg.client_msg_id)) return 'confirmed';
    return 'sent';
  }
}

/**
 * Where each reader's "seen" marker goes: for every member other than `me`, the newest loaded
 * message they have read (id ≤ their last_read_message_id) that they did not write.
 * @returns {Map<number, object[]>} message id → members
 */
export function seenMarkers(messages, members, me) {
  const ids = messages.filter((m) => m.id !== null && !m.deleted_at).map((m) => m.id);
  const authors = new Map(messages.map((m) => [m.id, m.user_id]));
  const markers = new Map();
  for (const member of members) {
    if (member.user_id === me || member.last_read_message_id == null) continue;
    const limit = Number(member.last_read_message_id);
    let at = null;
    for (let i = ids.length - 1; i >= 0; i--) {
      if (ids[i] <= limit) {
        at = ids[i];
        break;
      }
    }
    if (at === null || authors.get(at) === member.user_id) continue;
    if (!markers.has(at)) markers.set(at, []);
    markers.get(at).push(member);
  }
  return markers;
}
