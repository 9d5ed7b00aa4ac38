// Syncline client: the Centrifuge client protocol v2 (JSON) over WebSocket, for the web UI.
// Dependency-free ES module. Browsers use the global WebSocket; Node ≥ 20 passes one in:
//   new SynclineClient(url, { token, WebSocket: (await import('ws')).default })
// See docs/protocol.md for what the server supports.

/** @typedef {{ epoch: string, offset: number }} StreamPosition */
/** @typedef {{ code: number, message: string, temporary?: boolean }} SynclineError */
/** @typedef {{ channel: string, data: any, offset?: number, info?: object, tags?: object }} Publication */
/**
 * @typedef {object} ClientOptions
 * @property {string} [token] connection JWT
 * @property {() => Promise<string>} [getToken] fetches a fresh JWT (on expiry and on error 109)
 * @property {any} [WebSocket] WebSocket constructor (default: globalThis.WebSocket)
 * @property {'websocket'|'http_stream'|'sse'} [transport='websocket'] 'http_stream' or 'sse':
 *   Centrifuge's HTTP emulation on the same host and port instead of WebSocket (see
 *   emulatedSocket below)
 * @property {number} [minReconnectDelay=200] ms
 * @property {number} [maxReconnectDelay=20000] ms
 * @property {number} [timeout=5000] ms to wait for a reply
 * @property {number} [maxServerPingDelay=10000] ms of grace after the server's ping interval
 * @property {string} [name='syncline-js'] client name sent in connect
 */

// SDK-local error codes (never sent by the server).
const TIMEOUT = 1;
const TRANSPORT_CLOSED = 2;
const CLIENT_DISCONNECTED = 3;
const UNSUBSCRIBED = 7;

const terminal = (code) => (code >= 3500 && code < 4000) || (code >= 4500 && code < 5000);
const localError = (code, message) => ({ code, message });
const backoff = (attempt, min, max) => {
  const cap = Math.min(max, min * 2 ** Math.min(attempt, 20));
  return min + Math.random() * (cap - min);
};

class Emitter {
  constructor() {
    /** @type {Map<string, Set<Function>>} */
    this._listeners = new Map();
  }

  /** @param {string} event @param {(ctx: any) => void} fn @returns {this} */
  on(event, fn) {
    if (!this._listeners.has(event)) this._listeners.set(event, new Set());
    this._listeners.get(event).add(fn);
    return this;
  }

  /** @param {string} event @param {(ctx: any) => void} fn @returns {this} */
  off(event, fn) {
    this._listeners.get(event)?.delete(fn);
    return this;
  }

  _emit(event, ctx) {
    for (const fn of [...(this._listeners.get(event) ?? [])]) {
      try {
        fn(ctx);
      } catch (err) {
        console.error(`syncline: a '${event}' listener threw`, err);
      }
    }
  }

  /** Resolves once `state` is `wanted`; rejects if it becomes `dead` or after `timeout` ms. */
  _when(wanted, dead, deadCode, timeout) {
    if (this.state === wanted) return Promise.resolve();
    if (this.state === dead) return Promise.reject(localError(deadCode, dead));
    return new Promise((resolve, reject) => {
      const done = (fn, arg) => {
        clearTimeout(timer);
        this.off('state', onState);
        fn(arg);
      };
      const timer = setTimeout(() => done(reject, localError(TIMEOUT, 'timeout')), timeout);
      const onState = ({ state }) => {
        if (state === wanted) done(resolve);
        else if (state === dead) done(reject, localError(deadCode, dead));
      };
      this.on('state', onState);
    });
  }
}

/**
 * A client-side channel subscription. Events: `state` ({state}), `subscribed`
 * ({channel, recoverable, wasRecovering, recovered, position, data}), `publication` (Publication),
 * `join` / `leave` ({channel, info}), `unsubscribed` ({channel, code, reason}), `error`.
 */
