import assert from 'node:assert/strict';
import { test } from 'node:test';

import {
  connectionChanged,
  initialState,
  MAX_LOG,
  MAX_MESSAGES,
  MAX_TOKENS,
  messagesAdded,
  messageView,
  note,
  roleSeen,
  signedIn,
  signedOut,
  tokenSeen,
} from '../../web/lib/model.js';

const b64url = (value) => Buffer.from(JSON.stringify(value)).toString('base64url');
let serial = 0;
function details(issuedMs, ttlMs = 33_000) {
  serial += 1;
  const claims = { iat: issuedMs / 1000, exp: (issuedMs + ttlMs) / 1000, 'x-ably-clientId': 'alice', n: serial };
  return {
    token: `${b64url({ alg: 'HS256', typ: 'JWT' })}.${b64url(claims)}.sig`,
    issued: issuedMs,
    expires: issuedMs + ttlMs,
    capability: '{"chat:*":["publish"]}',
    clientId: 'alice',
  };
}
const change = (previous, current, reason) => ({ previous, current, reason });

function connected(now = 1_000) {
  const state = initialState();
  signedIn(state, { clientId: 'alice', role: 'user', source: 'account' }, now);
  connectionChanged(state, change('initialized', 'connecting'), now);
  connectionChanged(state, change('connecting', 'connected'), now + 100);
  tokenSeen(state, details(now), now + 100);
  return state;
}

test('the first token is not a renewal; a new token on an open connection is an in-band renewal', () => {
  const state = connected();
  assert.equal(state.renewals, 0);
  const same = state.token.raw;
  assert.equal(tokenSeen(state, { ...details(1_000), token: same }, 2_000), false);
  assert.equal(tokenSeen(state, details(17_000), 17_100), true);
  assert.equal(state.renewals, 1);
  assert.deepEqual(state.renewedBy, { 'in-band': 1, reconnect: 0 });
  assert.deepEqual(
    state.tokens.map((t) => [t.n, t.kind, t.replacedAt]),
    [
      [1, 'first', 17_100],
      [2, 'in-band', null],
    ],
  );
  assert.equal(state.token.claims['x-ably-clientId'], 'alice');
  assert.equal(state.token.header.alg, 'HS256');
});

test('a token that arrives after the connection dropped is a renewal by reconnecting', () => {
  const state = connected();
  connectionChanged(state, change('connected', 'disconnected', { code: 40142, message: 'token expired' }), 34_000);
  connectionChanged(state, change('disconnected', 'connecting'), 34_010);
  tokenSeen(state, details(34_020), 34_030);
  connectionChanged(state, change('connecting', 'connected'), 34_050);
  assert.deepEqual(state.tokens.map((t) => t.kind), ['first', 'reconnect']);
  assert.equal(state.renewals, 1);
  assert.deepEqual(state.renewedBy, { 'in-band': 0, reconnect: 1 });
  assert.deepEqual(state.states.map((s) => s.state), ['connecting', 'connected', 'disconnected', 'connecting', 'connected']);
  assert.ok(state.log.some((line) => line.text.includes('disconnected') && line.text.includes('40142')));
});

