// Where a client can tell the sandbox from Ably (issue 7): each check drives ably-js the way its own
// integration suite does and records what it saw.  One JSON result line; Python asserts on it.
import { authOptions, closeAll, errorOf, main, realtime, rest, runChecks, settings, sleep, until } from './lib.mjs';

const suffix = settings.suffix;

/** A string that is no token at all: ERROR 40101 and FAILED (realtime), 401/40101 (REST). */
async function notAToken() {
  const client = realtime({ token: 'invalid-token' });
  try {
    await until(() => ['failed', 'connected'].includes(client.connection.state), 10000, 'failed');
    let restError = null;
    try {
      await rest({ token: 'Sdnurv_some_invalid_token_nkds9r7' }).channels.get(`js-nat-${suffix}`).history();
    } catch (err) {
      restError = errorOf(err);
    }
    return { state: client.connection.state, reason: errorOf(client.connection.errorReason), restError };
  } finally {
    await closeAll(client);
  }
}

/** Subscribe-only, then authorize() with publish too: the attached channel may publish (RTC8). */
async function capabilityUpgrade() {
  const name = `js-upgrade-${suffix}`;
  const user = `js-up-${suffix}`;
  const client = realtime(authOptions({ user, cap: `{"${name}":["subscribe"]}` }));
  try {
    await client.connection.once('connected');
    const channel = client.channels.get(name);
    await channel.attach();
    let before = null;
    try {
      await channel.publish('early', 'refused');
    } catch (err) {
      before = errorOf(err);
    }
    await client.auth.authorize(null, authOptions({ user, cap: `{"${name}":["subscribe","publish"]}` }));
    let after = null;
    try {
      await channel.publish('later', 'allowed');
    } catch (err) {
      after = errorOf(err);
    }
    return { before, after, channelState: channel.state };
  } finally {
    await closeAll(client);
  }
}

/** channel.test.js attachWithChannelParamsModesAndChannelModes / attachWithInvalidChannelParams. */
async function channelModes() {
  const client = realtime(authOptions({ user: `js-modes-${suffix}` }));
  try {
    await client.connection.once('connected');
    const both = client.channels.get(`js-modes-${suffix}`, {
      params: { modes: 'presence,subscribe' },
      modes: ['publish', 'presence_subscribe'],
    });
    await both.attach();
    const unknown = client.channels.get(`js-params-${suffix}`, { params: { nonexistent: 'foo' } });
    await unknown.attach();
    const plain = client.channels.get(`js-plain-${suffix}`);
    await plain.attach();
    let invalid = null;
    try {
      await client.channels.get(':hell').attach();
    } catch (err) {
      invalid = errorOf(err);
    }
    return {
      bothModes: both.modes,
      bothParams: both.params,
      unknownParams: unknown.params,
      defaultModes: plain.modes,
      invalid,
      connectionState: client.connection.state,
    };
  } finally {
    await closeAll(client);
  }
}

/** The sender's echo before its ACK; a client-supplied id published three times arrives once. */
async function echoAndIdempotence() {
  const name = `js-echo-${suffix}`;
  const user = `js-echo-${suffix}`;
  const client = realtime(authOptions({ user }));
  const other = realtime(authOptions({ user: `js-other-${suffix}` }));
  try {
    await Promise.all([client.connection.once('connected'), other.connection.once('connected')]);
    const channel = client.channels.get(name);
    const own = [];
    await channel.subscribe((msg) => own.push(msg.data));
    const seen = [];
    await other.channels.get(name).subscribe((msg) => seen.push(msg.data));
    await channel.presence.enter('here');
    const members = (await channel.presence.get()).map((m) => m.clientId);
    await channel.publish('own', 'mine');
    const ownAtAck = [...own];
    for (let attempt = 0; attempt < 3; attempt++) {
      await channel.publish([{ id: `fixed-${suffix}:0`, name: 'order', data: `attempt-${attempt}` }]);
    }
    await channel.publish('marker', 'marker');
    await until(() => seen.includes('marker'), 5000, 'marker');
    return { members, ownAtAck, seen, user };
  } finally {
    await closeAll(client, other);
  }
}

/** RSL2 / RTL10: first(), next(), start/end, untilAttach. */
async function history() {
  const name = `js-history-${suffix}`;
  const publisher = rest({ key: settings.key });
  const channel = publisher.channels.get(name);
  for (let i = 0; i < 3; i++) {
    await channel.publish('n', `m${i}`);
    await sleep(5);
  }
  const page = await channel.history({ limit: 2 });
  const next = await page.next();
  const first = await next.first();
  const middle = page.items[1].timestamp;
  const windowed = await channel.history({ start: middle, end: middle });
  const client = realtime(authOptions({ user: `js-hist-${suffix}` }));
  try {
    await client.connection.once('connected');
    const live = client.channels.get(name);
    await live.attach();
    await channel.publish('n', 'after-attach');
    const untilAttach = await live.history({ untilAttach: true });
    const everything = await live.history();
    return {
      page: page.items.map((m) => m.data),
      hasNext: page.hasNext(),
      next: next.items.map((m) => m.data),
      nextIsLast: next.isLast(),
      first: first.items.map((m) => m.data),
      windowed: windowed.items.map((m) => m.data),
      untilAttach: untilAttach.items.map((m) => m.data),
      everything: everything.items.map((m) => m.data),
    };
  } finally {
    await closeAll(client);
  }
}