export class Subscription extends Emitter {
  /**
   * @param {SynclineClient} client @param {string} channel
   * @param {{recoverable?: boolean, since?: StreamPosition}} options `since`: recover from there
   */
  constructor(client, channel, { recoverable = true, since = null } = {}) {
    super();
    this.channel = channel;
    /** @type {'unsubscribed'|'subscribing'|'subscribed'} */
    this.state = 'unsubscribed';
    /** @type {StreamPosition | null} */
    this.position = null;
    this._client = client;
    this._recoverable = recoverable;
    this._recover = false; // the server said recoverable: ask for recovery on resubscribe
    this._generation = 0; // replies to an older subscribe attempt are ignored
    this._attempts = 0;
    this._retryTimer = null;
    if (since) {
      this.position = { epoch: since.epoch, offset: since.offset };
      this._recover = true;
    }
  }

  /** Publishes to the channel (only in namespaces that allow client publish). */
  async publish(data) {
    await this._ready();
    await this._client._request('publish', { channel: this.channel, data });
  }

  /** @returns {Promise<{clients: Record<string, object>}>} */
  async presence() {
    await this._ready();
    const result = await this._client._request('presence', { channel: this.channel });
    return { clients: result.presence ?? {} };
  }

  /** @returns {Promise<{numClients: number, numUsers: number}>} */
  async presenceStats() {
    await this._ready();
    const result = await this._client._request('presence_stats', { channel: this.channel });
    return { numClients: result.num_clients ?? 0, numUsers: result.num_users ?? 0 };
  }

  /**
   * @param {{limit?: number, since?: StreamPosition, reverse?: boolean}} [options]
   * @returns {Promise<{publications: Publication[], epoch: string, offset: number}>}
   */
  async history({ limit, since, reverse } = {}) {
    await this._ready();
    const params = { channel: this.channel };
    if (limit !== undefined) params.limit = limit;
    if (since) params.since = { offset: since.offset, epoch: since.epoch };
    if (reverse) params.reverse = true;
    const result = await this._client._request('history', params);
    const publications = (result.publications ?? []).map((p) => ({ channel: this.channel, ...p }));
    return { publications, epoch: result.epoch ?? '', offset: result.offset ?? 0 };
  }

  /** Leaves the channel for good (call client.subscribe again to come back). */
  unsubscribe() {
    if (this.state === 'unsubscribed') return;
    this._setUnsubscribed(0, 'unsubscribe called');
    if (this._client.state === 'connected') {
      // An error or timeout here means the server's view is unknown: reconnect.
      this._client._call('unsubscribe', { channel: this.channel }, (err) => {
        if (err && err.code !== TRANSPORT_CLOSED) this._client._fail(4, 'unsubscribe error');
      });
    }
  }

  _ready() {
    return this._when('subscribed', 'unsubscribed', UNSUBSCRIBED, this._client._timeout);
  }

  _setState(state) {
    if (this.state === state) return;
    this.state = state;
    this._emit('state', { state, channel: this.channel });
  }

  /** Goes to subscribing; the client sends the subscribe once (or while) it is connected. */
  _start() {
    this._park();
    // Once connect is on the wire the server runs later commands after it, so a subscription
    // made while the connect reply is on its way is sent now (_onOpen has already run).
    if (this._client.state === 'connected' || this._client._connectSent) this._send();
  }

  /** Waits for the next connection, which sends the subscribe (with recovery). */
  _park() {
    clearTimeout(this._retryTimer);
    this._generation++;
    this._setState('subscribing');
  }

  /** Sends subscribe, with a recovery request when a position is known. */
  _send() {
    const generation = ++this._generation;
    const params = { channel: this.channel };
    if (this._recoverable) params.recoverable = true;
    const recovering = this._recover && this.position !== null;
    if (recovering) Object.assign(params, { recover: true, ...this.position });
    this._client._call('subscribe', params, (err, result) => {
      if (generation !== this._generation || this.state !== 'subscribing') return;
      if (err) this._onError(err);
      else this._onSubscribed(result, recovering);
    });
  }

