// Names of users seen in rooms, presence and messages; unknown ids are fetched (batched, once).

import { request } from '../api.js';

const users = new Map();
const inflight = new Map();
const listeners = new Set();

/** Remembers what a room detail, a presence info or a user reply says about a user. */
export function remember(user) {
  const id = Number(user.id ?? user.user_id);
  if (!Number.isFinite(id)) return;
  const prev = users.get(id) ?? {};
  const next = { ...prev, id };
  if (user.username) next.username = user.username;
  if (user.display_name !== undefined) next.display_name = user.display_name;
  if (user.online !== undefined) next.online = user.online;
  if (user.last_seen_at !== undefined) next.last_seen_at = user.last_seen_at;
  users.set(id, next);
}

/** The user's known fields, or null while they are being fetched. */
export function lookup(id) {
  const user = users.get(Number(id));
  if (user?.username) return user;
  fetchUser(Number(id));
  return null;
}

/** `fn()` whenever a fetched user arrives (so the screen can redraw names). */
export function onUser(fn) {
  listeners.add(fn);
  return () => listeners.delete(fn);
}

function fetchUser(id) {
  if (!Number.isFinite(id) || inflight.has(id)) return;
  const task = request('GET', `/api/users/${id}`).then(
    (user) => {
      remember(user);
      for (const fn of [...listeners]) fn(id);
    },
    () => {
      users.set(id, { id, username: `user${id}`, display_name: '' });
    },
  );
  inflight.set(id, task);
}

export function clearDirectory() {
  users.clear();
  inflight.clear();
}
