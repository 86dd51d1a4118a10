// Connect, attach, publish/subscribe, presence, and a capability-denied publish (NACK 40160).
import { authOptions, closeAll, errorOf, main, realtime, settings, until } from './lib.mjs';

await main(async () => {
  const channelName = `js-room-${settings.suffix}`;
  const alice = realtime(authOptions({ user: 'alice', cap: '{"*":["*"]}' }));
  const watcher = realtime(authOptions({ user: 'watcher', cap: `{"${channelName}":["subscribe"]}` }));
  try {
    await Promise.all([alice.connection.once('connected'), watcher.connection.once('connected')]);
    const aliceChannel = alice.channels.get(channelName);
    const watcherChannel = watcher.channels.get(channelName);

    const received = [];
    await watcherChannel.subscribe((msg) => received.push(msg));
    const watcherModes = watcherChannel.modes;
    const presenceEvents = [];
    await watcherChannel.presence.subscribe((msg) => presenceEvents.push(`${msg.action}:${msg.clientId}`));

    await aliceChannel.attach();
    await aliceChannel.publish('greeting', 'hello from js');
    await aliceChannel.publish('binary', new Uint8Array([1, 2, 3]));
    await aliceChannel.presence.enter({ mood: 'happy' });
    await until(() => received.length >= 2 && presenceEvents.length >= 1, 5000, 'fan-out');
    const members = await watcherChannel.presence.get();

    let denied = null;
    try {
      await watcherChannel.publish('nope', 'subscribe-only');
    } catch (err) {
      denied = errorOf(err);
    }

    await aliceChannel.presence.leave();
    await until(() => presenceEvents.length >= 2, 5000, 'presence leave');

    return {
      aliceClientId: alice.auth.clientId,
      received: received.map((m) => ({
        name: m.name,
        data: m.data instanceof Uint8Array || Buffer.isBuffer(m.data) ? Array.from(m.data) : m.data,
        clientId: m.clientId,
        connectionIdMatches: m.connectionId === alice.connection.id,
        hasId: typeof m.id === 'string',
        hasTimestamp: typeof m.timestamp === 'number',
      })),
      watcherModes,
      presenceEvents,
      members: members.map((m) => ({ clientId: m.clientId, data: m.data })),
      denied,
    };
  } finally {
    await closeAll(alice, watcher);
  }
}, 20000);