  _onSubscribed(result, recovering) {
    this._attempts = 0;
    this._recover = result.recoverable === true;
    if (this._recover || result.positioned) {
      this.position = { epoch: result.epoch ?? '', offset: result.offset ?? 0 };
    }
    this._setState('subscribed');
    this._emit('subscribed', {
      channel: this.channel,
      recoverable: this._recover,
      wasRecovering: result.was_recovering ?? recovering,
      recovered: result.recovered === true,
      position: this.position && { ...this.position },
      data: result.data,
    });
    for (const pub of result.publications ?? []) this._onPublication(pub);
  }

  _onError(err) {
    if (err.code === TRANSPORT_CLOSED) return; // resubscribed after the reconnect
    if (err.code === TIMEOUT) {
      // The server may have subscribed us; a retry would get 105. Start over on a new connection.
      this._client._fail(3, 'subscribe timeout');
      return;
    }
    this._emit('error', { channel: this.channel, ...err });
    if (err.temporary || err.code === 109) {
      const { _minDelay: min, _maxDelay: max } = this._client;
      this._retryTimer = setTimeout(() => this._start(), backoff(this._attempts++, min, max));
    } else {
      this._setUnsubscribed(err.code, err.message);
    }
  }

  _onPush(push) {
    if (this.state !== 'subscribed') return; // a push of an older subscription
    if (push.pub) this._onPublication(push.pub);
    else if (push.join) this._emit('join', { channel: this.channel, info: push.join.info });
    else if (push.leave) this._emit('leave', { channel: this.channel, info: push.leave.info });
    else if (push.unsubscribe) {
      const { code, reason } = push.unsubscribe;
      if (code < 2500) {
        this._setUnsubscribed(code, reason);
        return;
      }
      if (code === 2502 && this.position) this.position = { epoch: '_', offset: 0 };
      this._start(); // 2500 insufficient state and friends: resubscribe and recover
    }
  }

  _onPublication(pub) {
    if (pub.offset > 0 && this.position) this.position.offset = pub.offset;
    if (pub.epoch && this.position) this.position.epoch = pub.epoch;
    this._emit('publication', { channel: this.channel, ...pub });
  }

  _setUnsubscribed(code, reason) {
    clearTimeout(this._retryTimer);
    this._generation++;
    this._client._subs.delete(this.channel);
    this._setState('unsubscribed');
    this._emit('unsubscribed', { channel: this.channel, code, reason });
  }
}

/**
 * The connection. Events: `state` ({state: 'connecting'|'connected'|'disconnected', code?,
 * reason?, client?}), `error` ({type, code, message}), and for server-side subscriptions (the
 * connect reply's `subs`, e.g. `user:{sub}`): `subscribed`, `publication`, `join`, `leave`,
 * `unsubscribed`.
 */
export class SynclineClient extends Emitter {
  /** @param {string} url ws(s)://host/connection/websocket @param {ClientOptions} [options] */
  constructor(url, options = {}) {
    super();
    const { token = '', getToken = null, transport = 'websocket' } = options;
    const WebSocket = socketFor(transport, options.WebSocket ?? globalThis.WebSocket);
    if (typeof WebSocket !== 'function') throw new Error('syncline: pass a WebSocket constructor');
    this.url = url;
    /** @type {'connecting'|'connected'|'disconnected'} */
    this.state = 'disconnected';
    /** @type {string | null} the server's id for the current connection */
    this.clientId = null;
    this._token = token;
    this._getToken = getToken;
    this._WebSocket = WebSocket;
    this._minDelay = options.minReconnectDelay ?? 200;
    this._maxDelay = options.maxReconnectDelay ?? 20000;
    this._timeout = options.timeout ?? 5000;
    this._pingGrace = options.maxServerPingDelay ?? 10000;
    this._name = options.name ?? 'syncline-js';
    /** @type {Map<string, Subscription>} */
    this._subs = new Map();
    /** @type {Map<string, {recoverable: boolean, epoch: string, offset: number}>} */
    this._serverSubs = new Map();
    this._ws = null;
    this._connectSent = false; // connect is on the wire of the current socket
    this._nextId = 1; // never reset: ids are per client instance
    this._pending = new Map(); // id → {callback, timer}
    this._outbox = [];
    this._attempts = 0;
    this._pong = false;
    this._timers = { reconnect: null, ping: null, refresh: null };
  }

