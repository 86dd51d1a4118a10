// Revocation: a key-authenticated Rest client revokes the realtime client's tokens by clientId.
// The realtime connection gets DISCONNECTED 40141, fetches a fresh token and resumes; the old token
// is refused by REST afterwards.
import { authOptions, closeAll, main, realtime, rest, settings, sleep, trace, until } from './lib.mjs';

await main(async () => {
  const user = `js-revoke-${settings.suffix}`;
  const client = realtime(authOptions({ user }));
  const admin = rest({ key: settings.key });
  const changes = trace;
  client.connection.on((change) => changes.push({ current: change.current, reason: change.reason ? change.reason.code : null }));
  try {
    await client.connection.once('connected');
    const connectionId = client.connection.id;
    const oldToken = client.auth.tokenDetails.token;
    // JWT iat has whole-second precision: revoke in a later second than the token was issued in.
    await sleep(1100);
    const result = await admin.auth.revokeTokens([{ type: 'clientId', value: user }]);
    await until(() => changes.some((c) => c.reason === 40141), 5000, 'DISCONNECTED 40141');
    await until(() => client.connection.state === 'connected', 10000, 'reconnect with a fresh token');
    const newToken = client.auth.tokenDetails.token;
    const oldTokenResponse = await fetch(`http://127.0.0.1:${settings.port}/channels/x/messages`, {
      headers: { authorization: `Bearer ${Buffer.from(oldToken).toString('base64')}` },
    });
    return {
      result,
      changes,
      sameConnection: client.connection.id === connectionId,
      newTokenDiffers: newToken !== oldToken,
      oldTokenStatus: oldTokenResponse.status,
      oldTokenCode: oldTokenResponse.headers.get('x-ably-errorcode'),
    };
  } finally {
    await closeAll(client);
  }
}, 30000);
