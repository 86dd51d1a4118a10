// A page on authserver's own origin: log in with POST /login (the service sets its session cookie),
// then one Ably client with authUrl '/auth'. The cookie goes along with every renewal by itself.
import { showStatus } from '../status.js';

const show = (id, text) => { document.getElementById(id).textContent = text; };

function connect(clientOptions) {
  // clientOptions: how ably-js reaches the development sandbox ({} against real Ably).
  const client = new Ably.Realtime({ ...clientOptions, authUrl: '/auth' });
  showStatus(client, 'hello from the same origin');
}

document.getElementById('login').addEventListener('submit', async (event) => {
  event.preventDefault();
  const form = new FormData(event.target);
  const answer = await fetch('/login', {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ username: form.get('username'), password: form.get('password') }),
  });
  if (!answer.ok) {
    show('state', `login refused: ${(await answer.json()).error.message}`);
    return;
  }
  event.target.hidden = true;
  const { clientOptions } = await (await fetch('/client-config')).json();
  connect(clientOptions);
});