  /** Starts connecting (and reconnecting until disconnect() or a terminal close). */
  connect() {
    if (this.state !== 'disconnected') return;
    this._setState('connecting');
    this._open();
  }

  /** Closes the connection; subscriptions are kept and come back on the next connect(). */
  disconnect() {
    if (this.state === 'disconnected') return;
    this._dropTransport(CLIENT_DISCONNECTED, 'disconnect called');
    this._setState('disconnected', { code: 0, reason: 'disconnect called' });
  }

  /**
   * @param {string} channel
   * @param {{recoverable?: boolean, since?: StreamPosition}} [options]
   * @returns {Subscription}
   */
  subscribe(channel, options = {}) {
    let sub = this._subs.get(channel);
    if (!sub) {
      sub = new Subscription(this, channel, options);
      this._subs.set(channel, sub);
      sub._start();
    }
    return sub;
  }

  /** @returns {Promise<any>} the handler's data; rejects with {code, message} */
  async rpc(method, data) {
    await this._when('connected', 'disconnected', CLIENT_DISCONNECTED, this._timeout);
    const result = await this._request('rpc', { method, data });
    return result.data;
  }

  // -- transport ----------------------------------------------------------------------------

  async _open() {
    if (!this._token && this._getToken) {
      try {
        this._token = await this._getToken();
      } catch (err) {
        this._emit('error', { type: 'token', code: 5, message: String(err?.message ?? err) });
        this._scheduleReconnect();
        return;
      }
      if (this.state !== 'connecting' || this._ws) return;
    }
    const ws = new this._WebSocket(this.url);
    this._ws = ws;
    ws.onopen = () => this._ws === ws && this._onOpen();
    ws.onmessage = (event) => this._ws === ws && this._onFrame(ws, event.data);
    ws.onerror = () => {}; // always followed by close
    ws.onclose = (event) => {
      if (this._ws !== ws) return;
      this._ws = null;
      this._onClose(event.code, event.reason || 'transport closed');
    };
  }

  _onOpen() {
    const params = { name: this._name };
    if (this._token) params.token = this._token;
    const subs = {};
    for (const [channel, s] of this._serverSubs) {
      if (s.recoverable) subs[channel] = { recover: true, offset: s.offset, epoch: s.epoch };
    }
    if (Object.keys(subs).length) params.subs = subs;
    this._call('connect', params, (err, result) => {
      if (err) this._onConnectError(err);
      else this._onConnected(result);
    });
    this._connectSent = true;
    // Optimistic: the subscribes travel in the connect's frame; the server runs them in order.
    for (const sub of this._subs.values()) if (sub.state === 'subscribing') sub._send();
  }

  _onConnected(result) {
    this.clientId = result.client;
    this._attempts = 0;
    this._pong = result.pong === true;
    this._pingInterval = (result.ping ?? 0) * 1000;
    this._armPingTimer();
    if (result.expires) this._scheduleRefresh(result.ttl);
    this._onServerSubs(result.subs ?? {});
    this._setState('connected', { client: this.clientId });
  }

  _onConnectError(err) {
    if (err.code === TRANSPORT_CLOSED) return;
    this._emit('error', { type: 'connect', ...err });
    if (err.code === 109 && this._getToken) {
      this._token = ''; // _open() fetches a new one
      this._fail(109, err.message);
    } else if (err.temporary || err.code === TIMEOUT) {
      this._fail(err.code, err.message);
    } else {
      if (err.code === 3500 && this._getToken) this._token = '';
      this._dropTransport(err.code, err.message);
      this._setState('disconnected', { code: err.code, reason: err.message });
    }
  }

  _onClose(code, reason) {
    this._dropTransport(TRANSPORT_CLOSED, 'connection closed');
    if (this.state === 'disconnected') return;
    if (code === 3014) this._invalidateState();
    // 3500 invalid token: with getToken, the next connect() asks for a new one instead of
    // presenting the refused token again.
    if (code === 3500 && this._getToken) this._token = '';
    if (terminal(code) || code === 1009) {
      this._setState('disconnected', { code, reason });
    } else {
      this._setState('connecting', { code, reason });
      this._scheduleReconnect();
    }
  }

