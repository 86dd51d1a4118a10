import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';

import {
  describe,
  explain,
  isSessionEnded,
  isTokenError,
  loginFailure,
  plainWords,
  sessionEndedText,
} from '../../web/lib/errors.js';

// What ably-js reports when the authUrl refuses (ConnectionManager.actOnErrorFromAuthorize): 80019
// wrapping the service's own error.
const wrapped = (cause, statusCode = 401) => ({
  code: 80019,
  statusCode,
  message: 'Client configured authentication provider request failed',
  cause,
});

/** The codes of the client-contract table in docs/errors.md (| status | code(s) | when | what clients do |). */
function contractCodes() {
  const readme = readFileSync(new URL('../../docs/errors.md', import.meta.url), 'utf8');
  const codes = new Set();
  for (const line of readme.split('\n')) {
    const cells = line.split('|').map((cell) => cell.trim());
    if (cells.length < 4 || !/^[45]\d\d$/.test(cells[1])) continue;
    for (const code of cells[2].match(/\b[45]\d{4}\b/g) || []) codes.add(Number(code));
  }
  return [...codes];
}

test('every code of the client contract (docs/errors.md) has plain words', () => {
  const codes = contractCodes();
  for (const code of [40000, 40003, 40009, 40012, 40101, 40102, 40160, 40300, 40301, 40302, 40303, 40304, 42910, 50300]) {
    assert.ok(codes.includes(code), `docs/errors.md no longer lists ${code}?`);
  }
  for (const code of codes) {
    assert.ok(plainWords(code), `no words for ${code}`);
  }
  assert.equal(plainWords(12345), null);
});

test("a session ended elsewhere shows the service's message, not ably-js's generic 80019", () => {
  const reason = wrapped({ code: 40101, statusCode: 401, message: 'session has ended; log in again' });
  assert.deepEqual(explain(reason), { code: 40101, text: 'Session has ended; log in again.' });
  assert.equal(describe(reason), 'Session has ended; log in again. (40101)');
  assert.ok(!describe(reason).includes('80019'));
  assert.ok(isSessionEnded(reason));
});

test('a disabled account ends the session in plain words, without an error number', () => {
  const reason = wrapped({ code: 40300, statusCode: 403, message: 'account is disabled' }, 403);
  assert.ok(isSessionEnded(reason));
  assert.equal(sessionEndedText(reason), 'Your account was disabled.');
  // another 40300 (not the account) is no reason to end the session
  assert.ok(!isSessionEnded(wrapped({ code: 40300, statusCode: 403, message: 'cross-origin login refused' }, 403)));
});

test('a session the service ended says what happened in plain words, never as a number', () => {
  const cases = [
    [40301, 'you were logged out from another device', 'You were logged out from another device.'],
    [40302, 'your password was changed; log in again', 'Your password was changed; log in again.'],
    [40303, 'your account was removed', 'Your account was removed.'],
    [40304, 'you were logged out in another window', 'You were logged out in another window.'],
    [
      40305,
      'you were logged out at your identity provider; log in again',
      'You were logged out at your identity provider.',
    ],
  ];
  for (const [code, message, words] of cases) {
    const reason = wrapped({ code, statusCode: 403, message }, 403);
    assert.ok(isSessionEnded(reason), `${code} ends the session`);
    assert.equal(sessionEndedText(reason), words);
    assert.ok(!/\d{5}/.test(sessionEndedText(reason)));
    // what GET /session says after a reload reads the same
    assert.equal(sessionEndedText({ code: 80019, cause: { code, message } }), words);
  }
});

test('an error straight from Ably gets the plain words for its code', () => {
  const nack = { code: 40160, statusCode: 401, message: 'Operation not permitted with provided capability' };
  assert.equal(describe(nack), 'Not allowed: your token does not permit this on this channel. (40160)');
  assert.equal(describe({ code: 99999, message: 'odd thing' }), 'Odd thing. (99999)');
  assert.equal(describe(null), '');
});

test('a network failure reaching the authUrl is transient, not the end of the session', () => {
  assert.ok(!isSessionEnded(wrapped({ code: 40170, statusCode: 401, message: 'network error' })));
  assert.ok(!isSessionEnded({ code: 80003, message: 'disconnected' }));
  assert.ok(!isSessionEnded(wrapped(null)));
});

test('token errors are the 4014x range', () => {
  assert.ok(isTokenError({ code: 40142 }));
  assert.ok(isTokenError({ code: 40140 }));
  assert.ok(!isTokenError({ code: 40150 }));
  assert.ok(!isTokenError(null));
});

test('login failures in words: wrong password, throttled, busy, refused origin', () => {
  assert.equal(loginFailure(401, null), 'Wrong username or password.');
  const error = (code, message) => ({ error: { code, statusCode: 0, message } });
  assert.match(loginFailure(429, error(42910, 'too many failed logins')), /^Too many failed logins\. .*\(42910\)$/);
  assert.match(loginFailure(503, error(50300, 'database is busy')), /busy.*\(50300\)$/);
  assert.equal(loginFailure(403, error(40300, 'cross-origin login refused')), 'Cross-origin login refused. (40300)');
  assert.equal(loginFailure(502, null), 'The service answered HTTP 502. Try again.');
});

test("a registered account's name refused under demo login says why, in the service's words", () => {
  // Demo login does not apply to an account's name (authserver/identity/users.py demo_login): the
  // service explains it, and "Wrong username or password." would hide that the name is taken.
  const body = {
    error: {
      code: 40101,
      statusCode: 401,
      message:
        "wrong password for 'alice': it is a registered account, so demo login (any password) does not apply to it; use its password or another name",
    },
  };
  const text = loginFailure(401, body);
  assert.match(text, /^Wrong password for 'alice': it is a registered account, so demo login/);
  assert.match(text, /\(40101\)$/);
  // The ordinary refusal stays the one sentence a person expects.
  assert.equal(
    loginFailure(401, { error: { code: 40101, statusCode: 401, message: 'invalid username or password' } }),
    'Wrong username or password.',
  );
});

test("the end of a session is said in the service's words, framed as the end of the session", () => {
  const ended = (message) => sessionEndedText(wrapped({ code: 40101, statusCode: 401, message }));
  assert.equal(ended('session has ended; log in again'), 'Session has ended; log in again. (40101)');
  assert.equal(ended('session has expired; log in again'), 'Session has expired; log in again. (40101)');
  assert.equal(ended('not logged in'), 'Your session has ended: not logged in. Log in again. (40101)');
  assert.equal(
    ended('account no longer exists; log in again'),
    'Your session has ended: account no longer exists; log in again. (40101)',
  );
  assert.equal(sessionEndedText(null), 'Your session has ended. Log in again.');
});
