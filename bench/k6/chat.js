// Chat load test for Syncline (run by `syncline bench chat`, or `k6 run bench/k6/chat.js`).
//
// Scenarios (SCENARIOS=ladder,post):
//   ladder  the seeds' Artillery ladder, 5 -> 800 virtual users (LADDER_SCALE=1 is the full
//           18 minutes): each user logs in, connects to the gateway with its access token
//           (Centrifuge JSON protocol), subscribes to the global room, posts a message every
//           MESSAGE_INTERVAL_S over REST and receives everyone's; delivery latency is measured
//           from the send time carried in the message body.
//   post    POST /api/rooms/{global}/messages at POST_RATE requests/s for POST_SECONDS
//           (the target: >= 2,000 req/s on one worker with p99 <= 50 ms).
//   history GET /api/rooms/{global}/messages (the newest page of 50) at POST_RATE for POST_SECONDS.
//   rpc     chat.send over the WebSocket at POST_RATE for POST_SECONDS: RPC_SOCKETS connections,
//           each sending on a timer (latency: RPC sent -> its reply).
//
// Environment: BASE_URL (http://127.0.0.1:8000), WS_URL (else from GET /api/info), USERS (the
// pool of accounts registered in setup), SCENARIOS, LADDER_SCALE, MESSAGE_INTERVAL_S, POST_RATE,
// POST_SECONDS, RPC_SOCKETS; TARGET_URL: where post and history send their requests (default
// BASE_URL; a peer server on the same database and key, setup still registers at BASE_URL);
// USERS_FILE: accounts already signed in ({"users": [{username, token}]}, as `syncline bench
// chat` writes it) instead of registering USERS in setup, so that no password hashing falls
// inside the run whose server CPU time is measured.
import http from 'k6/http';
import ws from 'k6/ws';
import { check, sleep } from 'k6';
import { Counter, Rate, Trend } from 'k6/metrics';
import exec from 'k6/execution';

const BASE = (__ENV.BASE_URL || 'http://127.0.0.1:8000').replace(/\/$/, '');
const USERS = Number(__ENV.USERS || 100);
const SCENARIOS = (__ENV.SCENARIOS || 'ladder,post').split(',').map((s) => s.trim());
const SCALE = Number(__ENV.LADDER_SCALE || 1);
const INTERVAL_S = Number(__ENV.MESSAGE_INTERVAL_S || 10);
const POST_RATE = Number(__ENV.POST_RATE || 2000);
const POST_SECONDS = Number(__ENV.POST_SECONDS || 30);
const TARGET = (__ENV.TARGET_URL || BASE).replace(/\/$/, '');
const RPC_SOCKETS = Number(__ENV.RPC_SOCKETS || 50);
const PRESET = __ENV.USERS_FILE ? JSON.parse(open(__ENV.USERS_FILE)).users : null;
const PASSWORD = 'k6-bench-password-1';
const JSON_HEADERS = { 'Content-Type': 'application/json' };
// An access token lives 15 minutes; log in again well before that.
const TOKEN_MAX_AGE_MS = 10 * 60 * 1000;

const chatPostMs = new Trend('chat_post_ms', true);
const chatPosts = new Counter('chat_posts');
const chatPostFailed = new Rate('chat_post_failed');
const chatPostRateLimited = new Counter('chat_post_rate_limited');
const chatHistoryMs = new Trend('chat_history_ms', true);
const chatHistories = new Counter('chat_history_reads');
const chatHistoryFailed = new Rate('chat_history_failed');
const chatRpcMs = new Trend('chat_rpc_ms', true);
const chatRpcs = new Counter('chat_rpcs');
const chatRpcFailed = new Rate('chat_rpc_failed');
const deliveryMs = new Trend('chat_delivery_ms', true);
const wsConnectMs = new Trend('ws_connect_ms', true);
const wsErrors = new Counter('ws_errors');
const sent = new Counter('ladder_messages_sent');
const received = new Counter('ladder_messages_received');
const loginFailed = new Rate('login_failed');

// The seeds' Artillery phases: users, seconds.
const PHASES = [
  [5, 20], [10, 30], [25, 60], [50, 90], [100, 120], [200, 150], [400, 180], [600, 210], [800, 240],
];

function ladderStages() {
  const stages = [];
  for (const [users, secs] of PHASES) {
    const total = Math.max(2, Math.round(secs * SCALE));
    const ramp = Math.max(1, Math.round(total / 10));
    stages.push({ duration: `${ramp}s`, target: users });
    stages.push({ duration: `${total - ramp}s`, target: users });
  }
  return stages;
}

function ladderSeconds() {
  return PHASES.reduce((sum, [, secs]) => sum + Math.max(2, Math.round(secs * SCALE)), 0);
}