/** rest/auth.test.js proves a JWT with stats(); presence history; an embedded-token JWT. */
async function stats() {
  const withJwt = await rest({ token: settings.jwt }).stats();
  const embedded = await rest({ token: settings.embeddedToken }).stats();
  const presence = await rest({ token: settings.jwt }).channels.get(`js-ph-${suffix}`).presence.history();
  return { jwtItems: withJwt.items, embeddedItems: embedded.items, presenceHistory: presence.items.length };
}

/** rest/auth.test.js "JWT request with invalid key" and "Rest JWT with authCallback and invalid keys": a JWT
 * whose kid names an app Ably does not have is 404 / 40400, as a token and through an authCallback. */
async function unknownApp() {
  const outcomes = [];
  for (const options of [
    { token: settings.unknownAppJwt },
    { authCallback: (_params, callback) => callback(null, settings.unknownAppJwt) },
  ]) {
    try {
      await rest(options).stats();
      outcomes.push('accepted');
    } catch (err) {
      outcomes.push(errorOf(err));
    }
  }
  return { outcomes };
}

/** RTN16: recover a connection by its recovery key; an unusable key gets 80018. */
async function recover() {
  const first = realtime(authOptions({ user: `js-rec-${suffix}` }));
  await first.connection.once('connected');
  const connectionId = first.connection.id;
  const recoveryKey = first.connection.createRecoveryKey();
  const second = realtime({ ...authOptions({ user: `js-rec-${suffix}` }), recover: recoveryKey });
  const bogus = JSON.stringify({ connectionKey: '0123456789!feedfacecafe', msgSerial: 0, channelSerials: {} });
  const third = realtime({ ...authOptions({ user: `js-rec2-${suffix}` }), recover: bogus });
  const reasons = [];
  third.connection.on('connected', (change) => reasons.push(change.reason ? change.reason.code : null));
  try {
    await second.connection.once('connected');
    await until(() => reasons.length > 0, 10000, 'connected with a reason');
    return { sameConnection: second.connection.id === connectionId, bogusReason: reasons[0] };
  } finally {
    await closeAll(second, third, first);
  }
}

/** A client holding only a short token (no authUrl, authCallback or key): 40142, then FAILED 40171. */
async function tokenOnly() {
  const response = await fetch(`${settings.authUrl}?user=js-only-${suffix}&lifetime=4`);
  const details = await response.json();
  const client = realtime({ token: details.token });
  const changes = [];
  client.connection.on((change) => changes.push([change.current, change.reason ? change.reason.code : null]));
  try {
    await until(() => client.connection.state === 'failed', 15000, 'failed');
    return { changes, reason: errorOf(client.connection.errorReason) };
  } finally {
    await closeAll(client);
  }
}

/** Replay protection is on nonce and timestamp: the same nonce with a new timestamp is accepted. */
async function nonceReuse() {
  const signer = rest({ key: settings.key });
  const nonce = `fixed-nonce-${suffix}`;
  const now = Date.now();
  const requests = [
    await signer.auth.createTokenRequest({ nonce, timestamp: now - 1000 }),
    await signer.auth.createTokenRequest({ nonce, timestamp: now }),
    await signer.auth.createTokenRequest({ nonce, timestamp: now }),
  ];
  const outcomes = [];
  for (const request of requests) {
    const client = rest({ authCallback: (_params, callback) => callback(null, request) });
    try {
      const details = await client.auth.authorize();
      outcomes.push(typeof details.token === 'string' ? 'token' : 'none');
    } catch (err) {
      outcomes.push(errorOf(err));
    }
  }
  return { nonces: requests.map((r) => r.nonce === nonce), outcomes };
}

/** Unknown REST paths, whatever the method: 404 / 40400. */
async function unknownPaths() {
  const client = rest({ key: settings.key });
  const answers = [];
  for (const [method, path] of [
    ['get', '/nothing/here'],
    ['post', '/nothing/here'],
    ['get', `/keys/${settings.key.split(':')[0]}/requestToken`],
  ]) {
    const response = await client.request(method, path, 3, null, method === 'post' ? {} : null, null);
    answers.push([response.statusCode, response.errorCode]);
  }
  return { answers };
}

/** The rewind channel param: the last N messages after ATTACHED. */
async function rewind() {
  const name = `js-rewind-${suffix}`;
  const channel = rest({ key: settings.key }).channels.get(name);
  for (let i = 0; i < 3; i++) await channel.publish('n', `r${i}`);
  const client = realtime(authOptions({ user: `js-rw-${suffix}` }));
  try {
    await client.connection.once('connected');
    const received = [];
    const live = client.channels.get(name, { params: { rewind: '2' } });
    await live.subscribe((msg) => received.push(msg.data));
    await until(() => received.length >= 2, 5000, 'rewound messages');
    await sleep(200);
    return { received, params: live.params };
  } finally {
    await closeAll(client);
  }
}

await main(
  () =>
    runChecks({
      notAToken,
      capabilityUpgrade,
      channelModes,
      echoAndIdempotence,
      history,
      stats,
      unknownApp,
      recover,
      tokenOnly,
      nonceReuse,
      unknownPaths,
      rewind,
    }),
  60000,
);