  /** Gives up on the current socket and reconnects (a client-side decision). */
  _fail(code, reason) {
    this._onClose(code, reason); // _dropTransport closes the socket
  }

  /** Forgets the socket: stops timers, fails pending replies, parks subscriptions. */
  _dropTransport(code, message) {
    const ws = this._ws;
    this._ws = null;
    this._connectSent = false;
    if (ws) {
      try {
        ws.close(1000);
      } catch {
        // already closing
      }
    }
    for (const timer of Object.values(this._timers)) clearTimeout(timer);
    this._outbox = [];
    this.clientId = null;
    const pending = [...this._pending.values()];
    this._pending.clear();
    for (const { callback, timer } of pending) {
      clearTimeout(timer);
      callback(localError(code === CLIENT_DISCONNECTED ? code : TRANSPORT_CLOSED, message));
    }
    for (const sub of this._subs.values()) sub._park();
  }

  _scheduleReconnect() {
    const delay = backoff(this._attempts++, this._minDelay, this._maxDelay);
    this._timers.reconnect = setTimeout(() => this.state === 'connecting' && this._open(), delay);
  }

  _armPingTimer() {
    clearTimeout(this._timers.ping);
    if (!this._pingInterval) return;
    const limit = this._pingInterval + this._pingGrace;
    this._timers.ping = setTimeout(() => this._fail(2, 'no ping'), limit);
  }

  _scheduleRefresh(ttl) {
    clearTimeout(this._timers.refresh);
    if (!this._getToken) return; // the server will close with 3005; the reconnect gets 109
    const delay = Math.max(ttl * 500, (ttl - 10) * 1000); // before the token expires
    this._timers.refresh = setTimeout(() => this._refresh(), delay);
  }

  async _refresh() {
    try {
      this._token = await this._getToken();
      const result = await this._request('refresh', { token: this._token });
      if (result.expires) this._scheduleRefresh(result.ttl);
    } catch (err) {
      if (this.state !== 'connected' || err.code === TRANSPORT_CLOSED) return;
      this._emit('error', { type: 'refresh', code: err.code ?? 6, message: String(err.message) });
      if (err.code === undefined || err.code === TIMEOUT || err.temporary) {
        this._timers.refresh = setTimeout(() => this._refresh(), 5000 + Math.random() * 5000);
      } else {
        this._dropTransport(err.code, err.message);
        this._setState('disconnected', { code: err.code, reason: err.message });
      }
    }
  }

  _invalidateState() {
    if (this._getToken) this._token = '';
    for (const sub of this._subs.values()) {
      if (sub.position) sub.position = { epoch: '_', offset: 0 };
    }
    for (const s of this._serverSubs.values()) Object.assign(s, { epoch: '_', offset: 0 });
  }

  _setState(state, detail = {}) {
    if (this.state === state) return;
    this.state = state;
    this._emit('state', { state, ...detail });
  }

  // -- frames -------------------------------------------------------------------------------

  /** Queues a command; all commands of one tick go out as one frame. `callback(err, result)`. */
  _call(method, params, callback) {
    const id = this._nextId++;
    const timer = setTimeout(() => {
      if (this._pending.delete(id)) callback(localError(TIMEOUT, 'timeout'));
    }, this._timeout);
    this._pending.set(id, { callback, timer });
    this._write(JSON.stringify({ id, [method]: params }));
  }

  /** `_call` as a Promise of the result; rejects with {code, message, temporary?}. */
  _request(method, params) {
    if (this.state !== 'connected') {
      return Promise.reject(localError(CLIENT_DISCONNECTED, 'not connected'));
    }
    return new Promise((resolve, reject) => {
      this._call(method, params, (err, result) => (err ? reject(err) : resolve(result)));
    });
  }

  _write(line) {
    this._outbox.push(line);
    if (this._outbox.length === 1) queueMicrotask(() => this._flush());
  }

