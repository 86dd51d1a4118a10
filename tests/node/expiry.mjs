// The expiry path: a token that lives under 30 s gets no AUTH (as on Ably), so at expiry the sandbox
// sends DISCONNECTED 40142 and closes.
// ably-js fetches a new token and resumes the same connection; a message published while it was
// away is delivered after the resume.
import { authOptions, closeAll, main, realtime, rest, recordStates, settings, until } from './lib.mjs';

await main(async () => {
  const user = `js-expiry-${settings.suffix}`;
  const client = realtime(authOptions({ user, lifetime: String(settings.lifetime) }));
  const publisher = rest({ key: settings.key });
  const changes = recordStates(client);
  try {
    await client.connection.once('connected');
    const connectionId = client.connection.id;
    const channelName = `js-expiry-room-${settings.suffix}`;
    const channel = client.channels.get(channelName);
    const received = [];
    await channel.subscribe((msg) => received.push(msg.data));
    const expiries = () => changes.filter((c) => c.current === 'disconnected' && c.reason === 40142).length;
    await until(() => expiries() >= 1, settings.lifetime * 1000 + 5000, 'first expiry');
    // published while ably-js is between transports (or just back): must still arrive exactly once.
    await publisher.channels.get(channelName).publish('while-away', 'missed-1');
    await until(() => client.connection.state === 'connected', 10000, 'reconnect');
    await until(() => received.includes('missed-1'), 5000, 'message published around the resume');
    await until(() => expiries() >= settings.expiries, settings.lifetime * 1000 * settings.expiries + 5000, 'expiries');
    await until(() => client.connection.state === 'connected', 10000, 'reconnect');
    await channel.publish('after', 'after');
    await until(() => received.includes('after'), 5000, 'echo after resume');
    return {
      expiries: expiries(),
      sameConnection: client.connection.id === connectionId,
      changes,
      received,
      channelState: channel.state,
    };
  } finally {
    await closeAll(client);
  }
}, 40000);
