// The authUrl answers with a signed TokenRequest; ably-js exchanges it at the sandbox's
// POST /keys/{keyName}/requestToken (MAC checked there) and connects with the opaque token.
// Renewal goes the same way, in band: the connection (and its id) stays the same.
import { authOptions, closeAll, main, realtime, settings, trace, until } from './lib.mjs';

await main(async () => {
  const user = `js-tr-${settings.suffix}`;
  const client = realtime(authOptions({ user, mode: 'request', lifetime: String(settings.lifetime) }));
  const changes = trace;
  client.connection.on((change) =>
    changes.push({
      previous: change.previous,
      current: change.current,
      reason: change.reason ? change.reason.code : null,
      connectionId: client.connection.id ?? null,
    }),
  );
  try {
    await client.connection.once('connected');
    const connectionId = client.connection.id;
    const firstToken = client.auth.tokenDetails.token;
    const channel = client.channels.get(`js-tr-room-${settings.suffix}`);
    const received = [];
    await channel.subscribe((msg) => received.push({ data: msg.data, clientId: msg.clientId }));
    await channel.publish('hello', 'via token request');
    await until(() => received.length === 1, 5000, 'echo');
    const renewals = () => changes.filter((c) => c.previous === 'connected' && c.current === 'connected').length;
    await until(() => renewals() >= 1, settings.lifetime * 1000 + 5000, 'a renewal through requestToken');
    return {
      clientId: client.auth.clientId,
      tokenLooksOpaque: !client.auth.tokenDetails.token.includes('.'),
      tokenChanged: client.auth.tokenDetails.token !== firstToken,
      received,
      renewals: renewals(),
      // a copy: closing the client below adds more changes to `changes`
      changes: changes.map((c) => ({ ...c })),
      connectionId,
      sameConnection: client.connection.id === connectionId,
    };
  } finally {
    await closeAll(client);
  }
}, 30000);