const scenarios = {};
if (SCENARIOS.includes('ladder')) {
  scenarios.ladder = {
    executor: 'ramping-vus', exec: 'ladder', startVUs: 0, stages: ladderStages(),
    gracefulRampDown: '5s', gracefulStop: '10s',
  };
}
if (SCENARIOS.includes('post')) {
  scenarios.post = {
    executor: 'constant-arrival-rate', exec: 'post', rate: POST_RATE, timeUnit: '1s',
    duration: `${POST_SECONDS}s`, preAllocatedVUs: Math.min(POST_RATE, 200),
    maxVUs: Math.max(POST_RATE, 200), gracefulStop: '5s',
    startTime: SCENARIOS.includes('ladder') ? `${ladderSeconds() + 15}s` : '0s',
  };
}

if (SCENARIOS.includes('history')) {
  scenarios.history = {
    executor: 'constant-arrival-rate', exec: 'history', rate: POST_RATE, timeUnit: '1s',
    duration: `${POST_SECONDS}s`, preAllocatedVUs: Math.min(POST_RATE, 200),
    maxVUs: Math.max(POST_RATE, 200), gracefulStop: '5s',
  };
}
if (SCENARIOS.includes('rpc')) {
  scenarios.rpc = {
    executor: 'per-vu-iterations', exec: 'rpc', vus: RPC_SOCKETS, iterations: 1,
    maxDuration: `${POST_SECONDS + 30}s`,
  };
}

export const options = {
  scenarios,
  setupTimeout: '300s',
  // No-op thresholds, so that the summary export carries the per-scenario sub-metrics.
  thresholds: {
    'http_req_duration{scenario:post}': ['max>=0'],
    'http_req_duration{scenario:ladder}': ['max>=0'],
  },
  summaryTrendStats: ['avg', 'min', 'med', 'max', 'p(90)', 'p(95)', 'p(99)'],
};

function retryAfter(res) {
  return Number(res.headers['Retry-After'] || res.headers['retry-after'] || 1);
}

function login(username) {
  for (let attempt = 0; attempt < 20; attempt++) {
    const res = http.post(`${BASE}/api/auth/login`, JSON.stringify({ username, password: PASSWORD }),
      { headers: JSON_HEADERS, tags: { name: 'login' } });
    if (res.status === 429) { sleep(retryAfter(res)); continue; }
    loginFailed.add(res.status !== 200);
    return res.status === 200 ? res.json('access_token') : null;
  }
  loginFailed.add(true);
  return null;
}

function register(username) {
  const body = { username, email: `${username}@bench.invalid`, password: PASSWORD, display_name: username };
  for (let attempt = 0; attempt < 20; attempt++) {
    const res = http.post(`${BASE}/api/auth/register`, JSON.stringify(body),
      { headers: JSON_HEADERS, tags: { name: 'register' } });
    if (res.status === 429) { sleep(retryAfter(res)); continue; }
    if (res.status === 201) return res.json('access_token');
    if (res.status === 409) return login(username);
    throw new Error(`register ${username}: ${res.status} ${res.body}`);
  }
  throw new Error(`register ${username}: rate limited`);
}

function auth(token) {
  return { headers: { ...JSON_HEADERS, Authorization: `Bearer ${token}` } };
}

export function setup() {
  const res = http.get(`${BASE}/api/info`);
  const wsUrl = __ENV.WS_URL || (res.status === 200 ? res.json('websocket_url') : null);
  if (!wsUrl) throw new Error(`no WebSocket URL: GET /api/info answered ${res.status}`);
  const users = PRESET ? PRESET.slice() : [];
  const run = `${Date.now().toString(36)}${Math.floor(Math.random() * 1e4)}`;
  for (let i = 0; !PRESET && i < USERS; i++) {
    const username = `k6_${run}_${i}`;
    users.push({ username, token: register(username) });
  }
  if (!users.length) throw new Error('no users (USERS_FILE is empty)');
  const rooms = http.get(`${BASE}/api/rooms`, auth(users[0].token));
  if (rooms.status !== 200) throw new Error(`GET /api/rooms answered ${rooms.status}`);
  const global = rooms.json().find((room) => room.kind === 'global');
  if (!global) throw new Error('no global room in GET /api/rooms');
  return { wsUrl, room: global.id, users };
}

function postMessage(data, token, body, tags) {
  const url = `${TARGET}/api/rooms/${data.room}/messages`;
  let res = http.post(url, JSON.stringify({ body }), { ...auth(token), tags });
  // A keep-alive connection the server closed while idle fails with status 0: send again once.
  if (res.status === 0) res = http.post(url, JSON.stringify({ body }), { ...auth(token), tags });
  if (res.status === 429) chatPostRateLimited.add(1);
  return res;
}

