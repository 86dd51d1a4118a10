// A page on its own origin: the user logs in at the OpenID Connect provider (code flow + PKCE, a public
// client), and ably-js sends the access token to authserver's /auth as a bearer. The origin must be in
// authserver's AUTHSERVER_ALLOWED_ORIGINS (scripts/serve --idp puts the examples' origin there).
//
// Where things are comes from /dev-config.json (served beside the examples by scripts/serve --idp):
// { authUrl, clientOptions (how ably-js reaches the development sandbox), issuer, clientId }.
// In your own app these are constants; with real Ably, clientOptions is {}.
import { finishLogin, startLogin } from '../oidc-login.js';
import { showStatus } from '../status.js';

const config = await (await fetch('/dev-config.json')).json();
const redirectUri = new URL('./', location.href).href;
const show = (id, text) => { document.getElementById(id).textContent = text; };

function connect(accessToken) {
  const client = new Ably.Realtime({
    ...config.clientOptions,
    authUrl: config.authUrl,
    // Spelled in lower case: ably-js then also sends credentials cross-origin (docs/troubleshooting.md).
    authHeaders: { authorization: `Bearer ${accessToken}` },
  });
  showStatus(client, 'hello from another origin');
}

try {
  const accessToken = await finishLogin(config, redirectUri);
  if (accessToken) connect(accessToken);
  else {
    show('state', 'not logged in');
    const button = document.getElementById('login');
    button.hidden = false;
    button.addEventListener('click', () => startLogin(config, redirectUri));
  }
} catch (error) {
  show('state', `failed: ${error.message}`);
}
