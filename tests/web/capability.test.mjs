import assert from 'node:assert/strict';
import { test } from 'node:test';

import { allows, capabilityRows, channelOperations, parseCapability } from '../../web/lib/capability.js';

test('capabilityRows is one sorted row per resource, "*" read as everything', () => {
  const rows = capabilityRows('{"private:alice":["*"],"chat:*":["subscribe","publish"],"announcements":["subscribe"]}');
  assert.deepEqual(rows, [
    { resource: 'announcements', operations: 'subscribe' },
    { resource: 'chat:*', operations: 'publish, subscribe' },
    { resource: 'private:alice', operations: 'everything (*)' },
  ]);
});

test('a capability that does not parse is shown as empty, not as an exception', () => {
  assert.deepEqual(parseCapability('{not json'), {});
  assert.deepEqual(parseCapability('[1]'), {});
  assert.deepEqual(capabilityRows(undefined), []);
});

test("channelOperations words the service's answer; the page does no matching of its own", () => {
  assert.equal(channelOperations(null), '–');
  assert.equal(channelOperations({ operations: [], all: false }), 'nothing');
  assert.equal(channelOperations({ operations: ['history', 'subscribe'], all: false }), 'history, subscribe');
  assert.equal(channelOperations({ operations: ['history', 'publish'], all: true }), 'everything (*)');
});

test('allows follows the service answer: all, a listed operation, nothing without an answer', () => {
  assert.equal(allows({ all: true, operations: [] }, 'publish'), true);
  assert.equal(allows({ all: false, operations: ['history', 'subscribe'] }, 'publish'), false);
  assert.equal(allows({ all: false, operations: ['publish'] }, 'publish'), true);
  assert.equal(allows(null, 'publish'), false);
});
