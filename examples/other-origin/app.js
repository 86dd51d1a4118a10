// A page on its own origin: the user logs in at the OpenID Connect provider (code flow + PKCE, a public
// client), and ably-js sends the access token to authserver's /auth as a bearer. The origin must be in
// authserver's AUTHSERVER_ALLOWED_ORIGINS (scripts/serve --idp puts the examples' origin there).
//
// Where things are comes from /dev-config.json (served beside the examples by scripts/serve --idp):
// { authUrl, clientOptions (how ably-js reaches the development sandbox), issuer, clientId }.
// In your own app these are constants; with real Ably, clientOptions is {}.
const config = await (await fetch('/dev-config.json')).json();
const redirectUri = new URL('./', location.href).href;
const show = (id, text) => { document.getElementById(id).textContent = text; };

const b64url = (bytes) => btoa(String.fromCharCode(...new Uint8Array(bytes)))
  .replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');

async function discover() {
  return (await fetch(`${config.issuer}/.well-known/openid-configuration`)).json();
}

async function startLogin() {
  const verifier = b64url(crypto.getRandomValues(new Uint8Array(32)));
  const state = b64url(crypto.getRandomValues(new Uint8Array(16)));
  sessionStorage.setItem('pkce', JSON.stringify({ verifier, state }));
  const challenge = b64url(await crypto.subtle.digest('SHA-256', new TextEncoder().encode(verifier)));
  const url = new URL((await discover()).authorization_endpoint);
  url.search = new URLSearchParams({
    client_id: config.clientId, response_type: 'code', scope: 'openid ably', redirect_uri: redirectUri,
    code_challenge: challenge, code_challenge_method: 'S256', state,
  }).toString();
  location.assign(url.href);
}

async function finishLogin(params) {
  const { verifier, state } = JSON.parse(sessionStorage.getItem('pkce') || '{}');
  sessionStorage.removeItem('pkce');
  history.replaceState(null, '', redirectUri);
  if (!verifier || params.get('state') !== state) throw new Error('login state mismatch: log in again');
  const answer = await fetch((await discover()).token_endpoint, {
    method: 'POST',
    body: new URLSearchParams({
      grant_type: 'authorization_code', code: params.get('code'), redirect_uri: redirectUri,
      client_id: config.clientId, code_verifier: verifier,
    }),
  });
  const tokens = await answer.json();
  if (!answer.ok) throw new Error(tokens.error_description || tokens.error);
  return tokens.access_token;
}

function connect(accessToken) {
  const client = new Ably.Realtime({
    ...config.clientOptions,
    authUrl: config.authUrl,
    // Spelled in lower case: ably-js then also sends credentials cross-origin (docs/troubleshooting.md).
    authHeaders: { authorization: `Bearer ${accessToken}` },
  });
  let token = null;
  let renewals = 0;
  client.connection.on((change) => show('state', change.current));
  // ably-js renews by itself (Ably's AUTH prompt before expiry): count the tokens it has held.
  setInterval(() => {
    const now = client.auth.tokenDetails?.token;
    if (!now || now === token) return;
    if (token !== null) show('renewals', String(++renewals));
    token = now;
  }, 250);
  client.connection.once('connected', async () => {
    show('client-id', client.auth.clientId);
    const channel = client.channels.get('chat:example');
    await channel.subscribe((message) => show('message', `${message.clientId}: ${message.data}`));
    await channel.publish('greeting', 'hello from another origin');
  });
}

const params = new URLSearchParams(location.search);
try {
  if (params.has('error')) throw new Error(params.get('error_description') || params.get('error'));
  if (params.has('code')) connect(await finishLogin(params));
  else {
    show('state', 'not logged in');
    const button = document.getElementById('login');
    button.hidden = false;
    button.addEventListener('click', () => startLogin());
  }
} catch (error) {
  show('state', `failed: ${error.message}`);
}