test("logging out or a session ended elsewhere clears the old identity's clientId, token and renewal count", () => {
  const state = connected();
  tokenSeen(state, details(17_000), 17_100);
  state.channel = { name: 'chat:x', status: 'attached', ops: { operations: ['publish'], all: false }, error: '', messages: [{ id: 'a' }], presence: ['alice'] };
  signedOut(state, 20_000, { notice: 'Session has ended; log in again. (40101)' });
  assert.equal(state.who, null);
  assert.equal(state.token, null);
  assert.equal(state.renewals, 0);
  assert.deepEqual(state.renewedBy, { 'in-band': 0, reconnect: 0 });
  assert.deepEqual(state.channel, { name: 'chat:x', status: 'none', ops: null, error: '', messages: [], presence: [] });
  assert.equal(state.notice, 'Session has ended; log in again. (40101)');
  assert.equal(state.tokens[state.tokens.length - 1].replacedAt, 20_000); // the bar stops at the logout
  // the closing client still holds its token: it must not come back on screen
  assert.equal(tokenSeen(state, details(20_100), 20_200), false);
  assert.equal(state.token, null);
  // logging in again starts a fresh timeline; the next token is a first token, not a renewal
  signedIn(state, { clientId: 'bob', role: 'user', source: 'demo' }, 30_000);
  assert.deepEqual(state.tokens, []);
  tokenSeen(state, details(30_000), 30_100);
  assert.equal(state.renewals, 0);
  assert.equal(state.tokens[0].kind, 'first');
});

test('an update while connected that carries an error is logged; a quiet one is not', () => {
  const state = connected();
  const before = state.log.length;
  connectionChanged(state, change('connected', 'connected'), 5_000);
  assert.equal(state.log.length, before);
  connectionChanged(state, change('connected', 'connected', { code: 80019, cause: { code: 50300, message: 'database is busy' } }), 6_000);
  assert.equal(state.log[state.log.length - 1].text, 'still connected: Database is busy. (50300)');
});

test('the log and the message list are bounded', () => {
  const state = initialState();
  for (let i = 0; i < MAX_LOG + 10; i += 1) note(state, i, 'info', `line ${i}`);
  assert.equal(state.log.length, MAX_LOG);
  assert.equal(state.log[0].text, 'line 10');
  assert.equal(state.log[0].id, 11); // ids keep counting: a line keeps its identity as older ones go
  messagesAdded(state, Array.from({ length: MAX_MESSAGES + 5 }, (_, i) => ({ id: `m${i}`, at: i })));
  assert.equal(state.channel.messages.length, MAX_MESSAGES);
  assert.equal(state.channel.messages[0].id, 'm5');
});

test('history and live messages share one layout and each appears once, oldest first', () => {
  const state = initialState();
  const live = messageView({ id: 'b', clientId: 'bob', data: 'second', timestamp: 2_000 }, 9_000);
  const history = [
    messageView({ id: 'b', clientId: 'bob', data: 'second', timestamp: 2_000 }, 9_000),
    messageView({ id: 'a', clientId: 'alice', data: { n: 1 }, timestamp: 1_000 }, 9_000),
  ];
  messagesAdded(state, [live]);
  messagesAdded(state, history);
  assert.deepEqual(state.channel.messages, [
    { id: 'a', clientId: 'alice', text: '{"n":1}', at: 1_000 },
    { id: 'b', clientId: 'bob', text: 'second', at: 2_000 },
  ]);
});

test('renewal counts survive the timeline dropping its oldest tokens', () => {
  const state = connected();
  for (let i = 1; i <= MAX_TOKENS + 10; i += 1) tokenSeen(state, details(1_000 + i * 3_000), 1_100 + i * 3_000);
  assert.equal(state.tokens.length, MAX_TOKENS);
  assert.equal(state.renewals, MAX_TOKENS + 10);
  assert.deepEqual(state.renewedBy, { 'in-band': MAX_TOKENS + 10, reconnect: 0 });
  assert.equal(state.tokens[state.tokens.length - 1].n, MAX_TOKENS + 11);
});

test('a role the service reports after a renewal replaces the shown one, once, in the log', () => {
  const state = connected();
  assert.equal(roleSeen(state, 'user', 2_000), false);
  assert.equal(roleSeen(state, 'admin', 2_000), true);
  assert.equal(state.who.role, 'admin');
  assert.equal(state.log[state.log.length - 1].text, 'role changed from user to admin');
  assert.equal(roleSeen(state, 'admin', 3_000), false);
  signedOut(state, 4_000);
  assert.equal(roleSeen(state, 'user', 5_000), false); // nobody to change
});
