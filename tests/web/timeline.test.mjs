import assert from 'node:assert/strict';
import { test } from 'node:test';

import { assignLanes, layout, MAX_LANES, MIN_SPAN_MS, spanFor, summary, ticks, windowAt } from '../../web/lib/timeline.js';

const T0 = 1_700_000_000_000;
const token = (n, issued, ttl, kind, replacedAt = null) => ({ n, issued, expires: issued + ttl, replacedAt, kind });

test('the window shows about one and a half token lifetimes, within half a minute and a quarter hour', () => {
  assert.equal(spanFor([]), MIN_SPAN_MS);
  assert.equal(spanFor([token(1, T0, 6_000, 'first')]), 30_000);
  assert.equal(spanFor([token(1, T0, 33_000, 'first')]), 60_000);
  assert.equal(spanFor([token(1, T0, 100_000, 'first')]), 160_000);
  assert.equal(spanFor([token(1, T0, 3_600_000, 'first')]), 15 * 60_000);
  assert.deepEqual(windowAt(T0, 60_000), { start: T0 - 45_000, end: T0 + 15_000 });
});

test('ticks fall on round times and there are never too many', () => {
  const start = T0 + 1_234;
  const result = ticks(start, start + 60_000, 7);
  assert.ok(result.length >= 4 && result.length <= 7, String(result.length));
  assert.ok(result.every((t) => t % 10_000 === 0 && t >= start && t <= start + 60_000));
  assert.ok(ticks(start, start + 60_000, 3).length <= 3);
});

test('overlapping tokens get lanes of their own; a lane is reused once its bar ended', () => {
  const tokens = [token(1, 0, 33, 'first'), token(2, 17, 33, 'in-band'), token(3, 34, 33, 'in-band')];
  assert.deepEqual(assignLanes(tokens), [0, 1, 0]);
});

test('layout puts each token on the time axis, solid while in use, and marks each renewal by kind', () => {
  const now = T0 + 40_000;
  const tokens = [
    token(1, T0, 33_000, 'first', T0 + 17_000),
    token(2, T0 + 17_000, 33_000, 'in-band', T0 + 36_000),
    token(3, T0 + 36_000, 33_000, 'reconnect'), // runs past the right edge
  ];
  const states = [
    { at: T0, state: 'connecting' },
    { at: T0 + 500, state: 'connected' },
    { at: T0 + 33_000, state: 'disconnected' },
    { at: T0 + 35_000, state: 'connected' },
  ];
  const picture = layout({ tokens, states, now, width: 600 });
  // span 60 s: the window runs from now - 45 s to now + 15 s, 10 px per second
  assert.equal(picture.start, now - 45_000);
  const px = (t) => ((t - picture.start) / 60_000) * 600;
  assert.deepEqual(
    picture.bars.map((b) => [b.n, b.kind, b.lane, Math.round(b.x), Math.round(b.w), Math.round(b.usedW)]),
    [
      [1, 'first', 0, Math.round(px(T0)), 330, 170],
      [2, 'in-band', 1, Math.round(px(T0 + 17_000)), 330, 190],
      [3, 'reconnect', 0, Math.round(px(T0 + 36_000)), 190, 40],
    ],
  );
  assert.deepEqual(
    picture.marks.map((m) => [m.n, m.kind, Math.round(m.x)]),
    [
      [2, 'in-band', Math.round(px(T0 + 17_000))],
      [3, 'reconnect', Math.round(px(T0 + 36_000))],
    ],
  );
  assert.deepEqual(
    picture.bands.map((b) => [b.state, Math.round(b.w)]),
    [
      ['connecting', 5],
      ['connected', 325],
      ['disconnected', 20],
      ['connected', 50],
    ],
  );
  assert.deepEqual(picture.bars.map((b) => b.runsOn), [false, false, true]);
  assert.equal(Math.round(picture.nowX), 450);
  assert.equal(picture.lanes, 2);
});

test('a renewal is marked when the client received the token, not at its back-dated iat', () => {
  // The service back-dates iat by TOKEN_IAT_MARGIN (5 s): the event log says when the token arrived.
  const now = T0 + 40_000;
  const tokens = [
    { n: 1, issued: T0 - 5_000, expires: T0 + 28_000, receivedAt: T0, replacedAt: T0 + 20_000, kind: 'first' },
    { n: 2, issued: T0 + 15_000, expires: T0 + 48_000, receivedAt: T0 + 20_000, replacedAt: null, kind: 'in-band' },
  ];
  const picture = layout({ tokens, states: [], now, width: 600 });
  const px = (t) => ((t - picture.start) / 60_000) * 600;
  assert.deepEqual(picture.marks.map((m) => [m.n, Math.round(m.x)]), [[2, Math.round(px(T0 + 20_000))]]);
  // each bar: valid from iat, in use from receipt until its successor arrived
  assert.deepEqual(
    picture.bars.map((b) => [b.n, Math.round(b.x), Math.round(b.usedX), Math.round(b.usedW)]),
    [
      [1, Math.round(px(T0 - 5_000)), Math.round(px(T0)), 200],
      [2, Math.round(px(T0 + 15_000)), Math.round(px(T0 + 20_000)), 200],
    ],
  );
});

test('bars outside the window are left out, and at most MAX_LANES of the newest are drawn', () => {
  const now = T0 + 100_000;
  const tokens = Array.from({ length: 20 }, (_, i) => token(i + 1, T0 + i * 3_000, 33_000, i ? 'in-band' : 'first'));
  const picture = layout({ tokens, states: [], now, width: 300 });
  assert.equal(picture.bars.length, MAX_LANES);
  assert.deepEqual(picture.bars.map((b) => b.n), [15, 16, 17, 18, 19, 20]);
  assert.ok(picture.bars.every((b) => b.x >= 0 && b.x + b.w <= 300));
  assert.ok(layout({ tokens: [token(1, T0, 5_000, 'first')], states: [], now: T0 + 600_000, width: 300 }).bars.length === 0);
});

test('summary counts renewals in band and by reconnecting', () => {
  assert.equal(summary([]), 'No token yet.');
  const tokens = [token(1, 0, 1, 'first'), token(2, 1, 1, 'in-band'), token(3, 2, 1, 'reconnect')];
  assert.equal(summary(tokens), '3 tokens: 1 renewal in band (AUTH), 1 renewal by reconnecting.');
});
