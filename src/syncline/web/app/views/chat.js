// The chat screen: the room list, one open room (history, live messages, typing, presence,
// read receipts) and the composer. Rooms are loaded over REST; everything after that arrives
// on the live channels (room:{id} for each room, typing:{id} for the open one, user:{me}).

import { request } from '../api.js';
import { MessageStore, seenMarkers } from '../chat/messages.js';
import * as directory from '../chat/directory.js';
import { h, replace, shortTime } from '../dom.js';
import { memberItem, memberName, messageElement, roomAvatar, roomItem, roomTitle, typingText } from '../chat/elements.js';
import * as realtime from '../realtime.js';
import { redirect } from '../router.js';
import { currentUser } from '../session.js';
import { confirm, toast } from '../ui.js';
import { TypingTracker } from '../chat/typing.js';
import { sendMessage } from '../chat/send.js';
import * as dialogs from './chat-dialogs.js';

const PAGE = 50;
const CATCH_UP_PAGES = 20; // ×100 messages fetched after a gap, then the newest page wins
const MAX_BODY = 4000;
const LIVE_ROOMS = 200;
const GROUP_WINDOW_MS = 5 * 60 * 1000; // consecutive messages of one author share a header
const narrow = window.matchMedia('(max-width: 760px)');

function newClientMsgId() {
  if (crypto.randomUUID) return crypto.randomUUID();
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  return [...bytes].map((b) => b.toString(16).padStart(2, '0')).join('');
}

export class ChatView {
  constructor(root, route) {
    this.root = root;
    this.me = Number(currentUser()?.id);
    /** @type {Map<number, {room: any, store: MessageStore, members: Map<number, any>, presence: Map<string, number>, detailLoaded: boolean, unwatch: (() => void) | null}>} */
    this.rooms = new Map();
    /** @type {Set<number>} rooms whose detail reload is scheduled */
    this.pendingDetail = new Set();
    /** @type {Set<number>} rooms learned from the user channel, being subscribed and read */
    this.learning = new Set();
    this.activeId = null;
    this.nodes = new Map(); // message key → element of the open room
    this.typing = new TypingTracker(this.me, () => this.renderTyping());
    this.retryQueue = new Set(); // 'roomId:clientMsgId' of sends that failed for the network
    this.loadingOlder = false;
    this.ready = false;
    this.route = route;
    this.cleanups = [];
    this.renderQueued = false;
    this.readTimer = null;
    this.build();

    this.cleanups.push(
      realtime.watch(
        `user:${this.me}`,
        {
          publication: (pub) => this.onUserPublication(pub.data),
          subscribed: (ctx) => {
            if (ctx.gap) this.loadRooms();
          },
        },
        { serverSide: true },
      ),
      directory.onUser(() => this.scheduleRender()),
      realtime.onStatus((status) => {
        if (status === 'connected') this.retryFailedSends();
      }),
    );
    const onVisible = () => this.scheduleRead();
    document.addEventListener('visibilitychange', onVisible);
    window.addEventListener('focus', onVisible);
    const onOnline = () => this.retryFailedSends();
    window.addEventListener('online', onOnline);
    const onNarrow = () => this.update(this.route);
    narrow.addEventListener('change', onNarrow);
    this.cleanups.push(() => {
      document.removeEventListener('visibilitychange', onVisible);
      window.removeEventListener('focus', onVisible);
      window.removeEventListener('online', onOnline);
      narrow.removeEventListener('change', onNarrow);
      this.typing.stop();
      clearTimeout(this.readTimer);
    });
    this.loadRooms().then(() => {
      this.ready = true;
      this.update(this.route);
    });
  }

  destroy() {
    this.destroyed = true;
    for (const fn of this.cleanups) fn();
    this.unwatchTyping?.();
    for (const entry of this.rooms.values()) entry.unwatch?.();
    this.rooms.clear();
  }

  // -- layout -------------------------------------------------------------------------------