  _flush() {
    const lines = this._outbox;
    this._outbox = [];
    if (lines.length && this._ws?.readyState === 1) this._ws.send(lines.join('\n'));
  }

  _onFrame(ws, data) {
    const text = typeof data === 'string' ? data : new TextDecoder().decode(data);
    this._armPingTimer(); // any traffic shows the server is alive
    for (const line of text.split('\n')) {
      if (this._ws !== ws) return; // a reply in this frame dropped the connection
      if (!line.trim()) continue;
      let message;
      try {
        message = JSON.parse(line);
      } catch {
        this._fail(2, 'bad frame');
        return;
      }
      if (message.id) this._onReply(message);
      else if (message.push) this._onPush(message.push);
      else if (this._pong) this._write('{}'); // a ping
    }
  }

  _onReply({ id, error, ...rest }) {
    const pending = this._pending.get(id);
    if (!pending) return;
    this._pending.delete(id);
    clearTimeout(pending.timer);
    if (error) {
      const { code, message = '', temporary = false } = error;
      pending.callback({ code, message, temporary });
    } else {
      pending.callback(null, Object.values(rest)[0] ?? {});
    }
  }

  _onPush(push) {
    if (push.disconnect) {
      this._fail(push.disconnect.code, push.disconnect.reason);
      return;
    }
    const sub = this._subs.get(push.channel);
    if (sub) {
      sub._onPush(push);
      return;
    }
    const server = this._serverSubs.get(push.channel);
    if (!server) return;
    if (push.pub) this._onServerPublication(push.channel, push.pub);
    else if (push.join) this._emit('join', { channel: push.channel, info: push.join.info });
    else if (push.leave) this._emit('leave', { channel: push.channel, info: push.leave.info });
    else if (push.unsubscribe) {
      this._serverSubs.delete(push.channel);
      this._emit('unsubscribed', { channel: push.channel, ...push.unsubscribe });
    }
  }

  /** Server-side subscriptions from the connect reply (e.g. the personal `user:{sub}`). */
  _onServerSubs(subs) {
    for (const channel of this._serverSubs.keys()) {
      if (!(channel in subs)) {
        this._serverSubs.delete(channel);
        this._emit('unsubscribed', { channel, code: 0, reason: 'gone after reconnect' });
      }
    }
    for (const [channel, result] of Object.entries(subs)) {
      const position = { epoch: result.epoch ?? '', offset: result.offset ?? 0 };
      this._serverSubs.set(channel, { recoverable: result.recoverable === true, ...position });
      this._emit('subscribed', {
        channel,
        recoverable: result.recoverable === true,
        wasRecovering: result.was_recovering === true,
        recovered: result.recovered === true,
        position,
        data: result.data,
      });
      if (!result.recovered) continue;
      for (const pub of result.publications ?? []) this._onServerPublication(channel, pub);
    }
  }

  _onServerPublication(channel, pub) {
    const state = this._serverSubs.get(channel);
    if (pub.offset > 0) state.offset = pub.offset;
    this._emit('publication', { channel, ...pub });
  }
}

// -- Shapes (live queries): a separate helper on top of the client ----------------------------

const REOPEN_MIN_MS = 100;
const REOPEN_MAX_MS = 5000;
// Errors that opening again will not cure: a bad filter, a table not open to shapes, a limit.
const PERMANENT_SHAPE_ERRORS = new Set([400, 403, 404, 106, 107]);

/**
 * A live shape: the rows of `table` that match `where` (docs/topics/shapes.md), in `rows`, a
 * Map by primary key (the key's value for a one-column key, else the JSON of the key's values).
 * `shape.open` gives the rows as of a channel position; the subscription recovers from there.
 * A reconnect recovers what it missed; when it cannot (or the stream ends with `reset`) the
 * shape is opened again, so `rows` is never partial. Events: `change` ({rows, op?}) after
 * every change, `error` ({code, message}) when the shape can't be opened at all.
 */
