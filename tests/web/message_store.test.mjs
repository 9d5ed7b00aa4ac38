// The chat's message bookkeeping (src/syncline/web/app/chat/messages.js) on plain data:
// run by test_message_store.py with `node --test`.
import assert from 'node:assert/strict';
import { test } from 'node:test';

import { MessageStore, seenMarkers } from '../../src/syncline/web/app/chat/messages.js';

const row = (id, fields = {}) => ({
  id,
  room_id: 1,
  user_id: 7,
  body: `m${id}`,
  client_msg_id: null,
  created_at: '2026-01-01T00:00:00+00:00',
  edited_at: null,
  deleted_at: null,
  ...fields,
});

test('a message that arrives twice (REST, stream, recovery) is kept once', () => {
  const store = new MessageStore();
  assert.equal(store.upsert(row(1)), true);
  assert.equal(store.upsert(row(1)), false);
  assert.equal(store.upsert(row(1), { fromStream: true }), true); // now seen live
  assert.equal(store.upsert(row(1), { fromStream: true }), false);
  store.upsert(row(3));
  store.upsert(row(2));
  assert.deepEqual(store.list().map((m) => m.id), [1, 2, 3]);
  assert.equal(store.oldestId(), 1);
  assert.equal(store.newestId(), 3);
});

test('an optimistic message is replaced by its row, matched by client_msg_id', () => {
  const store = new MessageStore();
  store.addPending({ client_msg_id: 'c1', room_id: 1, user_id: 7, body: 'hi' });
  const [pending] = store.list();
  assert.equal(pending.id, null);
  assert.equal(store.stateOf(pending), 'sending');
  store.setPendingState('c1', 'failed');
  assert.equal(store.stateOf(store.list()[0]), 'failed');

  store.upsert(row(10, { client_msg_id: 'c1', body: 'hi' })); // the POST reply
  assert.equal(store.pending.size, 0);
  assert.equal(store.stateOf(store.list()[0]), 'sent');
  store.upsert(row(10, { client_msg_id: 'c1', body: 'hi' }), { fromStream: true });
  assert.deepEqual(store.list().map((m) => [m.id, store.stateOf(m)]), [[10, 'confirmed']]);
});

test("another author's client_msg_id does not take my pending message", () => {
  const store = new MessageStore();
  store.addPending({ client_msg_id: 'same', room_id: 1, user_id: 7, body: 'mine' });
  store.upsert(row(5, { user_id: 8, client_msg_id: 'same', body: 'theirs' }));
  assert.deepEqual(store.list().map((m) => m.body), ['theirs', 'mine']);
});

test('an older version never overwrites a newer one (edits, deletions)', () => {
  const store = new MessageStore();
  store.upsert(row(1, { body: 'edited', edited_at: '2026-01-01T00:05:00+00:00' }));
  store.upsert(row(1, { body: 'original' })); // a late REST page
  assert.equal(store.byId.get(1).body, 'edited');
  store.upsert(row(1, { body: '', deleted_at: '2026-01-01T00:06:00+00:00' }));
  store.upsert(row(1, { body: 'edited again', edited_at: '2026-01-01T00:07:00+00:00' }));
  assert.equal(store.byId.get(1).deleted_at, '2026-01-01T00:06:00+00:00');
  assert.equal(store.remove(1), true);
  assert.equal(store.remove(1), false);
  assert.deepEqual(store.list(), []);
});

test('history loaded before this page sent anything shows as confirmed', () => {
  const store = new MessageStore();
  store.upsert(row(1, { client_msg_id: 'from-another-tab' }));
  assert.equal(store.stateOf(store.list()[0]), 'confirmed');
});

test('after a gap, what was sent until then shows as confirmed; later sends wait for the stream', () => {
  const store = new MessageStore();
  store.addPending({ client_msg_id: 'a', room_id: 1, user_id: 7, body: 'stored, maybe missed' });
  store.upsert(row(1, { client_msg_id: 'a' }));
  store.addPending({ client_msg_id: 'b', room_id: 1, user_id: 7, body: 'on its way' });
  assert.equal(store.stateOf(store.byId.get(1)), 'sent');
  const before = store.version;
  store.settleSent(); // the room's subscription started afresh (refused, then retried)
  assert.ok(store.version > before);
  store.upsert(row(2, { client_msg_id: 'b' })); // its reply, after the new subscription
  store.addPending({ client_msg_id: 'c', room_id: 1, user_id: 7, body: 'sent after it' });
  store.upsert(row(3, { client_msg_id: 'c' }));
  assert.deepEqual(store.list().map((m) => store.stateOf(m)), ['confirmed', 'confirmed', 'sent']);
  store.upsert(row(3, { client_msg_id: 'c' }), { fromStream: true });
  assert.equal(store.stateOf(store.byId.get(3)), 'confirmed');
});

test("'seen by' sits under the newest message each reader has read", () => {
  const messages = [row(1, { user_id: 1 }), row(2, { user_id: 2 }), row(3, { user_id: 1 })];
  const members = [
    { user_id: 1, last_read_message_id: 3 }, // me: never shown
    { user_id: 2, last_read_message_id: 3 },
    { user_id: 3, last_read_message_id: 2 },
    { user_id: 4, last_read_message_id: null }, // never read anything
    { user_id: 5, last_read_message_id: 99 }, // read past what is loaded: the newest loaded
  ];
  const markers = seenMarkers(messages, members, 1);
  assert.deepEqual([...markers.keys()].sort(), [2, 3]);
  assert.deepEqual(markers.get(3).map((m) => m.user_id), [2, 5]);
  assert.deepEqual(markers.get(2).map((m) => m.user_id), [3]);
});

test('a reader whose newest read message is their own gets no marker', () => {
  const messages = [row(1, { user_id: 1 }), row(2, { user_id: 2 })];
  const markers = seenMarkers(messages, [{ user_id: 2, last_read_message_id: 2 }], 1);
  assert.equal(markers.size, 0);
});
