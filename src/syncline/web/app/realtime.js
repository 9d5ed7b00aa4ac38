// The live connection: one SynclineClient per signed-in page, shared by the screens.
//
// Screens `watch` channels (reference counted, so two screens can share one subscription) and
// get publications, join/leave and (re)subscribed events. The connection indicator follows
// `status`. A browser that goes offline drops the socket at once (a dead socket would
// otherwise look connected until the next missed ping); going back online reconnects at once
// and each subscription recovers from its saved offset.

import { LiveShape, SynclineClient } from '../syncline-client.js';
import { accessToken } from './session.js';
import { request } from './api.js';

/** @typedef {'connecting'|'connected'|'reconnecting'|'offline'} Status */

const statusListeners = new Set();
/** @type {Map<string, {sub: any, handlers: Set<object>, serverSide: boolean}>} */
const watched = new Map();
let client = null;
let everConnected = false;
let forceRefresh = false;
let authFailures = 0;
let authRetryTimer = null;
/** @type {Status} */
let status = 'offline';

export function getStatus() {
  return status;
}

/** `fn(status)` now and on every change; returns an unsubscribe function. */
export function onStatus(fn) {
  statusListeners.add(fn);
  fn(status);
  return () => statusListeners.delete(fn);
}

function setStatus(next) {
  if (next === status) return;
  status = next;
  for (const fn of [...statusListeners]) fn(status);
}

/** The RPC call of the connection; rejects {code, message} (108: no such method). */
export function rpc(method, data) {
  if (!client) return Promise.reject({ code: 3, message: 'not connected' });
  return client.rpc(method, data);
}

export function connectedClient() {
  return client;
}

/** A LiveShape on this connection (call open() on it), or null before start(). */
export function shape(table, options) {
  return client ? new LiveShape(client, table, options) : null;
}

/** `?transport=http_stream` or `?transport=sse` in the page's URL: the HTTP transports
 * instead of WebSocket (behind proxies that block it, or to try them). */
function chosenTransport() {
  const asked = new URLSearchParams(location.search).get('transport');
  return ['http_stream', 'sse'].includes(asked) ? asked : 'websocket';
}

/** Connects (once per sign-in). */
export async function start() {
  if (client) return;
  const info = await request('GET', '/api/info', { auth: false });
  if (client) return;
  client = new SynclineClient(info.websocket_url, {
    transport: chosenTransport(),
    getToken: async () => {
      const force = forceRefresh;
      forceRefresh = false;
      return accessToken({ force });
    },
    name: 'syncline-web',
  });
  client.on('state', onClientState);
  client.on('error', (err) => {
    // 109: the server says the token expired (a skewed clock may think otherwise).
    if (err.code === 109) forceRefresh = true;
  });
  // Server-side subscriptions (the personal user:{id} channel) arrive as client events.
  for (const event of ['publication', 'subscribed', 'join', 'leave', 'unsubscribed']) {
    client.on(event, (ctx) => {
      const gap = event === 'subscribed' && ctx.wasRecovering && !ctx.recovered;
      dispatch(ctx.channel, event, event === 'subscribed' ? { ...ctx, gap } : ctx);
    });
  }
  for (const [channel, entry] of watched) {
    if (!entry.serverSide) entry.sub = attach(channel);
  }
  setStatus('connecting');
  if (navigator.onLine === false) setStatus('offline');
  else client.connect();
}

/** Disconnects and forgets every subscription (sign-out). */
export function stop() {
  const old = client;
  client = null;
  everConnected = false;
  authFailures = 0;
  clearTimeout(authRetryTimer);
  watched.clear();
  if (old) {
    old.off('state', onClientState);
    old.disconnect();
  }
  setStatus('offline');
}

function onClientState({ state, code }) {
  if (state === 'connected') {
    everConnected = true;
    authFailures = 0;
    setStatus('connected');
  } else if (state === 'connecting') {
    setStatus(everConnected ? 'reconnecting' : 'connecting');
  } else {
    setStatus('offline');
    // 3500 invalid token, 3005 expired: try again with a freshly refreshed token (getToken
    // refreshes), backing off in case the server keeps refusing it.
    if ((code === 3500 || code === 3005) && client && navigator.onLine !== false) {
      forceRefresh = true;
      const delay = Math.min(30_000, 250 * 2 ** authFailures++);
      clearTimeout(authRetryTimer);
      authRetryTimer = setTimeout(() => client?.connect(), delay);
    }
  }
}

