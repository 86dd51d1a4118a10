// Log in at an OpenID Connect provider from a page: the authorization code flow with PKCE, for a public
// client (no secret in the page). Shared by examples/other-origin and examples/react. In your own app,
// your provider's SDK (Auth0, Keycloak, oidc-client-ts...) does this.
//
// config: { issuer, clientId } (here from /dev-config.json); redirectUri: this page's address.
const b64url = (bytes) => btoa(String.fromCharCode(...new Uint8Array(bytes)))
  .replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');

async function discover(issuer) {
  return (await fetch(`${issuer}/.well-known/openid-configuration`)).json();
}

/** Go to the provider's login page; it comes back to redirectUri with ?code=...&state=... */
export async function startLogin(config, redirectUri) {
  const verifier = b64url(crypto.getRandomValues(new Uint8Array(32)));
  const state = b64url(crypto.getRandomValues(new Uint8Array(16)));
  sessionStorage.setItem('pkce', JSON.stringify({ verifier, state }));
  const challenge = b64url(await crypto.subtle.digest('SHA-256', new TextEncoder().encode(verifier)));
  const url = new URL((await discover(config.issuer)).authorization_endpoint);
  url.search = new URLSearchParams({
    client_id: config.clientId, response_type: 'code', scope: 'openid ably', redirect_uri: redirectUri,
    code_challenge: challenge, code_challenge_method: 'S256', state,
  }).toString();
  location.assign(url.href);
}

/** Back from the provider: its access token for the user; null when this load is no return from it. */
export async function finishLogin(config, redirectUri) {
  const params = new URLSearchParams(location.search);
  if (params.has('error')) throw new Error(params.get('error_description') || params.get('error'));
  if (!params.has('code')) return null;
  const { verifier, state } = JSON.parse(sessionStorage.getItem('pkce') || '{}');
  sessionStorage.removeItem('pkce');
  history.replaceState(null, '', redirectUri);
  if (!verifier || params.get('state') !== state) throw new Error('login state mismatch: log in again');
  const answer = await fetch((await discover(config.issuer)).token_endpoint, {
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
