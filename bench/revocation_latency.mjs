// The ably-js half of bench/revocation_latency.py: for each run, two logins (two devices), the real
// ably-js connects with device A's session through the authUrl, device B posts
// /logout?everywhere=true, and the clock runs until ably-js reports DISCONNECTED 40141.
// Prints one JSON line: {"ok": true, "times": [ms, ...]}.
import { closeAll, main, realtime, settings, sleep, until } from '../tests/node/lib.mjs';

const COOKIE = 'authserver_session';

async function login() {
  const response = await fetch(`${settings.service}/login`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ username: settings.username, password: settings.password }),
  });
  if (!response.ok) throw new Error(`login: HTTP ${response.status}`);
  const cookie = response.headers.getSetCookie().find((c) => c.startsWith(`${COOKIE}=`));
  return cookie.split(';')[0].slice(COOKIE.length + 1);
}

async function oneRun() {
  const [deviceA, deviceB] = [await login(), await login()];
  const client = realtime({ authUrl: `${settings.service}/auth`, authHeaders: { Cookie: `${COOKIE}=${deviceA}` } });
  let disconnectedAt = null;
  client.connection.on((change) => {
    if (change.reason && change.reason.code === 40141 && disconnectedAt === null) disconnectedAt = performance.now();
  });
  try {
    await until(() => client.connection.state === 'connected', 10000, 'connected');
    const started = performance.now();
    const response = await fetch(`${settings.service}/logout?everywhere=true`, {
      method: 'POST',
      headers: { Cookie: `${COOKIE}=${deviceB}`, Origin: settings.service },
    });
    if (!response.ok) throw new Error(`logout: HTTP ${response.status}`);
    await until(() => disconnectedAt !== null, 5000, 'DISCONNECTED 40141');
    return disconnectedAt - started;
  } finally {
    await closeAll(client);
  }
}

await main(async () => {
  const times = [];
  for (let run = 0; run < settings.runs; run += 1) {
    times.push(await oneRun());
    await sleep(1100); // each run starts in a later second than the last cutoff
  }
  return { times };
}, 600000);
