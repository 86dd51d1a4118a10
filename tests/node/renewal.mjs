// In-band renewal: tokens a little over 30 s, so the sandbox sends AUTH 30 s before expiry (a few seconds
// after issue, as Ably does, RTN22); ably-js answers with a new token on the same connection.  Publishing
// and presence keep working throughout.
import { authOptions, closeAll, main, realtime, recordStates, settings, until } from './lib.mjs';

const startedAt = Date.now();

await main(async () => {
  const user = `js-renew-${settings.suffix}`;
  const client = realtime(authOptions({ user, lifetime: String(settings.lifetime) }));
  const changes = recordStates(client);
  try {
    await client.connection.once('connected');
    const connectionId = client.connection.id;
    const channel = client.channels.get(`js-renew-room-${settings.suffix}`);
    const received = [];
    await channel.subscribe((msg) => received.push(msg.data));
    await channel.presence.enter('here');
    const renewals = () => changes.filter((c) => c.previous === 'connected' && c.current === 'connected').length;
    let published = 0;
    while (renewals() < settings.renewals) {
      await channel.publish('tick', `tick-${published++}`);
      await until(() => received.length >= published, 5000, 'echo');
      if (Date.now() - startedAt > settings.budgetMs) throw new Error('not enough renewals in time');
      await new Promise((resolve) => setTimeout(resolve, 300));
    }
    await channel.publish('tick', 'after');
    await until(() => received.includes('after'), 5000, 'echo after renewals');
    const members = await channel.presence.get();
    return {
      renewals: renewals(),
      sameConnection: client.connection.id === connectionId,
      changes,
      published,
      received: received.length,
      members: members.map((m) => m.clientId),
      clientId: client.auth.clientId,
    };
  } finally {
    await closeAll(client);
  }
}, 40000);
