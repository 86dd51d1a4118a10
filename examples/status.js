// What the plain example pages show of their one Ably client: its connection state, its clientId, how
// many times ably-js has renewed its token (by itself, when Ably asks), and the last message on the
// example channel, after publishing `greeting` there once connected.
export function showStatus(client, greeting) {
  const show = (id, text) => { document.getElementById(id).textContent = text; };
  let token = null;
  let renewals = 0;
  client.connection.on((change) => show('state', change.current));
  setInterval(() => {
    const now = client.auth.tokenDetails?.token; // null while a renewal is in flight
    if (!now || now === token) return;
    if (token !== null) show('renewals', String(++renewals));
    token = now;
  }, 250);
  client.connection.once('connected', async () => {
    show('client-id', client.auth.clientId);
    const channel = client.channels.get('chat:example');
    await channel.subscribe((message) => show('message', `${message.clientId}: ${message.data}`));
    await channel.publish('greeting', greeting);
  });
}