  build() {
    this.roomList = h('ul', { class: 'room-list', role: 'list', 'aria-label': 'Rooms' });
    const sidebar = h(
      'aside',
      { class: 'sidebar', 'aria-label': 'Conversations' },
      h(
        'div',
        { class: 'sidebar-head' },
        h('h2', {}, 'Chats'),
        h(
          'div',
          { class: 'sidebar-actions' },
          h('button', { type: 'button', class: 'btn btn-sm btn-primary', 'data-testid': 'new-group', onclick: () => this.createGroup() }, '+ Group'),
          h('button', { type: 'button', class: 'btn btn-sm btn-secondary', 'data-testid': 'new-direct', onclick: () => this.startDirect() }, '+ Direct'),
          h('button', { type: 'button', class: 'btn btn-sm btn-ghost', 'data-testid': 'join-room', onclick: () => this.join() }, 'Join'),
        ),
      ),
      this.roomList,
    );

    this.title = h('h2', { class: 'conv-title', id: 'conv-title' });
    this.subtitle = h('p', { class: 'conv-subtitle', 'data-testid': 'room-online' });
    this.headerActions = h('div', { class: 'conv-actions' });
    this.membersToggle = h('button', {
      type: 'button',
      class: 'btn btn-sm btn-ghost',
      'aria-expanded': 'false',
      'aria-controls': 'members-panel',
      onclick: () => this.toggleMembers(),
    }, 'Members');
    const header = h(
      'header',
      { class: 'conv-head' },
      h('a', { class: 'back-link', href: '#/chat', 'aria-label': 'Back to the chats' }, '‹'),
      this.roomAvatar = h('span', { class: 'conv-avatar' }),
      h('div', { class: 'conv-heading' }, this.title, this.subtitle),
      this.headerActions,
    );
    this.olderStatus = h('div', { class: 'older', role: 'status' });
    this.messageList = h('ol', { class: 'messages', 'aria-label': 'Messages' });
    this.scroller = h(
      'div',
      { class: 'scroller', role: 'log', 'aria-live': 'polite', 'aria-labelledby': 'conv-title', tabindex: '0' },
      this.olderStatus,
      this.messageList,
    );
    this.scroller.addEventListener('scroll', () => this.onScroll(), { passive: true });
    this.jumpButton = h('button', { type: 'button', class: 'jump', hidden: true, onclick: () => this.scrollToBottom(true) }, 'New messages ↓');
    this.membersPanel = h('aside', { class: 'members-panel', id: 'members-panel', 'aria-label': 'Members', hidden: true });
    this.typingLine = h('div', { class: 'typing', 'data-testid': 'typing-indicator', 'aria-live': 'polite' });
    this.input = h('textarea', {
      id: 'message-input',
      rows: '1',
      maxlength: String(MAX_BODY),
      placeholder: 'Write a message…',
      'data-testid': 'message-input',
      autocomplete: 'off',
    });
    this.input.addEventListener('keydown', (event) => this.onComposerKey(event));
    this.input.addEventListener('input', () => {
      this.autosize();
      if (this.input.value.trim() && this.activeId !== null) this.typing.send(this.activeId);
    });
    this.composer = h(
      'form',
      { class: 'composer', 'aria-label': 'Send a message' },
      h('label', { class: 'sr-only', for: 'message-input' }, 'Message'),
      this.input,
      h('button', { type: 'submit', class: 'btn btn-primary send', 'data-testid': 'message-send', 'aria-label': 'Send' }, 'Send'),
    );
    this.composer.addEventListener('submit', (event) => {
      event.preventDefault();
      this.send();
    });
    this.conversation = h(
      'section',
      { class: 'conversation', 'aria-labelledby': 'conv-title' },
      header,
      h('div', { class: 'conv-body' }, h('div', { class: 'conv-main' }, this.scroller, this.jumpButton), this.membersPanel),
      this.typingLine,
      this.composer,
    );
    this.placeholder = h('div', { class: 'conv-empty' }, h('p', {}, 'Pick a conversation on the left.'));
    this.el = h('div', { class: 'chat', 'data-pane': 'list' }, sidebar, this.conversation, this.placeholder);
    replace(this.root, this.el);
  }

  // -- routing ------------------------------------------------------------------------------

  async update(route) {
    this.route = route;
    if (!this.ready || this.destroyed) return;
    if (route.name === 'join') {
      const token = route.query.get('token') || '';
      redirect('#/chat');
      const room = await dialogs.joinByToken(token);
      if (room) this.openNewRoom(room);
      return;
    }
    const id = Number(route.params.id);
    if (!route.params.id) {
      if (narrow.matches) {
        this.el.dataset.pane = 'list';
        this.activate(null);
        return;
      }
      const first = this.global() ?? this.sortedRooms()[0];
      if (first) redirect(`#/chat/${first.room.id}`);
      else this.activate(null);
      return;
    }
    if (!this.rooms.has(id)) {
      try {
        this.addRoom(await request('GET', `/api/rooms/${id}`));
      } catch {
        toast('That conversation does not exist or you are not in it.', 'error');
        redirect('#/chat');
        return;
      }
    }
    this.el.dataset.pane = 'room';
    this.activate(id);
  }

  global() {
    return [...this.rooms.values()].find((e) => e.room.kind === 'global');
  }

  // -- rooms --------------------------------------------------------------------------------

  async loadRooms() {
    let rooms;
    try {
      rooms = await request('GET', '/api/rooms');
    } catch (err) {
      if (err.status !== 401) toast(`Cannot load your rooms: ${err.message}`, 'error');
      return;
    }
    if (this.destroyed) return;
    const seen = new Set();
    for (const room of rooms) {
      seen.add(room.id);
      this.addRoom(room);
    }
    for (const id of [...this.rooms.keys()]) if (!seen.has(id)) this.removeRoom(id);
    this.scheduleRender();
  }

