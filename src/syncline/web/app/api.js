// The REST API: JSON requests with the access token, one silent refresh and retry on 401,
// and errors as ApiError carrying the server's {"error": {"code", "message"}}.

import { accessToken, SessionEnded } from './session.js';

const TIMEOUT_MS = 15_000;

export class ApiError extends Error {
  /** @param {number} status @param {string} code @param {string} message */
  constructor(status, code, message, { retryAfter = null } = {}) {
    super(message);
    this.status = status;
    this.code = code;
    this.retryAfter = retryAfter;
  }
}

/**
 * @param {string} method
 * @param {string} path e.g. /api/rooms
 * @param {{body?: any, query?: Record<string, any>, auth?: boolean}} [options]
 */
export async function request(method, path, { body, query, auth = true } = {}) {
  let url = path;
  if (query) {
    const params = new URLSearchParams();
    for (const [key, value] of Object.entries(query)) {
      if (value !== undefined && value !== null && value !== '') params.set(key, String(value));
    }
    const text = params.toString();
    if (text) url += `?${text}`;
  }
  let response = await send(method, url, body, auth ? await token() : null);
  if (response.status === 401 && auth) {
    // The token expired on the way or the server restarted with sessions intact: one retry.
    response = await send(method, url, body, await token(true));
  }
  return parse(response);
}

async function token(force = false) {
  try {
    return await accessToken({ force });
  } catch (err) {
    if (err instanceof SessionEnded) throw new ApiError(401, err.code, err.message);
    throw new ApiError(0, 'network', err.message);
  }
}

async function send(method, url, body, bearer) {
  const headers = { Accept: 'application/json' };
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  if (bearer) headers.Authorization = `Bearer ${bearer}`;
  const controller = new AbortController();
  const timer = setTimeout(() => controller.abort(), TIMEOUT_MS);
  try {
    return await fetch(url, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      signal: controller.signal,
    });
  } catch (err) {
    const what = err.name === 'AbortError' ? 'the server did not answer' : 'cannot reach the server';
    throw new ApiError(0, 'network', `Network problem: ${what}.`);
  } finally {
    clearTimeout(timer);
  }
}

async function parse(response) {
  if (response.status === 204) return null;
  let data = null;
  try {
    data = await response.json();
  } catch {
    // an empty or non-JSON body
  }
  if (response.ok) return data;
  const error = data?.error ?? {};
  const retry = Number(response.headers.get('Retry-After')) || null;
  throw new ApiError(
    response.status,
    error.code ?? `http_${response.status}`,
    error.message ?? `The server answered ${response.status}.`,
    { retryAfter: retry },
  );
}

export const get = (path, query) => request('GET', path, { query });
export const post = (path, body) => request('POST', path, { body: body ?? {} });
export const patch = (path, body) => request('PATCH', path, { body });
export const del = (path) => request('DELETE', path);
