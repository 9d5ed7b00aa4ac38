#!/usr/bin/env node
// Drives the official `centrifuge` JS SDK against a Syncline server for tests/gateway/test_sdk_js.py.
//
//   node sdk_client.js <scenario>
//
// Environment:
//   URL        WebSocket endpoint (required)
//   TOKEN      initial connection token (optional)
//   CHANNEL    channel for the "subscribe" scenario
//   TOKENS     JSON list of tokens getToken hands out first ("refresh" scenario)
//   RPC_CALLS  JSON list of {"method": ..., "data": ...} for the "rpc" scenario
//   DELTA      delta type to ask for when subscribing to CHANNEL (e.g. "fossil")
//   PROTOBUF   "1": the SDK's protobuf build (binary frames); payloads still print as JSON,
//              as they are JSON bytes on the wire (decoded here, and encoded for rpc)
//   TRANSPORT  "http_stream" or "sse": that transport only (WebSocket off), at URL's host's
//              /connection/<TRANSPORT>, with commands POSTed to /emulation
//
// Scenarios:
//   subscribe  connect, subscribe to CHANNEL, print events
//   rpc        connect, run RPC_CALLS in order, print each result or error code, then "rpc_done"
//   refresh    connect with a getToken that hands out TOKENS, then tokens read from stdin
//              ("token <jwt>"); with CHANNEL set, also subscribe to it
//
// stdin commands, one a line: "disconnect", "connect", "token <jwt>", "rpc <method> <json>",
// "presence <channel>", "presence_stats <channel>", "history <channel> [<json options>]",
// "publish <channel> <json data>", "delta_stats" (the CHANNEL subscription's sub.deltaStats()),
// "quit". The client-level calls print what the SDK returns as it is (a missing field as
// "<undefined>"), to check the typed results. The script stops when stdin closes or on "quit".
//
// stdout: one JSON object a line, {"event": <name>, ...}. Diagnostics go to stderr.
'use strict';

const readline = require('readline');
const protobuf = process.env.PROTOBUF === '1';
const { Centrifuge } = require(protobuf ? 'centrifuge/build/protobuf' : 'centrifuge');
const WebSocket = require('ws');

function emit(event, fields) {
  process.stdout.write(JSON.stringify({ event, ...fields }) + '\n');
}

function errorFields(err) {
  if (err === null || err === undefined) return {};
  return {
    code: err.code === undefined ? null : err.code,
    message: err.message === undefined ? String(err) : err.message,
    temporary: err.temporary === true,
  };
}

// With Protobuf, payloads are bytes: Syncline's are JSON, so they read and print the same.
function fromWire(data) {
  return protobuf && data instanceof Uint8Array ? JSON.parse(new TextDecoder().decode(data)) : data;
}

function toWire(value) {
  return protobuf ? new TextEncoder().encode(JSON.stringify(value)) : value;
}

function parseJsonEnv(name, fallback) {
  const raw = process.env[name];
  if (raw === undefined || raw === '') return fallback;
  return JSON.parse(raw);
}

const scenario = process.argv[2];
const url = process.env.URL;
if (!url || !['subscribe', 'rpc', 'refresh'].includes(scenario)) {
  process.stderr.write('usage: URL=ws://... node sdk_client.js subscribe|rpc|refresh\n');
  process.exit(2);
}

// Tokens for getToken: TOKENS first, then "token <jwt>" lines from stdin.
const queuedTokens = parseJsonEnv('TOKENS', []);
const tokenWaiters = [];
let tokenRequests = 0;

function getToken() {
  tokenRequests += 1;
  emit('get_token', { n: tokenRequests });
  if (queuedTokens.length > 0) return Promise.resolve(queuedTokens.shift());
  return new Promise((resolve) => tokenWaiters.push(resolve));
}

function supplyToken(token) {
  const waiter = tokenWaiters.shift();
  if (waiter) waiter(token);
  else queuedTokens.push(token);
}

const options = {
  websocket: WebSocket, // Node < 22 has no global WebSocket
  minReconnectDelay: 100,
  maxReconnectDelay: 1000,
};
if (process.env.TOKEN) options.token = process.env.TOKEN;
if (scenario === 'refresh') options.getToken = getToken;

// The HTTP transports: the SDK's emulation, with the endpoint Centrifugo serves them at.
let endpoint = url;
const transport = process.env.TRANSPORT;
if (transport) {
  const base = url.replace(/^ws/, 'http').replace(/\/connection\/websocket.*$/, '');
  endpoint = [{ transport, endpoint: `${base}/connection/${transport}` }];
  options.emulationEndpoint = `${base}/emulation`;
  // Node 20 has no EventSource: the npm package (the WHATWG one over fetch) stands in for it.
  if (transport === 'sse') options.eventsource = require('eventsource').EventSource;
}

const client = new Centrifuge(endpoint, options);

client.on('connecting', (ctx) => emit('connecting', { code: ctx.code, reason: ctx.reason }));
client.on('connected', (ctx) => emit('connected', { client: ctx.client, transport: ctx.transport }));
client.on('disconnected', (ctx) => emit('disconnected', { code: ctx.code, reason: ctx.reason }));
client.on('error', (ctx) => emit('error', { type: ctx.type, ...errorFields(ctx.error) }));
client.on('subscribed', (ctx) => emit('server_subscribed', { channel: ctx.channel }));
client.on('publication', (ctx) =>
  emit('server_publication', { channel: ctx.channel, offset: ctx.offset, data: fromWire(ctx.data) }),
);