  /** Adds (or refreshes) a room and watches its channel. */
  addRoom(room) {
    if (room.peer) directory.remember(room.peer);
    if (room.last_message) {
      // Names in the previews come from the directory.
      directory.lookup(room.last_message.user_id);
    }
    let entry = this.rooms.get(room.id);
    if (entry) {
      this.mergeRoom(entry, room);
    } else {
      entry = {
        room: { ...room },
        store: new MessageStore(),
        members: new Map(),
        presence: new Map(),
        detailLoaded: false,
        unwatch: null,
        // The newest message id that unread_count accounts for: a message the stream
        // delivers at or below it was already counted by the room's REST snapshot.
        countedThrough: room.last_message?.id ?? 0,
      };
      this.rooms.set(room.id, entry);
      if (room.members) this.setMembers(entry, room.members);
      // A connection has a subscription limit (256 by default): rooms past LIVE_ROOMS are
      // watched once opened; until then their badges follow the user channel's unread events.
      const live = [...this.rooms.values()].filter((e) => e.unwatch).length;
      if (live < LIVE_ROOMS) this.watchRoom(entry);
    }
    this.scheduleRender();
    return entry;
  }

  /**
   * Takes a REST snapshot of a known room, never going back behind the stream: a snapshot
   * read before a message the stream (or this page's own send) already delivered keeps that
   * message as the last one and the unread count that includes it.
   */
  mergeRoom(entry, room) {
    const { members, last_message: last, unread_count: unread, last_read_message_id: read, ...rest } = room;
    Object.assign(entry.room, rest);
    const known = entry.room.last_message?.id ?? 0;
    const snapshot = last?.id ?? 0;
    if (snapshot > known || (snapshot === known && last)) entry.room.last_message = last;
    // Its count is current unless the page has seen newer messages or read further since.
    const readHere = entry.room.last_read_message_id ?? 0;
    if (snapshot >= entry.countedThrough && (read ?? 0) >= readHere) {
      entry.room.unread_count = unread;
      entry.countedThrough = snapshot;
    }
    entry.room.last_read_message_id = Math.max(readHere, read ?? 0) || null;
    if (members) this.setMembers(entry, members);
  }

  /**
   * A room this page did not know (its membership arrived on the user channel): subscribe to
   * its channel first, then read it. Whatever is committed after the subscription's start
   * arrives on the channel and whatever came before is in the snapshot, so the first message
   * of a new direct room can't fall between the two; publications that arrive before the
   * snapshot are applied after it (the counts ignore what the snapshot already holds).
   */
  async learnRoom(id) {
    if (this.rooms.has(id) || this.learning.has(id)) return;
    this.learning.add(id);
    const early = [];
    let subscribed;
    const ready = new Promise((resolve) => { subscribed = resolve; });
    const unwatch = realtime.watch(`room:${id}`, {
      publication: (pub) => early.push(pub.data),
      subscribed: () => subscribed(),
    });
    // A refused or slow subscription still shows the room (its badge then follows the
    // user channel until the room's own subscription is retried).
    await Promise.race([ready, new Promise((resolve) => setTimeout(resolve, 5000))]);
    try {
      const room = await request('GET', `/api/rooms/${id}`);
      if (this.destroyed) return;
      this.addRoom(room);
      for (const data of early) this.onRoomPublication(id, data);
    } catch {
      // Gone again (left, or removed) before it could be read.
    } finally {
      this.learning.delete(id);
      unwatch(); // the room's own watch (addRoom) keeps the subscription
    }
  }

  /** Subscribes to the room's channel (messages, members, presence), once. */
  watchRoom(entry) {
    if (entry.unwatch) return;
    const id = entry.room.id;
    entry.unwatch = realtime.watch(`room:${id}`, {
      publication: (pub) => this.onRoomPublication(id, pub.data),
      subscribed: (ctx) => this.onRoomSubscribed(id, ctx),
      join: (ctx) => this.onPresence(id, ctx.info, true),
      leave: (ctx) => this.onPresence(id, ctx.info, false),
      unsubscribed: (ctx) => {
        if (ctx.code === 2000) this.removeRoom(id);
      },
    });
  }

  setMembers(entry, members) {
    entry.detailLoaded = true;
    entry.members = new Map(members.map((m) => [m.user_id, { ...m }]));
    for (const m of members) directory.remember({ id: m.user_id, username: m.username, display_name: m.display_name });
    entry.room.members = members;
  }

  removeRoom(id) {
    const entry = this.rooms.get(id);
    if (!entry) return;
    entry.unwatch?.();
    this.rooms.delete(id);
    if (this.activeId === id) {
      this.activeId = null;
      redirect('#/chat');
    }
    this.scheduleRender();
  }

