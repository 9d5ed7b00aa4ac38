#!/usr/bin/env node
// A shape with the official `centrifuge` JS SDK, unchanged: shape.open by RPC, then a
// subscription whose getState loads the shape's rows (shape.open, shape.page) and returns the
// position they stand at; publications are applied to a Map by primary key.
//
// Environment: URL, TOKEN, SHAPE (JSON: {table, where?, columns?}).
// stdout: one JSON object a line: {"event": "rows", "rows": [...rows sorted by key]} after each
// change, {"event": "error", ...}. stdin: "disconnect", "connect", "quit".
'use strict';

const readline = require('readline');
const { Centrifuge } = require('centrifuge');
const WebSocket = require('ws');

const request = JSON.parse(process.env.SHAPE);
const client = new Centrifuge(process.env.URL, { token: process.env.TOKEN, websocket: WebSocket });
let key = [];
let rows = new Map();

function emit(event, fields) {
  process.stdout.write(JSON.stringify({ event, ...fields }) + '\n');
}

function keyOf(value) {
  return JSON.stringify(key.map((name) => value[name]));
}

function show() {
  const sorted = [...rows.entries()].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  emit('rows', { rows: sorted.map(([, row]) => row) });
}

async function load() {
  const opened = (await client.rpc('shape.open', request)).data;
  key = opened.key;
  const loaded = new Map();
  let page = opened;
  for (;;) {
    for (const row of page.rows) loaded.set(keyOf(row), row);
    if (!page.cursor) break;
    page = (await client.rpc('shape.page', { cursor: page.cursor })).data;
  }
  rows = loaded;
  return opened;
}

function apply(body) {
  if (body.op === 'reset') return false;
  if (body.op === 'truncate') rows.clear();
  else {
    if (body.old_key) rows.delete(keyOf(body.old_key));
    if (body.op === 'delete') rows.delete(keyOf(body.key));
    else rows.set(keyOf(body.key), body.row);
  }
  return true;
}

async function main() {
  client.connect();
  await client.ready(5000);
  let first = await load();
  const sub = client.newSubscription(first.channel, {
    getState: async () => {
      // The first call uses the state read above; a later one (recovery failed) reads again.
      const opened = first ?? (await load());
      first = null;
      show();
      return { offset: opened.offset, epoch: opened.epoch };
    },
  });
  sub.on('publication', (ctx) => {
    if (apply(ctx.data)) show();
    else emit('reset', {});
  });
  sub.on('error', (ctx) => emit('error', { code: ctx.error.code, message: ctx.error.message }));
  sub.subscribe();
}

const input = readline.createInterface({ input: process.stdin });
input.on('line', (line) => {
  const command = line.trim();
  if (command === 'disconnect') client.disconnect();
  else if (command === 'connect') client.connect();
  else if (command === 'quit') {
    client.disconnect();
    process.exit(0);
  }
});
input.on('close', () => process.exit(0));
main().catch((err) => {
  emit('error', { message: String(err && err.message ? err.message : JSON.stringify(err)) });
});