window.addEventListener('offline', () => {
  if (!client) return;
  client.disconnect(); // subscriptions keep their offsets for the recovery
  setStatus('offline');
});

window.addEventListener('online', () => {
  if (!client) return;
  client.disconnect(); // restart the backoff: reconnect now, not after the current delay
  client.connect();
});

/**
 * Watches `channel`: handlers.publication(pub), .subscribed(ctx), .join(ctx), .leave(ctx),
 * .unsubscribed(ctx); `ctx.gap` on subscribed: publications were missed (reload the view).
 * `serverSide`: the server subscribes this connection itself (user:{id}).
 * @returns {() => void} stops watching (the last watcher unsubscribes)
 */
export function watch(channel, handlers, { serverSide = false, recoverable = true } = {}) {
  let entry = watched.get(channel);
  if (!entry) {
    entry = { sub: null, handlers: new Set(), serverSide, recoverable };
    watched.set(channel, entry);
    if (client && !serverSide) entry.sub = attach(channel);
  }
  entry.handlers.add(handlers);
  // A late watcher of a live subscription still learns that it is subscribed.
  if (entry.sub?.state === 'subscribed') {
    handlers.subscribed?.({ channel, recovered: false, wasRecovering: false, gap: false, late: true });
  }
  return () => {
    const current = watched.get(channel);
    if (current !== entry) return;
    entry.handlers.delete(handlers);
    if (entry.handlers.size === 0) {
      watched.delete(channel);
      entry.sub?.unsubscribe();
    }
  };
}

/** The live Subscription of a watched channel (presence, publish), or null. */
export function subscription(channel) {
  return watched.get(channel)?.sub ?? null;
}

function attach(channel) {
  const entry = watched.get(channel);
  const sub = client.subscribe(channel, { recoverable: entry?.recoverable !== false });
  for (const event of ['publication', 'subscribed', 'join', 'leave', 'unsubscribed', 'error']) {
    sub.on(event, (ctx) => {
      const entry = watched.get(channel);
      if (entry?.sub !== sub) return; // an older subscription of a channel watched again
      if (event === 'error' || (event === 'unsubscribed' && ctx.code)) {
        console.warn(`syncline: ${channel} ${event} ${ctx.code} ${ctx.message ?? ctx.reason ?? ''}`);
      }
      if (event === 'subscribed') {
        entry.failures = 0;
        // `gap`: publications were missed that this subscription will not deliver (a failed
        // recovery, or a refusal before it): the watcher reloads what it shows.
        ctx = { ...ctx, gap: Boolean(entry.gap || (ctx.wasRecovering && !ctx.recovered)) };
        entry.gap = false;
      }
      if (event === 'unsubscribed' && ctx.code && ctx.code !== 2000) {
        // Refused for a reason the client does not retry (permission denied during a
        // membership change, say): try again later while someone still watches it. What is
        // published meanwhile is not replayed (the new subscription has no position), so its
        // `subscribed` reports a gap.
        entry.sub = null;
        entry.gap = true;
        const delay = Math.min(60_000, 1000 * 2 ** (entry.failures ?? 0));
        entry.failures = (entry.failures ?? 0) + 1;
        setTimeout(() => {
          if (watched.get(channel) === entry && client && !entry.sub) entry.sub = attach(channel);
        }, delay);
        return;
      }
      // The server ended it (2000: no longer a member): forget it; a new watch resubscribes.
      if (event === 'unsubscribed') watched.delete(channel);
      dispatch(channel, event, ctx, entry);
    });
  }
  return sub;
}

function dispatch(channel, event, ctx, entry = watched.get(channel)) {
  if (!entry) return;
  for (const handlers of [...entry.handlers]) {
    try {
      handlers[event]?.(ctx);
    } catch (err) {
      console.error(`syncline: a ${event} handler of ${channel} threw`, err);
    }
  }
}