  openNewRoom(room) {
    this.addRoom(room);
    redirect(`#/chat/${room.id}`);
  }

  sortedRooms() {
    // The newest message, or when the user joined (a room just made tops the list).
    const time = (text) => (text ? Date.parse(text) || 0 : 0);
    const activity = (e) => Math.max(time(e.room.last_message?.created_at), time(e.room.activity_at));
    return [...this.rooms.values()].sort(
      (a, b) => activity(b) - activity(a) || a.room.id - b.room.id,
    );
  }

  async activate(id) {
    if (this.activeId === id) {
      this.scheduleRender();
      return;
    }
    this.unwatchTyping?.();
    this.unwatchTyping = null;
    this.typing.reset();
    this.activeId = id;
    this.nodes.clear();
    replace(this.messageList);
    this.cancelEdit = null;
    this.el.classList.toggle('has-room', id !== null);
    if (id === null) {
      this.scheduleRender();
      return;
    }
    const entry = this.rooms.get(id);
    this.watchRoom(entry);
    // Typing events are ephemeral (no history, no recovery): watched only for the open room.
    this.unwatchTyping = realtime.watch(
      `typing:${id}`,
      { publication: (pub) => id === this.activeId && this.typing.note(pub) },
      { recoverable: false },
    );
    this.render();
    if (!narrow.matches) this.input.focus();
    const tasks = [];
    if (!entry.store.loaded) tasks.push(this.loadLatest(id));
    tasks.push(this.loadDetail(id));
    this.refreshPresence(id);
    await Promise.allSettled(tasks);
    if (this.activeId !== id) return;
    this.scrollToBottom(true);
    this.scheduleRead();
  }

  /** Reloads a room's detail once, shortly: several joins at once cost one request. */
  reloadDetailSoon(id) {
    if (this.pendingDetail.has(id)) return;
    this.pendingDetail.add(id);
    setTimeout(() => {
      this.pendingDetail.delete(id);
      this.loadDetail(id);
    }, 200);
  }

  async loadDetail(id) {
    try {
      const detail = await request('GET', `/api/rooms/${id}`);
      if (this.rooms.has(id)) this.addRoom(detail);
    } catch (err) {
      if (err.status === 404) this.removeRoom(id);
    }
  }

  async loadLatest(id) {
    const entry = this.rooms.get(id);
    try {
      const page = await request('GET', `/api/rooms/${id}/messages`, { query: { limit: PAGE } });
      for (const msg of page.messages) entry.store.upsert(msg);
      entry.store.hasMore = page.has_more;
      entry.store.loaded = true;
      entry.store.version++;
      this.render();
    } catch (err) {
      toast(`Cannot load messages: ${err.message}`, 'error');
    }
  }

  async loadOlder() {
    const id = this.activeId;
    const entry = this.rooms.get(id);
    if (!entry || this.loadingOlder || !entry.store.hasMore || !entry.store.loaded) return;
    const before = entry.store.oldestId();
    if (before === null) return;
    this.loadingOlder = true;
    this.olderStatus.textContent = 'Loading older messages…';
    try {
      const page = await request('GET', `/api/rooms/${id}/messages`, { query: { before, limit: PAGE } });
      for (const msg of page.messages) entry.store.upsert(msg);
      entry.store.hasMore = page.has_more;
      if (this.activeId === id) this.render({ keepTop: true });
    } catch (err) {
      toast(`Cannot load older messages: ${err.message}`, 'error');
    } finally {
      this.loadingOlder = false;
      this.olderStatus.textContent = entry.store.hasMore ? '' : 'This is the beginning of the conversation.';
    }
  }

  /** After a gap the channel could not replay: fetch what came after the newest known id. */
  async catchUp(id) {
    const entry = this.rooms.get(id);
    if (!entry?.store.loaded) return;
    let after = entry.store.newestId();
    for (let page = 0; page < CATCH_UP_PAGES; page++) {
      const query = { limit: 100 };
      if (after !== null) query.after = after;
      let result;
      try {
        result = await request('GET', `/api/rooms/${id}/messages`, { query });
      } catch {
        return;
      }
      for (const msg of result.messages) this.onMessageRow(id, msg, false);
      if (!result.has_more || !result.messages.length) break;
      after = result.messages[result.messages.length - 1].id;
    }
    this.scheduleRender();
  }

  // -- live events ---------------------------------------------------------------------------

  onRoomSubscribed(id, ctx) {
    if (ctx.gap) {
      this.rooms.get(id)?.store.settleSent();
      this.catchUp(id);
    }
    if (id === this.activeId) this.refreshPresence(id);
  }