function subscribe(channel) {
  const subOptions = {};
  if (process.env.DELTA) subOptions.delta = process.env.DELTA;
  const sub = client.newSubscription(channel, subOptions);
  sub.on('subscribing', (ctx) =>
    emit('subscribing', { channel: ctx.channel, code: ctx.code, reason: ctx.reason }),
  );
  sub.on('subscribed', (ctx) =>
    emit('subscribed', {
      channel: ctx.channel,
      wasRecovering: ctx.wasRecovering,
      recovered: ctx.recovered,
      recoverable: ctx.recoverable,
      positioned: ctx.positioned,
      streamPosition: ctx.streamPosition === undefined ? null : ctx.streamPosition,
    }),
  );
  sub.on('unsubscribed', (ctx) =>
    emit('unsubscribed', { channel: ctx.channel, code: ctx.code, reason: ctx.reason }),
  );
  sub.on('error', (ctx) =>
    emit('subscription_error', { channel: ctx.channel, type: ctx.type, ...errorFields(ctx.error) }),
  );
  sub.on('publication', (ctx) =>
    emit('publication', {
      channel: ctx.channel,
      offset: ctx.offset === undefined ? null : ctx.offset,
      data: fromWire(ctx.data),
      info: ctx.info === undefined ? null : { user: ctx.info.user, client: ctx.info.client },
    }),
  );
  sub.subscribe();
  return sub;
}

// JSON.stringify drops undefined: show it, since a missing field is what these checks are for.
function shown(value) {
  return value === undefined ? '<undefined>' : value;
}

async function call(kind, channel, options) {
  try {
    if (kind === 'presence') {
      const result = await client.presence(channel);
      emit('presence_result', { channel, clients: shown(result.clients) });
    } else if (kind === 'presence_stats') {
      const result = await client.presenceStats(channel);
      emit('presence_stats_result', {
        channel,
        numClients: shown(result.numClients),
        numUsers: shown(result.numUsers),
      });
    } else if (kind === 'publish') {
      const result = await client.publish(channel, toWire(options));
      emit('publish_result', { channel, result });
    } else {
      const result = await client.history(channel, options);
      emit('history_result', {
        channel,
        publications: result.publications.map((p) => ({
          offset: shown(p.offset),
          data: fromWire(p.data),
          user: p.info === undefined ? null : p.info.user,
        })),
        epoch: shown(result.epoch),
        offset: shown(result.offset),
      });
    }
  } catch (err) {
    emit('call_error', { kind, channel, ...errorFields(err) });
  }
}

async function rpc(method, data) {
  try {
    const result = await client.rpc(method, toWire(data));
    emit('rpc_result', { method, data: result.data === undefined ? null : fromWire(result.data) });
  } catch (err) {
    emit('rpc_error', { method, ...errorFields(err) });
  }
}

let stopping = false;
function stop(code) {
  if (stopping) return;
  stopping = true;
  try {
    client.disconnect();
  } catch (err) {
    process.stderr.write(`disconnect failed: ${err}\n`);
  }
  emit('exit', {});
  // Let stdout drain before leaving: it is a pipe, written asynchronously.
  process.stdout.write('', () => process.exit(code));
}

const input = readline.createInterface({ input: process.stdin, terminal: false });
input.on('line', (raw) => {
  const line = raw.trim();
  if (line === '') return;
  const [command, ...rest] = line.split(' ');
  const argument = rest.join(' ');
  if (command === 'quit') stop(0);
  else if (command === 'disconnect') client.disconnect();
  else if (command === 'connect') client.connect();
  else if (command === 'token') supplyToken(argument);
  else if (command === 'rpc') {
    const space = argument.indexOf(' ');
    const method = space === -1 ? argument : argument.slice(0, space);
    const data = space === -1 ? null : JSON.parse(argument.slice(space + 1));
    rpc(method, data);
  } else if (['presence', 'presence_stats', 'history', 'publish'].includes(command)) {
    const space = argument.indexOf(' ');
    const channel = space === -1 ? argument : argument.slice(0, space);
    const options = space === -1 ? {} : JSON.parse(argument.slice(space + 1));
    call(command, channel, options);
  } else if (command === 'delta_stats' && mainSub !== null) {
    emit('delta_stats', mainSub.deltaStats());
  } else emit('bad_command', { line });
});
input.on('close', () => stop(0));

process.on('uncaughtException', (err) => {
  process.stderr.write(`uncaught: ${err && err.stack ? err.stack : err}\n`);
  emit('fatal', { message: String(err) });
  stop(1);
});
process.on('unhandledRejection', (err) => {
  process.stderr.write(`unhandled rejection: ${err && err.stack ? err.stack : err}\n`);
  emit('fatal', { message: String(err && err.message ? err.message : err) });
  stop(1);
});

let mainSub = null;
if (process.env.CHANNEL && (scenario === 'subscribe' || scenario === 'refresh')) {
  mainSub = subscribe(process.env.CHANNEL);
}
client.connect();

if (scenario === 'rpc') {
  (async () => {
    for (const call of parseJsonEnv('RPC_CALLS', [])) {
      await rpc(call.method, call.data === undefined ? null : call.data);
    }
    emit('rpc_done', {});
  })();
}
