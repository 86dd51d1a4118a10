// Message continuity across attaches and connections (issue 22, items 1 and 2): the `rewind` backlog
// and its HAS_BACKLOG flag, a resumed or re-attached channel not getting the backlog twice, and a new
// client recovering several channels with the `recover` key of a connection that went away.
//
// Run as `node continuity.mjs` (the scenario; one JSON result line), or as
// `node continuity.mjs holder` (the connection to be recovered: attaches the channels named in
// HOLDER, prints what it got and its recovery key, then waits to be killed, like a crashed page).
import { spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';

import { authOptions, closeAll, errorOf, main, realtime, rest, runChecks, settings, sleep, until } from './lib.mjs';

const suffix = settings.suffix;
const publisher = () => rest({ key: settings.key });

/** Attach `channel` and report the ATTACHED state change and what arrives until `settle` ms after. */
async function attachAndCollect(channel, settle = 500) {
  const received = [];
  const attached = new Promise((resolve) => channel.once('attached', resolve));
  await channel.subscribe((msg) => received.push(msg.data));
  const change = await attached;
  await sleep(settle);
  return { received, change };
}

function described(change) {
  return change ? { hasBacklog: Boolean(change.hasBacklog), resumed: Boolean(change.resumed) } : null;
}

/** rewind (a count, a duration, a JSON number as ably-js's own suite sends it) on a channel with and
 * without history: the backlog after ATTACHED, HAS_BACKLOG only when there is one. */
async function rewindBacklog() {
  const name = `js-backlog-${suffix}`;
  await publisher().channels.get(name).publish('n', 'b0');
  await publisher().channels.get(name).publish('n', 'b1');
  const client = realtime(authOptions({ user: `js-backlog-${suffix}` }));
  try {
    await client.connection.once('connected');
    const results = {};
    for (const [label, channelName, rewind] of [
      ['count', name, '1'],
      ['number', name, 1],
      ['duration', name, '1m'],
      ['empty', `js-backlog-empty-${suffix}`, '1'],
    ]) {
      const channel = client.channels.get(`${channelName}`, { params: { rewind } });
      const seen = await attachAndCollect(channel);
      results[label] = { received: seen.received, change: described(seen.change), params: channel.params };
      await channel.detach();
      client.channels.release(channelName);
    }
    return results;
  } finally {
    await closeAll(client);
  }
}

/** A rewound channel whose connection drops (5 s tokens: DISCONNECTED 40142) and resumes: the
 * re-attach carries on from the channel serial and does not deliver the backlog again. */
async function rewindThenResume() {
  const name = `js-rw-resume-${suffix}`;
  await publisher().channels.get(name).publish('n', 'old-0');
  await publisher().channels.get(name).publish('n', 'old-1');
  const client = realtime(authOptions({ user: `js-rw-resume-${suffix}`, lifetime: '5' }));
  const changes = [];
  client.connection.on((change) => changes.push([change.current, change.reason ? change.reason.code : null]));
  try {
    await client.connection.once('connected');
    const connectionId = client.connection.id;
    const channel = client.channels.get(name, { params: { rewind: '2' } });
    const attaches = [];
    channel.on('attached', (change) => attaches.push(described(change)));
    channel.on('update', (change) => attaches.push(described(change)));
    const seen = await attachAndCollect(channel, 0);
    await until(() => changes.some(([state]) => state === 'disconnected'), 12000, 'the token to expire');
    await until(() => client.connection.state === 'connected', 10000, 'the resume');
    await channel.whenState('attached');
    await sleep(500);
    await publisher().channels.get(name).publish('n', 'after');
    await until(() => seen.received.includes('after'), 5000, 'a message after the resume');
    await sleep(300);
    return { received: seen.received, attaches, sameConnection: client.connection.id === connectionId };
  } finally {
    await closeAll(client);
  }
}

/** ably-js's resume_rewind_1 situation: a new connection attaching with rewind but flagged
 * ATTACH_RESUME (RTL4j) gets no backlog. ably-js 2.x never sets that flag itself, so, as Ably's own
 * suite does, the flag is added to the client's outgoing ATTACH. */
async function attachResumeFlag() {
  const name = `js-rw-flag-${suffix}`;
  await publisher().channels.get(name).publish('n', { foo: 'bar', count: 1 });
  const plain = realtime(authOptions({ user: `js-rw-flag-${suffix}` }));
  const flagged = realtime(authOptions({ user: `js-rw-flag2-${suffix}` }));
  const manager = flagged.connection.connectionManager;
  const send = manager.send.bind(manager);
  manager.send = (message, queueEvent, callback) => {
    if (message.action === 10) message.setFlag('ATTACH_RESUME');
    return send(message, queueEvent, callback);
  };
  try {
    const first = await attachAndCollect(plain.channels.get(name, { params: { rewind: 1 } }), 300);
    const second = await attachAndCollect(flagged.channels.get(name, { params: { rewind: 1 } }), 1500);
    return {
      plain: { received: first.received, change: described(first.change) },
      flagged: { received: second.received, change: described(second.change) },
    };
  } finally {
    await closeAll(plain, flagged);
  }
}

/** The holder side of `recoverChannels`: attach, read `HOLDER.before` messages on each channel, take
 * the recovery key, read `HOLDER.after` more, print {key, received} and wait to be killed. */
async function holder() {
  const plan = JSON.parse(process.env.HOLDER);
  const client = realtime(authOptions({ user: plan.user }));
  await client.connection.once('connected');
  const received = {};
  await Promise.all(
    plan.channels.map(async (name) => {
      received[name] = [];
      await client.channels.get(name).subscribe((msg) => received[name].push(msg.data));
    }),
  );
  console.log(JSON.stringify({ attached: true }));
  const count = (n) => plan.channels.every((name) => received[name].length >= n);
  await until(() => count(plan.before), 10000, 'the messages before the key');
  const key = client.connection.createRecoveryKey();
  console.log(JSON.stringify({ keyTaken: true }));
  await until(() => count(plan.before + plan.after), 10000, 'the messages after the key');
  console.log(JSON.stringify({ key, received, connectionId: client.connection.id }));
  await new Promise(() => {}); // killed by the scenario, with no CLOSE: the connection stays recoverable
}

/** Reads JSON lines from a holder process; `next()` resolves with the next one. */
function lines(child) {
  const queue = [];
  const waiting = [];
  createInterface({ input: child.stdout }).on('line', (line) => {
    if (!line.startsWith('{')) return;
    const value = JSON.parse(line);
    if (waiting.length) waiting.shift()(value);
    else queue.push(value);
  });
  return {
    next: (ms = 15000) =>
      queue.length
        ? Promise.resolve(queue.shift())
        : new Promise((resolve, reject) => {
            const timer = setTimeout(() => reject(new Error('the holder said nothing')), ms);
            waiting.push((value) => {
              clearTimeout(timer);
              resolve(value);
            });
          }),
  };
}

/** RTN16: a client that crashed (its process killed) is recovered by a new client from its recovery
 * key; every channel is attached again from the serial in the key: the messages after it (including
 * one the old client got after taking the key) arrive once, nothing before it comes again. */
async function recoverChannels() {
  const channels = [0, 1, 2].map((i) => `js-recover-${i}-${suffix}`);
  const user = `js-recover-${suffix}`;
  const plan = { user, channels, before: 2, after: 1 };
  const script = fileURLToPath(import.meta.url);
  const child = spawn(process.execPath, [script, 'holder'], {
    env: { ...process.env, HOLDER: JSON.stringify(plan) },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const said = lines(child);
  const tx = publisher();
  let recovered = null;
  try {
    await said.next();
    for (const i of [0, 1]) for (const name of channels) await tx.channels.get(name).publish('m', `m${i}`);
    await said.next();
    for (const name of channels) await tx.channels.get(name).publish('m', 'm2');
    const held = await said.next();
    child.kill('SIGKILL');
    await new Promise((resolve) => child.once('exit', resolve));
    for (const name of channels) await tx.channels.get(name).publish('m', 'm3');
    recovered = realtime({ ...authOptions({ user }), recover: held.key });
    const change = await recovered.connection.once('connected');
    const received = {};
    const attaches = {};
    for (const name of channels) {
      const channel = recovered.channels.get(name);
      received[name] = [];
      await channel.subscribe((msg) => received[name].push(msg.data));
      attaches[name] = channel.state;
    }
    await until(() => channels.every((n) => received[n].length >= 2), 5000, 'the messages after the key');
    for (const name of channels) await tx.channels.get(name).publish('m', 'm4');
    await until(() => channels.every((n) => received[n].includes('m4')), 5000, 'a live message');
    await sleep(300);
    return {
      held: held.received,
      received,
      attaches,
      sameConnection: recovered.connection.id === held.connectionId,
      reason: errorOf(change.reason),
    };
  } finally {
    if (child.exitCode === null) child.kill('SIGKILL');
    if (recovered) await closeAll(recovered);
  }
}

if (process.argv[2] === 'holder') {
  await holder();
} else {
  const checks = { rewindBacklog, rewindThenResume, attachResumeFlag, recoverChannels };
  await main(() => runChecks(checks, { together: true }), 60000);
}
