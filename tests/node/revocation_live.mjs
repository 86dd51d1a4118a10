// Revocation end to end with the token service: two ably-js clients connect through the service's
// authUrl with session cookies, or upstream bearer tokens (victimBearer, bystanderBearer), in
// authHeaders (the victim and a bystander). The driver prints {"ready": true} once
// both are connected and waits for "go" on stdin; the test then changes the victim's account (log out
// everywhere, disable, new password, new role) and the driver reports what ably-js went through.
import { createInterface } from 'node:readline';

import { closeAll, main, realtime, settings, sleep, trace, until } from './lib.mjs';

const COOKIE = 'authserver_session';

function client(cookie, bearer) {
  const authHeaders = bearer ? { Authorization: `Bearer ${bearer}` } : { Cookie: `${COOKIE}=${cookie}` };
  return realtime({ authUrl: settings.authUrl, authHeaders });
}

const lines = createInterface({ input: process.stdin });
const go = new Promise((resolve) => lines.once('line', resolve));

await main(async () => {
  const victim = client(settings.victimCookie, settings.victimBearer);
  const bystander = client(settings.bystanderCookie, settings.bystanderBearer);
  const changes = [];
  victim.connection.on((change) => {
    const reason = change.reason || null;
    changes.push({
      at: Date.now(),
      current: change.current,
      event: change.event,
      code: reason ? reason.code : null,
      cause: reason && reason.cause ? reason.cause.code : null,
    });
    trace.push(changes[changes.length - 1]);
  });
  const bystanderStates = [];
  bystander.connection.on((change) => bystanderStates.push(change.current));
  try {
    await until(() => victim.connection.state === 'connected' && bystander.connection.state === 'connected', 10000, 'both connected');
    const bystanderId = bystander.connection.id;
    const before = victim.auth.tokenDetails.token;
    const capabilityBefore = victim.auth.tokenDetails.capability;
    changes.length = 0;
    bystanderStates.length = 0;
    console.log(JSON.stringify({ ready: true }));
    await go;
    const started = Date.now();
    if (settings.expect === 'renewal') {
      // NOTE: tokenDetails is null while a renewal's authUrl request is in flight (a race under load).
      await until(() => {
        const token = victim.auth.tokenDetails?.token;
        return token != null && token !== before;
      }, 10000, 'a new token');
      const renewedMs = Date.now() - started;
      await sleep(1500);
      return {
        renewedMs,
        changes: changes.slice(),
        state: victim.connection.state,
        capabilityBefore,
        capabilityAfter: victim.auth.tokenDetails?.capability,
        bystanderStates: bystanderStates.slice(),
      };
    }
    await until(() => changes.some((c) => c.code === 40141), 5000, 'DISCONNECTED 40141');
    const disconnectedMs = changes.find((c) => c.code === 40141).at - started;
    await until(() => ['failed', 'suspended', 'closed'].includes(victim.connection.state) || changes.length > 8, 10000, 'a final state');
    const settled = victim.connection.state;
    await sleep(3000); // it stays there: nothing reconnects
    const reason = victim.connection.errorReason;
    return {
      disconnectedMs,
      changes: changes.slice(),
      settled,
      state: victim.connection.state,
      reason: reason ? { code: reason.code, statusCode: reason.statusCode, cause: reason.cause ? reason.cause.code : null } : null,
      bystander: { state: bystander.connection.state, sameConnection: bystander.connection.id === bystanderId, states: bystanderStates.slice() },
    };
  } finally {
    lines.close();
    await closeAll(victim, bystander);
  }
}, 40000);
