import assert from 'node:assert/strict';
import { test } from 'node:test';

import { clockTime, duration, timeLeft } from '../../web/lib/time.js';

test('clockTime shows local hours, minutes and seconds, zero-padded', () => {
  const at = new Date(2026, 0, 2, 3, 4, 5, 678).getTime();
  assert.equal(clockTime(at), '03:04:05');
});

test('duration reads as seconds, then minutes, then hours', () => {
  assert.equal(duration(0), '0 s');
  assert.equal(duration(44_600), '45 s');
  assert.equal(duration(125_000), '2 min 05 s');
  assert.equal(duration(3_600_000), '1 h 00 min');
  assert.equal(duration(-5_000), '0 s');
});

test('timeLeft counts down while the connection can renew', () => {
  assert.equal(timeLeft(10_000 + 33_000, 10_000, 'connected'), '33 s');
  assert.equal(timeLeft(10_000 + 33_000, 10_000, 'disconnected'), '33 s');
  assert.equal(timeLeft(10_000, 11_000, 'connected'), 'expired');
  assert.equal(timeLeft(null, 11_000, 'connected'), '–');
});

test('timeLeft stops after FAILED and CLOSED: nothing will renew the token any more', () => {
  assert.equal(timeLeft(60_000, 10_000, 'failed'), 'stopped (not connected)');
  assert.equal(timeLeft(60_000, 10_000, 'closed'), 'stopped (not connected)');
});
