// ably-js under Node with an upstream bearer token in authHeaders (docs/use-from-your-app.md):
// stays connected across settings.renewals in-band renewals, publishing throughout.
import { closeAll, main, realtime, recordStates, settings, until } from '../node/lib.mjs';

await main(async () => {
  // The docs' snippet: authUrl plus the user's ID/access token from the identity provider.
  const client = realtime({
    authUrl: settings.authUrl,
    authHeaders: { authorization: `Bearer ${settings.bearer}` },
  });
  const changes = recordStates(client);
  try {
    await client.connection.once('connected');
    const connectionId = client.connection.id;
    const channel = client.channels.get(settings.channel);
    const received = [];
    await channel.subscribe((msg) => received.push(msg.data));
    const tokens = new Set([client.auth.tokenDetails.token]);
    let published = 0;
    while (tokens.size <= settings.renewals) {
      await channel.publish('tick', `tick-${published++}`);
      await until(() => received.length >= published, 5000, 'echo');
      await new Promise((resolve) => setTimeout(resolve, 500));
      // NOTE: ably-js sets tokenDetails to null while a renewal's authUrl request is in flight.
      if (client.auth.tokenDetails) tokens.add(client.auth.tokenDetails.token);
    }
    return {
      renewals: tokens.size - 1,
      sameConnection: client.connection.id === connectionId,
      states: changes.map((c) => c.current),
      published,
      received: received.length,
      clientId: client.auth.clientId,
    };
  } finally {
    await closeAll(client);
  }
}, 90000);