  onRoomPublication(id, data) {
    if (!data || typeof data !== 'object') return;
    const entry = this.rooms.get(id);
    if (!entry) return;
    if (data.table === 'messages') {
      if (data.op === 'insert' || data.op === 'update') this.onMessageRow(id, data.row, true);
      else if (data.op === 'delete' && data.old) {
        entry.store.remove(data.old.id);
        if (entry.room.last_message?.id === Number(data.old.id)) entry.room.last_message = null;
      } else if (data.op === 'truncate') {
        entry.store = new MessageStore();
        entry.room.last_message = null;
        if (id === this.activeId) this.loadLatest(id);
      }
    } else if (data.table === 'room_members') {
      this.onMemberRow(entry, data.op, data.row, data.old);
    }
    this.scheduleRender();
  }

  onMessageRow(id, row, fromStream) {
    const entry = this.rooms.get(id);
    if (!entry || !row) return;
    const fresh = !entry.store.byId.has(Number(row.id));
    entry.store.upsert(row, { fromStream });
    const last = entry.room.last_message;
    if (!last || row.id >= last.id) entry.room.last_message = { ...last, ...row };
    directory.lookup(row.user_id);
    const readHere = id === this.activeId && this.readable();
    if (fresh && row.user_id !== this.me && !readHere) {
      const lastRead = entry.room.last_read_message_id ?? 0;
      if (row.id > lastRead && row.id > entry.countedThrough) {
        entry.room.unread_count = (entry.room.unread_count ?? 0) + 1;
      }
    }
    entry.countedThrough = Math.max(entry.countedThrough, Number(row.id));
    if (fresh && id === this.activeId) this.typing.clear(row.user_id);
    if (id === this.activeId) this.scheduleRead();
  }

  onMemberRow(entry, op, row, old) {
    const data = row ?? old;
    if (!data) return;
    const userId = Number(data.user_id);
    if (op === 'delete') {
      entry.members.delete(userId);
      if (userId === this.me) this.removeRoom(entry.room.id);
    } else {
      const prev = entry.members.get(userId) ?? {};
      directory.lookup(userId); // fetches the name of a newcomer
      entry.members.set(userId, { ...prev, ...row, user_id: userId });
      if (userId === this.me && row.last_read_message_id != null) this.noteRead(entry, row.last_read_message_id);
    }
    entry.room.member_count = entry.members.size || entry.room.member_count;
    entry.room.members = [...entry.members.values()];
  }

  /** The personal channel: rooms joined or left (room_members rows) and unread counts. */
  onUserPublication(data) {
    if (!data || typeof data !== 'object') return;
    if (data.type === 'unread') {
      const entry = this.rooms.get(Number(data.room_id));
      if (!entry) return;
      const readHere = entry.room.id === this.activeId && this.readable();
      entry.room.unread_count = readHere ? 0 : Number(data.unread_count) || 0;
      this.scheduleRender();
      return;
    }
    if (data.table !== 'room_members') return;
    const row = data.row ?? data.old;
    if (!row) return;
    const roomId = Number(row.room_id);
    if (data.op === 'insert' && !this.rooms.has(roomId)) {
      this.learnRoom(roomId);
    } else if (data.op === 'delete') {
      this.removeRoom(roomId);
    } else if (data.op === 'update' && this.rooms.has(roomId) && row.last_read_message_id != null) {
      this.noteRead(this.rooms.get(roomId), row.last_read_message_id);
      this.scheduleRender();
    }
  }

  /** My read position moved (here or in another tab). */
  noteRead(entry, messageId) {
    const id = Number(messageId);
    if (id > (entry.room.last_read_message_id ?? 0)) entry.room.last_read_message_id = id;
    const last = entry.room.last_message?.id ?? 0;
    if (entry.room.last_read_message_id >= last) entry.room.unread_count = 0;
  }

  onPresence(id, info, joined) {
    const entry = this.rooms.get(id);
    if (!entry || !info?.client) return;
    if (joined) {
      entry.presence.set(info.client, Number(info.user));
      if (info.conn_info) directory.remember({ id: info.user, ...info.conn_info });
      // Someone present who is not in our member list joined between our REST read of the
      // room and our subscription (their membership row was published before we listened).
      if (entry.detailLoaded && !entry.members.has(Number(info.user))) this.reloadDetailSoon(id);
    } else {
      entry.presence.delete(info.client);
    }
    if (id === this.activeId) this.scheduleRender();
  }

  async refreshPresence(id) {
    const sub = realtime.subscription(`room:${id}`);
    if (!sub || sub.state !== 'subscribed') return;
    try {
      const { clients } = await sub.presence();
      const entry = this.rooms.get(id);
      if (!entry) return;
      entry.presence = new Map();
      for (const info of Object.values(clients)) this.onPresence(id, info, true);
      this.scheduleRender();
    } catch {
      // presence is a nicety: the next join/leave or resubscribe fixes it
    }
  }