// The post scenario: tokens from setup (registered users), requests as fast as the rate says.
export function post(data) {
  const user = data.users[exec.scenario.iterationInTest % data.users.length];
  const res = postMessage(data, user.token, `k6 post ${exec.scenario.iterationInTest}`, { name: 'post message' });
  const ok = check(res, { 'message posted': (r) => r.status === 201 });
  chatPosts.add(1);
  chatPostMs.add(res.timings.duration);
  chatPostFailed.add(!ok);
}

// The history scenario: the newest page, as a client opening the room asks it.
export function history(data) {
  const user = data.users[exec.scenario.iterationInTest % data.users.length];
  const url = `${TARGET}/api/rooms/${data.room}/messages`;
  const params = { ...auth(user.token), tags: { name: 'history' } };
  let res = http.get(url, params);
  if (res.status === 0) res = http.get(url, params);
  const ok = check(res, { 'history read': (r) => r.status === 200 });
  chatHistories.add(1);
  chatHistoryMs.add(res.timings.duration);
  chatHistoryFailed.add(!ok);
}

// The rpc scenario: one socket per VU, chat.send on a timer so that all of them together offer
// POST_RATE sends/s; each send's latency is from the frame sent to its reply.
export function rpc(data) {
  const user = data.users[(exec.vu.idInTest - 1) % data.users.length];
  const everyMs = (1000 * RPC_SOCKETS) / POST_RATE;
  const pending = {};
  let nextId = 10;
  ws.connect(data.wsUrl, {}, (socket) => {
    socket.on('open', () => socket.send(JSON.stringify({ id: 1, connect: { token: user.token, name: 'k6' } })));
    socket.on('message', (frame) => {
      const now = Date.now();
      for (const line of frame.split('\n')) {
        if (!line) continue;
        if (line === '{}') { socket.send('{}'); continue; }
        const msg = JSON.parse(line);
        if (msg.id === 1) {
          socket.setInterval(() => {
            const id = nextId++;
            pending[id] = Date.now();
            const send = { room_id: data.room, body: `k6 rpc ${id} ${exec.vu.idInTest}` };
            socket.send(JSON.stringify({ id, rpc: { method: 'chat.send', data: send } }));
          }, everyMs);
          socket.setTimeout(() => socket.close(), POST_SECONDS * 1000);
          continue;
        }
        if (msg.id && pending[msg.id] !== undefined) {
          chatRpcs.add(1);
          chatRpcMs.add(now - pending[msg.id]);
          chatRpcFailed.add(Boolean(msg.error));
          delete pending[msg.id];
        }
      }
    });
    socket.on('error', () => wsErrors.add(1));
  });
  for (const id of Object.keys(pending)) { chatRpcs.add(1); chatRpcFailed.add(true); delete pending[id]; }
}

let vuToken = null;
let vuTokenAt = 0;

// The ladder scenario: one WebSocket session per iteration, a few messages each way.
export function ladder(data) {
  const user = data.users[(exec.vu.idInTest - 1) % data.users.length];
  if (vuToken === null || Date.now() - vuTokenAt > TOKEN_MAX_AGE_MS) {
    vuToken = login(user.username);
    vuTokenAt = Date.now();
    if (vuToken === null) { sleep(1); return; }
  }
  const token = vuToken;
  const channel = `room:${data.room}`;
  const sessionMs = INTERVAL_S * 1000 * 3;
  const started = Date.now();
  const res = ws.connect(data.wsUrl, {}, (socket) => {
    let subscribed = false;
    socket.on('open', () => {
      wsConnectMs.add(Date.now() - started);
      socket.send(`${JSON.stringify({ id: 1, connect: { token, name: 'k6' } })}\n${JSON.stringify({ id: 2, subscribe: { channel } })}`);
    });
    socket.on('message', (frame) => {
      const now = Date.now();
      for (const line of frame.split('\n')) {
        if (!line) continue;
        if (line === '{}') { socket.send('{}'); continue; } // server ping -> pong
        const msg = JSON.parse(line);
        if (msg.error) { wsErrors.add(1); continue; }
        if (msg.id === 2) { subscribed = true; continue; }
        const pub = msg.push && msg.push.pub;
        const row = pub && pub.data && pub.data.row;
        if (row && typeof row.body === 'string' && row.body.startsWith('k6 ladder ')) {
          received.add(1);
          deliveryMs.add(now - Number(row.body.split(' ')[2]));
        }
      }
    });
    socket.on('error', () => wsErrors.add(1));
    // Post over REST on a timer: the message comes back through capture and the gateway.
    socket.setInterval(() => {
      if (!subscribed) return;
      const res2 = postMessage(data, token, `k6 ladder ${Date.now()} ${exec.vu.idInTest}`, { name: 'ladder message' });
      if (res2.status === 201) sent.add(1);
    }, INTERVAL_S * 1000 * (0.5 + Math.random()));
    socket.setTimeout(() => socket.close(), sessionMs);
  });
  check(res, { 'websocket upgraded': (r) => r && r.status === 101 });
}
