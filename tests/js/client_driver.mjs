#!/usr/bin/env node
// Remote control for src/syncline/web/syncline-client.js, for tests/gateway/test_js_client.py.
//
//   URL=ws://... TOKEN=<jwt> node client_driver.mjs
//
// stdin: one JSON command a line:
//   {"cmd": "connect"} | {"cmd": "disconnect"} | {"cmd": "quit"}
//   {"cmd": "subscribe", "channel": "orders"} | {"cmd": "unsubscribe", "channel": "orders"}
//   {"cmd": "rpc", "ref": 1, "method": "echo", "data": {...}}
//   {"cmd": "token", "token": "<jwt>"}          (the next getToken answer)
// stdout: one JSON event a line, {"event": <name>, ...}; command failures are
// {"event": "command_error", "cmd": ..., "message": ...}. Diagnostics go to stderr.
import readline from 'node:readline';
import WebSocket from 'ws';
import { SynclineClient } from '../../src/syncline/web/syncline-client.js';

const emit = (event, fields = {}) => process.stdout.write(JSON.stringify({ event, ...fields }) + '\n');

const url = process.env.URL;
if (!url) {
  process.stderr.write('usage: URL=ws://... [TOKEN=jwt] node client_driver.mjs\n');
  process.exit(2);
}

// getToken answers with tokens sent on stdin ("token" commands), in order.
const tokens = [];
const tokenWaiters = [];
async function getToken() {
  emit('get_token');
  if (tokens.length) return tokens.shift();
  return new Promise((resolve) => tokenWaiters.push(resolve));
}

const client = new SynclineClient(url, {
  token: process.env.TOKEN || '',
  getToken,
  WebSocket,
  minReconnectDelay: 100,
  maxReconnectDelay: 1000,
});
client.on('state', (ctx) => emit('state', ctx));
client.on('error', (ctx) => emit('error', ctx));
client.on('subscribed', (ctx) => emit('server_subscribed', ctx));
client.on('publication', (ctx) => emit('server_publication', ctx));

const subs = new Map();
function subscribe(channel) {
  const sub = client.subscribe(channel);
  subs.set(channel, sub);
  for (const name of ['subscribed', 'publication', 'unsubscribed', 'join', 'leave', 'error']) {
    sub.on(name, (ctx) => emit(name === 'error' ? 'sub_error' : name, { channel, ...ctx }));
  }
}

async function run(command) {
  switch (command.cmd) {
    case 'connect':
      return client.connect();
    case 'disconnect':
      return client.disconnect();
    case 'subscribe':
      return subscribe(command.channel);
    case 'unsubscribe':
      return subs.get(command.channel)?.unsubscribe();
    case 'token':
      if (tokenWaiters.length) tokenWaiters.shift()(command.token);
      else tokens.push(command.token);
      return undefined;
    case 'rpc':
      try {
        const data = await client.rpc(command.method, command.data);
        emit('rpc_result', { ref: command.ref, data: data ?? null });
      } catch (err) {
        emit('rpc_error', { ref: command.ref, code: err.code, message: err.message });
      }
      return undefined;
    case 'quit':
      return quit();
    default:
      throw new Error(`unknown command ${command.cmd}`);
  }
}

function quit() {
  client.disconnect();
  process.exit(0);
}

const input = readline.createInterface({ input: process.stdin });
input.on('line', (line) => {
  if (!line.trim()) return;
  let command;
  try {
    command = JSON.parse(line);
  } catch {
    emit('command_error', { message: `not JSON: ${line}` });
    return;
  }
  Promise.resolve()
    .then(() => run(command))
    .catch((err) => emit('command_error', { cmd: command.cmd, message: String(err?.message ?? err) }));
});
input.on('close', quit);
emit('ready');