  onlineUsers(entry) {
    return new Set(entry.presence.values());
  }

  // -- typing -------------------------------------------------------------------------------

  renderTyping() {
    const text = typingText(this.typing.names());
    this.typingLine.textContent = text;
    this.typingLine.classList.toggle('active', Boolean(text));
  }

  // -- sending, editing, deleting ------------------------------------------------------------

  onComposerKey(event) {
    if (event.key === 'Enter' && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      this.send();
    } else if (event.key === 'ArrowUp' && !this.input.value) {
      const entry = this.rooms.get(this.activeId);
      const mine = entry?.store.list().filter((m) => m.user_id === this.me && m.id !== null && !m.deleted_at);
      const last = mine?.[mine.length - 1];
      if (last) {
        event.preventDefault();
        this.startEdit(last);
      }
    }
  }

  autosize() {
    // CSSOM (not a style attribute): allowed by the page's Content-Security-Policy.
    this.input.style.height = 'auto';
    this.input.style.height = `${Math.min(this.input.scrollHeight, 160)}px`;
  }

  send() {
    const id = this.activeId;
    const body = this.input.value.trim();
    if (id === null || !body) return;
    if (body.length > MAX_BODY) {
      toast(`A message can have at most ${MAX_BODY} characters.`, 'error');
      return;
    }
    const entry = this.rooms.get(id);
    const clientMsgId = newClientMsgId();
    entry.store.addPending({ client_msg_id: clientMsgId, room_id: id, user_id: this.me, body });
    this.input.value = '';
    this.autosize();
    this.typing.sent();
    this.render();
    this.scrollToBottom(true);
    this.deliver(id, clientMsgId);
  }

  /** Stores a pending message; safe to repeat (the server dedupes by client_msg_id). */
  async deliver(roomId, clientMsgId) {
    const entry = this.rooms.get(roomId);
    const pending = entry?.store.pending.get(clientMsgId);
    if (!pending) return;
    entry.store.setPendingState(clientMsgId, 'sending');
    this.scheduleRender();
    try {
      const msg = await sendMessage(roomId, pending.body, clientMsgId);
      this.retryQueue.delete(`${roomId}:${clientMsgId}`);
      this.onMessageRow(roomId, msg, false);
    } catch (err) {
      entry.store.setPendingState(clientMsgId, 'failed');
      if (err.status === 0 || err.status >= 500) this.retryQueue.add(`${roomId}:${clientMsgId}`);
      else toast(`Not sent: ${err.message}`, 'error');
    }
    this.scheduleRender();
  }

  retryFailedSends() {
    const queued = [...this.retryQueue];
    this.retryQueue.clear();
    for (const key of queued) {
      const [roomId, clientMsgId] = key.split(':');
      this.deliver(Number(roomId), clientMsgId);
    }
  }

  discard(roomId, clientMsgId) {
    const entry = this.rooms.get(roomId);
    if (entry?.store.pending.delete(clientMsgId)) entry.store.version++;
    this.retryQueue.delete(`${roomId}:${clientMsgId}`);
    this.scheduleRender();
  }

  startEdit(msg) {
    const node = this.nodes.get(this.keyOf(msg));
    if (!node) return;
    this.cancelEdit?.();
    const body = node.querySelector('.msg-body');
    const field = h('textarea', { class: 'edit-input', 'aria-label': 'Edit message', maxlength: String(MAX_BODY), 'data-testid': 'edit-input' });
    field.value = msg.body;
    const cancel = () => {
      node.classList.remove('editing');
      delete node.dataset.sig;
      this.cancelEdit = null;
      this.render();
      this.input.focus();
    };
    const save = async () => {
      const text = field.value.trim();
      if (!text || text === msg.body) {
        cancel();
        return;
      }
      form.setAttribute('aria-busy', 'true');
      try {
        const updated = await request('PATCH', `/api/messages/${msg.id}`, { body: { body: text } });
        this.onMessageRow(msg.room_id, updated, false);
        cancel();
      } catch (err) {
        form.removeAttribute('aria-busy');
        toast(`Not saved: ${err.message}`, 'error');
      }
    };
    field.addEventListener('keydown', (event) => {
      if (event.key === 'Escape') {
        event.preventDefault();
        cancel();
      } else if (event.key === 'Enter' && !event.shiftKey && !event.isComposing) {
        event.preventDefault();
        save();
      }
    });
    const form = h(
      'form',
      { class: 'edit-form' },
      field,
      h(
        'div',
        { class: 'edit-actions' },
        h('span', { class: 'muted' }, 'Esc to cancel · Enter to save'),
        h('button', { type: 'button', class: 'btn btn-sm btn-ghost', onclick: cancel }, 'Cancel'),
        h('button', { type: 'submit', class: 'btn btn-sm btn-primary', 'data-testid': 'edit-save' }, 'Save'),
      ),
    );
    form.addEventListener('submit', (event) => {
      event.preventDefault();
      save();
    });
    node.classList.add('editing');
    body.replaceWith(form);
    this.cancelEdit = cancel;
    field.focus();
    field.setSelectionRange(field.value.length, field.value.length);
  }

