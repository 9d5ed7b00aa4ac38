// The signed-in session: tokens in localStorage, silent refresh of the access token.
//
// The refresh token rotates on every use and presenting a rotated one revokes the whole
// session, so refreshes are serialized: one at a time per tab (a shared promise) and across
// tabs (a Web Lock; inside it the stored pair is re-read, so a tab that waited uses the pair
// another tab just got instead of replaying the old refresh token).

const KEY = 'syncline.session';
const LOCK = 'syncline.refresh';
// Refresh this long before expiry: a request must not reach the server with a token that
// expires on the way.
const MIN_VALIDITY_MS = 30_000;

/** @typedef {{access_token: string, refresh_token: string, user: object}} Stored */

const listeners = new Set();
let inflight = null;

/** Thrown when the server refused the refresh token: the user must sign in again. */
export class SessionEnded extends Error {
  constructor(code, message) {
    super(message || 'Your session has ended. Please sign in again.');
    this.code = code;
  }
}

/** @returns {Stored | null} */
export function load() {
  try {
    const value = JSON.parse(localStorage.getItem(KEY) || 'null');
    if (value && typeof value.refresh_token === 'string' && value.user) return value;
  } catch {
    // a corrupt entry is the same as none
  }
  return null;
}

export function currentUser() {
  return load()?.user ?? null;
}

/** Stores a TokenPair reply (register, login, refresh). */
export function store(pair) {
  const value = {
    access_token: pair.access_token,
    refresh_token: pair.refresh_token,
    user: pair.user ?? load()?.user ?? null,
  };
  localStorage.setItem(KEY, JSON.stringify(value));
  notify('stored');
}

export function updateUser(user) {
  const value = load();
  if (!value) return;
  value.user = user;
  localStorage.setItem(KEY, JSON.stringify(value));
  notify('user');
}

/** Forgets the tokens; `reason` is 'logout' or 'revoked'. */
export function clear(reason = 'logout') {
  const had = localStorage.getItem(KEY) !== null;
  localStorage.removeItem(KEY);
  if (had) notify(reason);
}

/** `fn(reason)` on 'stored', 'user', 'logout', 'revoked' (this tab or another). */
export function onChange(fn) {
  listeners.add(fn);
  return () => listeners.delete(fn);
}

function notify(reason) {
  for (const fn of [...listeners]) fn(reason);
}

// Another tab signed in or out: follow it.
window.addEventListener('storage', (event) => {
  if (event.key !== KEY) return;
  notify(event.newValue ? 'stored' : 'logout');
});

/** The `exp` claim of a JWT in ms, or 0 when it can't be read (treated as expired). */
export function expiresAt(token) {
  try {
    const part = token.split('.')[1].replace(/-/g, '+').replace(/_/g, '/');
    const claims = JSON.parse(atob(part.padEnd(part.length + ((4 - (part.length % 4)) % 4), '=')));
    return typeof claims.exp === 'number' ? claims.exp * 1000 : 0;
  } catch {
    return 0;
  }
}

function fresh(token) {
  return Boolean(token) && expiresAt(token) - Date.now() > MIN_VALIDITY_MS;
}

/**
 * A usable access token, refreshed first when it is missing, unreadable or about to expire.
 * `force`: refresh even if it looks fresh (the server said it is not).
 * @returns {Promise<string>} rejects with SessionEnded when there is no session left
 */
export async function accessToken({ force = false } = {}) {
  const value = load();
  if (!value) throw new SessionEnded('no_session', 'Please sign in.');
  if (!force && fresh(value.access_token)) return value.access_token;
  return refresh(value.access_token);
}

/** Refreshes once even if called many times at once; `stale` is the token known to be bad. */
function refresh(stale) {
  if (!inflight) {
    const run = () => refreshNow(stale);
    const task = navigator.locks ? navigator.locks.request(LOCK, run) : run();
    inflight = task.finally(() => {
      inflight = null;
    });
  }
  return inflight;
}

async function refreshNow(stale) {
  const value = load();
  if (!value) throw new SessionEnded('no_session', 'Please sign in.');
  // Another tab refreshed while this one waited for the lock.
  if (value.access_token !== stale && fresh(value.access_token)) return value.access_token;
  let response;
  try {
    response = await fetch('/api/auth/refresh', {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ refresh_token: value.refresh_token }),
    });
  } catch (err) {
    // Offline: keep the session, the caller retries later.
    throw new Error(`cannot reach the server (${err.message})`);
  }
  if (response.ok) {
    const pair = await response.json();
    store(pair);
    return pair.access_token;
  }
  let error = {};
  try {
    error = (await response.json()).error ?? {};
  } catch {
    // not JSON: a proxy's error page
  }
  if (response.status === 401 || response.status === 403) {
    clear('revoked');
    throw new SessionEnded(error.code ?? 'session_revoked');
  }
  throw new Error(error.message || `refresh failed (HTTP ${response.status})`);
}