export class LiveShape extends Emitter {
  /**
   * @param {SynclineClient} client @param {string} table
   * @param {{where?: string, columns?: string[]}} [options]
   */
  constructor(client, table, { where, columns } = {}) {
    super();
    this.request = { table };
    if (where != null) this.request.where = where;
    if (columns) this.request.columns = columns;
    /** @type {Map<any, object>} */
    this.rows = new Map();
    this.key = [];
    this.channel = null;
    this.opened = 0;
    this._client = client;
    this._sub = null;
    this._closed = false;
    this._attempts = 0;
    this._timer = null;
    this._subListeners = null;
  }

  /** Loads the rows and follows the shape; rejects with {code, message} if refused. */
  async open() {
    const first = await this._client.rpc('shape.open', this.request);
    const rows = new Map();
    let page = first;
    for (;;) {
      for (const row of page.rows) rows.set(shapeKey(first.key, row), row);
      if (!page.cursor) break;
      page = await this._client.rpc('shape.page', { cursor: page.cursor });
    }
    if (this._closed) return this;
    this._detach();
    Object.assign(this, { key: first.key, rows, channel: first.channel });
    this.opened++;
    this._attempts = 0;
    const sub = this._client.subscribe(first.channel, { since: { epoch: first.epoch, offset: first.offset } });
    const listeners = {
      publication: (pub) => this._onPublication(pub.data),
      subscribed: (ctx) => {
        if (ctx.wasRecovering && !ctx.recovered) this._reopen();
      },
      unsubscribed: (ctx) => {
        if (ctx.code !== 0) this._reopen();
      },
    };
    for (const [event, fn] of Object.entries(listeners)) sub.on(event, fn);
    this._sub = sub;
    this._subListeners = listeners;
    this._emit('change', { rows: this.rows });
    return this;
  }

  /** Stops following the shape and releases it on the server. */
  close() {
    this._closed = true;
    clearTimeout(this._timer);
    const channel = this.channel;
    this._detach();
    if (channel && this._client.state === 'connected') this._client.rpc('shape.close', { channel }).catch(() => {});
  }

  _onPublication(body) {
    if (!body || body.op === 'reset') {
      this._reopen();
      return;
    }
    const rows = this.rows;
    if (body.op === 'truncate') rows.clear();
    else {
      if (body.old_key) rows.delete(shapeKey(this.key, body.old_key));
      if (body.op === 'delete') rows.delete(shapeKey(this.key, body.key));
      else rows.set(shapeKey(this.key, body.key), body.row);
    }
    this._emit('change', { rows, op: body.op });
  }

  _reopen() {
    if (this._closed || this._timer) return;
    this._detach();
    const delay = this._attempts ? backoff(this._attempts, REOPEN_MIN_MS, REOPEN_MAX_MS) : 0;
    this._attempts++;
    this._timer = setTimeout(async () => {
      this._timer = null;
      try {
        await this.open();
      } catch (err) {
        if (PERMANENT_SHAPE_ERRORS.has(err.code)) this._emit('error', err);
        else this._reopen();
      }
    }, delay);
  }

  _detach() {
    const sub = this._sub;
    if (!sub) return;
    for (const [event, fn] of Object.entries(this._subListeners)) sub.off(event, fn);
    this._sub = null;
    sub.unsubscribe();
  }
}

function shapeKey(key, value) {
  return key.length === 1 ? value[key[0]] : JSON.stringify(key.map((name) => value[name]));
}

/** Opens a LiveShape (see there); resolves once its rows are loaded. */
export function openShape(client, table, options) {
  return new LiveShape(client, table, options).open();
}

// -- the HTTP transports ----------------------------------------------------------------------
// Centrifuge's bidirectional emulation (docs/protocol.md, "Transports") behind the part of the
// WebSocket interface SynclineClient uses (onopen, onmessage, onclose, send, close,
// readyState), so the protocol code above is the same for every transport. The first frame
// (connect and the subscribes) starts the stream; later frames are POSTed to /emulation with
// the session and node the connect reply carries.

/** The WebSocket-like constructor for `transport`. */
function socketFor(transport, WebSocket) {
  if (transport === 'http_stream') return HttpStreamSocket;
  if (transport === 'sse') return SseSocket;
  if (transport !== 'websocket') throw new Error(`syncline: unknown transport ${transport}`);
  return WebSocket;
}