  async remove(msg) {
    const ok = await confirm('Delete message?', 'It will be removed for everyone in the room.', 'Delete', { danger: true });
    if (!ok) return;
    try {
      const tombstone = await request('DELETE', `/api/messages/${msg.id}`);
      if (tombstone) this.onMessageRow(msg.room_id, tombstone, false);
    } catch (err) {
      toast(`Not deleted: ${err.message}`, 'error');
    }
    this.scheduleRender();
  }

  // -- read receipts ------------------------------------------------------------------------

  /** The open room's newest messages are on screen and the page is in front. */
  readable() {
    return document.visibilityState === 'visible' && this.atBottom();
  }

  scheduleRead() {
    clearTimeout(this.readTimer);
    this.readTimer = setTimeout(() => this.markRead(), 300);
  }

  async markRead() {
    const id = this.activeId;
    const entry = this.rooms.get(id);
    if (!entry || !this.readable()) return;
    const newest = entry.store.newestId();
    if (newest === null || newest <= (entry.room.last_read_message_id ?? 0)) {
      if (entry.room.unread_count) {
        entry.room.unread_count = 0;
        this.scheduleRender();
      }
      return;
    }
    this.noteRead(entry, newest);
    entry.room.unread_count = 0;
    this.scheduleRender();
    try {
      await request('POST', `/api/rooms/${id}/read`, { body: { message_id: newest } });
    } catch {
      // the next read (or the next visit) moves it forward
    }
  }

  // -- room actions -------------------------------------------------------------------------

  async createGroup() {
    const room = await dialogs.newGroup();
    if (room) this.openNewRoom(room);
  }

  async startDirect() {
    const room = await dialogs.newDirect(this.me);
    if (room) this.openNewRoom(room);
  }

  async join() {
    const room = await dialogs.joinByToken();
    if (room) this.openNewRoom(room);
  }

  async leave(entry) {
    const ok = await confirm(`Leave ${roomTitle(entry.room)}?`, 'You will stop getting its messages. You can come back with an invite.', 'Leave', { danger: true });
    if (!ok) return;
    try {
      await request('DELETE', `/api/rooms/${entry.room.id}/members/me`);
      this.removeRoom(entry.room.id);
      toast(`You left ${roomTitle(entry.room)}.`);
    } catch (err) {
      toast(err.message, 'error');
    }
  }

  toggleMembers() {
    const open = this.membersPanel.hidden;
    this.membersPanel.hidden = !open;
    this.membersToggle.setAttribute('aria-expanded', String(open));
    this.renderMembers();
  }

  // -- scrolling ----------------------------------------------------------------------------

  atBottom() {
    const s = this.scroller;
    return s.scrollHeight - s.scrollTop - s.clientHeight < 48;
  }

  scrollToBottom(force = false) {
    if (force || this.atBottom()) this.scroller.scrollTop = this.scroller.scrollHeight;
    this.jumpButton.hidden = true;
  }

  onScroll() {
    if (this.scroller.scrollTop < 120) this.loadOlder();
    if (this.atBottom()) {
      this.jumpButton.hidden = true;
      this.scheduleRead();
    }
  }

  // -- rendering ----------------------------------------------------------------------------

  scheduleRender() {
    if (this.renderQueued) return;
    this.renderQueued = true;
    queueMicrotask(() => {
      this.renderQueued = false;
      if (!this.destroyed) this.render();
    });
  }

  render({ keepTop = false } = {}) {
    this.renderRooms();
    const entry = this.rooms.get(this.activeId);
    this.conversation.hidden = !entry;
    this.placeholder.hidden = Boolean(entry) || narrow.matches;
    if (!entry) return;
    this.renderHeader(entry);
    this.renderMessages(entry, keepTop);
    this.renderMembers();
    this.renderTyping();
  }

  renderRooms() {
    const items = this.sortedRooms().map(({ room }) =>
      roomItem(room, { active: room.id === this.activeId, me: this.me }),
    );
    replace(this.roomList, items.length ? items : h('li', { class: 'muted empty-rooms' }, 'No conversations yet.'));
  }

