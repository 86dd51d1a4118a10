import assert from 'node:assert/strict';
import { test } from 'node:test';

import { claimRows, decodeJwt } from '../../web/lib/jwt.js';

const b64url = (value) => Buffer.from(JSON.stringify(value)).toString('base64url');
const HEADER = { alg: 'HS256', kid: 'app.key', typ: 'JWT' };
const CLAIMS = {
  iat: 1_700_000_000,
  exp: 1_700_000_033,
  'x-ably-capability': '{"chat:*":["publish"]}',
  'x-ably-clientId': 'zoë',
};
const TOKEN = `${b64url(HEADER)}.${b64url(CLAIMS)}.c2lnbmF0dXJl`;

test('decodeJwt returns the header and claims, UTF-8 included', () => {
  assert.deepEqual(decodeJwt(TOKEN), { header: HEADER, claims: CLAIMS });
});

test('decodeJwt refuses what is not a JWT with JSON parts', () => {
  for (const bad of [null, 42, '', 'abc', 'a.b', 'a.b.c.d', '.e30.x', `${b64url(HEADER)}.bm90IGpzb24.x`, 'e30.bnVsbA.x']) {
    assert.equal(decodeJwt(bad), null, String(bad));
  }
});

test('claimRows shows times readably, leaves the capability to its own table, sorts by name', () => {
  const rows = claimRows(CLAIMS, (ms) => `t${ms}`);
  assert.deepEqual(rows, [
    ['exp', '1700000033 (t1700000033000)'],
    ['iat', '1700000000 (t1700000000000)'],
    ['x-ably-clientId', 'zoë'],
  ]);
});
