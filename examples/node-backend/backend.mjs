// A Node backend: ably-js with authUrl and an access token from the identity provider as a bearer.
//
//   ACCESS_TOKEN=$(scripts/idp-token alice) node examples/node-backend/backend.mjs [--renewals N]
//
// SERVICE_URL is where authserver is (default http://127.0.0.1:8000). ably-js renews the Ably token
// through authUrl by itself whenever Ably asks (about 30 s before expiry); --renewals N stops after N
// renewals (the tests use it), otherwise it runs until Ctrl-C.
import * as Ably from 'ably';

const service = (process.env.SERVICE_URL || 'http://127.0.0.1:8000').replace(/\/$/, '');
const at = process.argv.indexOf('--renewals');
const wanted = at === -1 ? Infinity : Number(process.argv[at + 1]);

// How ably-js reaches the development sandbox (endpoint, port, tls: false...); {} against real Ably.
const { clientOptions } = await (await fetch(`${service}/client-config`)).json();
const client = new Ably.Realtime({
  ...clientOptions,
  authUrl: `${service}/auth`,
  authHeaders: { authorization: `Bearer ${process.env.ACCESS_TOKEN}` },
});
client.connection.on('failed', (change) => {
  console.error(`failed: ${change.reason?.message}`);
  process.exit(1);
});

await client.connection.once('connected');
console.log(`connected as ${client.auth.clientId}`);
const channel = client.channels.get('chat:backend');
await channel.subscribe((message) => console.log(`message: ${message.data}`));
await channel.publish('status', `backend ${client.auth.clientId} is up`);

let token = client.auth.tokenDetails.token;
let renewals = 0;
const timer = setInterval(() => {
  const now = client.auth.tokenDetails?.token; // null while a renewal is in flight
  if (!now || now === token) return;
  token = now;
  console.log(`renewed ${++renewals}, still ${client.connection.state}`);
  if (renewals >= wanted) {
    clearInterval(timer);
    client.close();
  }
}, 250);