  renderHeader(entry) {
    const { room } = entry;
    this.title.textContent = roomTitle(room);
    const online = this.onlineUsers(entry);
    let subtitle;
    if (room.kind === 'direct' && room.peer) {
      subtitle = online.has(Number(room.peer.id)) ? 'Online' : room.peer.last_seen_at ? `Last seen ${shortTime(room.peer.last_seen_at)}` : 'Offline';
    } else {
      const count = room.member_count ?? entry.members.size;
      subtitle = `${count} member${count === 1 ? '' : 's'} · ${online.size} online`;
    }
    this.subtitle.textContent = subtitle;
    replace(this.roomAvatar, roomAvatar(room));
    const actions = [this.membersToggle];
    if (room.kind === 'group') {
      actions.unshift(
        h('button', { type: 'button', class: 'btn btn-sm btn-ghost', 'data-testid': 'add-people', onclick: () => dialogs.addPeople(room, this.me).then(() => this.loadDetail(room.id)) }, 'Add'),
        h('button', { type: 'button', class: 'btn btn-sm btn-ghost', 'data-testid': 'invite', onclick: () => dialogs.invite(room).catch((err) => toast(err.message, 'error')) }, 'Invite'),
      );
    }
    if (room.kind !== 'global') {
      actions.push(h('button', { type: 'button', class: 'btn btn-sm btn-ghost danger-text', 'data-testid': 'leave-room', onclick: () => this.leave(entry) }, 'Leave'));
    }
    replace(this.headerActions, actions);
  }

  renderMembers() {
    const entry = this.rooms.get(this.activeId);
    if (!entry || this.membersPanel.hidden) return;
    const online = this.onlineUsers(entry);
    const members = [...entry.members.values()].sort(
      (a, b) => Number(online.has(b.user_id)) - Number(online.has(a.user_id)) || memberName(a).localeCompare(memberName(b)),
    );
    replace(
      this.membersPanel,
      h('h3', {}, `Members · ${online.size} online`),
      h(
        'ul',
        { role: 'list', class: 'member-list', 'data-testid': 'member-list' },
        members.slice(0, 200).map((m) => memberItem(m, { online: online.has(m.user_id), me: this.me })),
      ),
    );
  }

  keyOf(msg) {
    return msg.client_msg_id ? `c:${msg.user_id}:${msg.client_msg_id}` : `i:${msg.id}`;
  }

  renderMessages(entry, keepTop) {
    const list = entry.store.list();
    const markers = seenMarkers(list, [...entry.members.values()], this.me);
    const s = this.scroller;
    const wasAtBottom = this.atBottom();
    const oldHeight = s.scrollHeight;
    const oldTop = s.scrollTop;
    const keep = new Set();
    let previous = null;
    let previousNode = null;
    let grew = false;
    for (const msg of list) {
      const key = this.keyOf(msg);
      keep.add(key);
      const grouped = Boolean(
        previous &&
          previous.user_id === msg.user_id &&
          !previous.deleted_at &&
          Date.parse(msg.created_at) - Date.parse(previous.created_at) < GROUP_WINDOW_MS,
      );
      const seen = (markers.get(msg.id) ?? []).map(memberName);
      const author = directory.lookup(msg.user_id);
      const state = entry.store.stateOf(msg);
      const sig = JSON.stringify([msg.id, msg.body, msg.edited_at, msg.deleted_at, state, grouped, seen, author?.username, author?.display_name]);
      let node = this.nodes.get(key);
      if (!node || (node.dataset.sig !== sig && !node.classList.contains('editing'))) {
        const fresh = messageElement(msg, { own: msg.user_id === this.me, grouped, seen, author, state }, {
          edit: () => this.startEdit(msg),
          remove: () => this.remove(msg),
          retry: () => this.deliver(msg.room_id, msg.client_msg_id),
          discard: () => this.discard(msg.room_id, msg.client_msg_id),
        });
        fresh.dataset.sig = sig;
        if (node) node.replaceWith(fresh);
        else grew = true;
        node = fresh;
        this.nodes.set(key, node);
      }
      const expected = previousNode ? previousNode.nextSibling : this.messageList.firstChild;
      if (node !== expected) this.messageList.insertBefore(node, expected);
      previous = msg;
      previousNode = node;
    }
    for (const [key, node] of this.nodes) {
      if (!keep.has(key)) {
        node.remove();
        this.nodes.delete(key);
      }
    }
    if (!list.length && entry.store.loaded) {
      this.olderStatus.textContent = 'No messages yet. Say hello!';
    } else if (entry.store.loaded && !entry.store.hasMore) {
      this.olderStatus.textContent = 'This is the beginning of the conversation.';
    } else if (!entry.store.loaded) {
      this.olderStatus.textContent = 'Loading messages…';
    } else if (!this.loadingOlder) {
      this.olderStatus.textContent = '';
    }
    if (keepTop) s.scrollTop = oldTop + (s.scrollHeight - oldHeight);
    else if (wasAtBottom) s.scrollTop = s.scrollHeight;
    else if (grew) this.jumpButton.hidden = false;
  }
}
