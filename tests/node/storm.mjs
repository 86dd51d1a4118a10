// A reconnect storm as ably-js lives it: the service's authUrl answers 503 (its admission is full).
// The driver prints {"refused": true} at the first refusal it sees, then waits, without any help, for
// the client to connect once the test has ended the storm, and reports the states it went through.
import { main, realtime, settings, trace, until } from './lib.mjs';

const COOKIE = 'authserver_session';

await main(async () => {
  const client = realtime({
    authUrl: settings.authUrl,
    authHeaders: { Cookie: `${COOKIE}=${settings.cookie}` },
    disconnectedRetryTimeout: 1000, // ably-js's default is 15 s; the retry is the same either way
  });
  const refusals = [];
  let told = false;
  client.connection.on((change) => {
    const reason = change.reason || null;
    // ably-js wraps what the authUrl answered: 80019 (status 401 unless the answer was 403), the answer as its cause
    const cause = reason && reason.cause ? reason.cause : null;
    const answer = cause ? { code: cause.code, statusCode: cause.statusCode } : null;
    trace.push({ current: change.current, code: reason ? reason.code : null, answer });
    if (answer && answer.statusCode === 503) {
      refusals.push({ current: change.current, code: reason.code, answer });
      if (!told) {
        told = true;
        console.log(JSON.stringify({ refused: true }));
      }
    }
  });
  try {
    await until(() => told, 20000, 'a 503 from the authUrl');
    await until(() => client.connection.state === 'connected', 40000, 'connected after the storm');
    return { state: client.connection.state, clientId: client.auth.clientId, refusals };
  } finally {
    client.close();
  }
}, 70000);