/** http(s)://host:port of a ws(s):// endpoint: the HTTP transports share its port. */
function httpOrigin(wsUrl) {
  const url = new URL(wsUrl);
  url.protocol = url.protocol === 'wss:' ? 'https:' : 'http:';
  return url.origin;
}

class EmulatedSocket {
  constructor(url) {
    this.readyState = 0;
    this.onopen = null;
    this.onmessage = null;
    this.onclose = null;
    this._origin = httpOrigin(url);
    this._started = false;
    this._session = '';
    this._node = '';
    this._waiting = []; // frames written before the connect reply named the session
    // "Open" at once: the first frame the client writes is what opens the stream.
    queueMicrotask(() => {
      if (this.readyState !== 0) return;
      this.readyState = 1;
      this.onopen?.();
    });
  }

  send(frame) {
    if (this.readyState !== 1) return;
    if (!this._started) {
      this._started = true;
      this._start(frame);
    } else if (!this._session) {
      this._waiting.push(frame);
    } else {
      this._post(frame);
    }
  }

  close() {
    if (this.readyState === 3) return;
    this.readyState = 3;
    this._stop();
  }

  _post(frame) {
    const body = JSON.stringify({ session: this._session, node: this._node, data: frame });
    const headers = { 'Content-Type': 'application/json' };
    // A lost command is a lost frame: its reply times out and the client reconnects.
    fetch(`${this._origin}/emulation`, { method: 'POST', headers, body }).catch(() => {});
  }

  /** One message from the stream (JSON, possibly several lines). */
  _received(text) {
    if (!this._session) this._learnSession(text);
    this.onmessage?.({ data: text });
  }

  _learnSession(text) {
    for (const line of text.split('\n')) {
      if (!line.includes('"session"')) continue;
      try {
        const connect = JSON.parse(line).connect;
        if (connect?.session) {
          this._session = connect.session;
          this._node = connect.node ?? '';
        }
      } catch {
        // not JSON: the client's own parsing reports it
      }
    }
    if (!this._session) return;
    const waiting = this._waiting;
    this._waiting = [];
    for (const frame of waiting) this._post(frame);
  }

  /** The stream ended or failed: the client sees a closed transport and reconnects. */
  _ended(reason) {
    if (this.readyState === 3) return;
    this.readyState = 3;
    this._stop();
    this.onclose?.({ code: 1006, reason });
  }
}

/** `http_stream`: a POST whose response streams one JSON message a line. */
class HttpStreamSocket extends EmulatedSocket {
  _start(frame) {
    this._abort = new AbortController();
    this._read(frame).catch(() => this._ended('transport closed'));
  }

  async _read(frame) {
    const response = await fetch(`${this._origin}/connection/http_stream`, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: frame,
      signal: this._abort.signal,
    });
    if (!response.ok) throw new Error(`http_stream: ${response.status}`);
    const reader = response.body.getReader();
    const decoder = new TextDecoder();
    let buffer = '';
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      buffer += decoder.decode(value, { stream: true });
      const end = buffer.lastIndexOf('\n');
      if (end < 0) continue;
      const lines = buffer.slice(0, end);
      buffer = buffer.slice(end + 1);
      if (this.readyState === 1) this._received(lines);
    }
    this._ended('stream ended');
  }

  _stop() {
    this._abort?.abort();
  }
}

/** `sse`: an EventSource whose URL carries the first frame (`cf_connect`). */
class SseSocket extends EmulatedSocket {
  _start(frame) {
    const url = `${this._origin}/connection/sse?cf_connect=${encodeURIComponent(frame)}`;
    const source = new EventSource(url);
    this._source = source;
    source.onmessage = (event) => this.readyState === 1 && this._received(event.data);
    // EventSource would reconnect with the same connect: the client reconnects instead.
    source.onerror = () => this._ended('transport closed');
  }

  _stop() {
    this._source?.close();
  }
}

export default SynclineClient;
