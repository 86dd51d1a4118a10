// A real OpenID Connect provider for the tests: the certified `oidc-provider` package from npm, on
// 127.0.0.1 with a port the system picks. It prints one JSON line once it listens:
//   {"issuer": "http://127.0.0.1:PORT", "keys": [<private JWKs it signs with>]}
// The private keys are printed so that tests can also sign hostile or special tokens with exactly the
// keys the provider publishes at its jwks_uri. A test-only endpoint swaps the provider instance:
//   POST /test/configure {"redirectUris": [...], "rotate": bool, "backchannelLogoutUri": url,
//                         "backchannelSid": bool}  -> {"keys": [...]}
// `rotate` generates fresh RSA, EC and Ed25519 keys (the old ones are no longer published). Its own login
// pages (devInteractions: any login name, any password) serve the authorization code flow. With
// `backchannelLogoutUri`, the page client is registered with that backchannel_logout_uri (and
// backchannel_logout_session_required = `backchannelSid`): ending a session at the provider
// (/session/end, then /session/end/confirm) posts a logout token there (Back-Channel Logout 1.0) before
// it answers.
//
// Settings from the SCENARIO environment variable (JSON): {"audience", "pageClientId",
// "pageClientSecret", "workerClientId", "workerClientSecret"}; modules from ABLY_JS_NODE_MODULES.
import crypto from 'node:crypto';
import http from 'node:http';
import path from 'node:path';
import { pathToFileURL } from 'node:url';

const modules = process.env.ABLY_JS_NODE_MODULES;
if (!modules) throw new Error('ABLY_JS_NODE_MODULES is not set');
const { default: Provider } = await import(pathToFileURL(path.join(modules, 'oidc-provider', 'lib', 'index.js')).href);
const settings = JSON.parse(process.env.SCENARIO || '{}');

let generation = 0;
function freshKeys() {
  generation += 1;
  const rsa = crypto.generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey.export({ format: 'jwk' });
  const ec = crypto.generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey.export({ format: 'jwk' });
  const ed = crypto.generateKeyPairSync('ed25519').privateKey.export({ format: 'jwk' });
  return [
    { ...rsa, kid: `rsa-${generation}`, alg: 'RS256', use: 'sig' },
    { ...ec, kid: `ec-${generation}`, alg: 'ES256', use: 'sig' },
    { ...ed, kid: `ed-${generation}`, alg: 'EdDSA', use: 'sig' },
  ];
}

let keys = freshKeys();
let redirectUris = ['http://127.0.0.1/unused'];
let backchannel = null;
let handler = null;

const server = http.createServer((req, res) => {
  if (req.method === 'POST' && req.url === '/test/configure') {
    let body = '';
    req.on('data', (chunk) => { body += chunk; });
    req.on('end', () => {
      const wanted = JSON.parse(body || '{}');
      if (wanted.redirectUris) redirectUris = wanted.redirectUris;
      if (wanted.rotate) keys = freshKeys();
      if (wanted.backchannelLogoutUri) backchannel = { uri: wanted.backchannelLogoutUri, sid: Boolean(wanted.backchannelSid) };
      handler = build().callback();
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ keys }));
    });
    return;
  }
  handler(req, res);
});

let issuer = '';

function build() {
  const provider = new Provider(issuer, {
    jwks: { keys },
    clients: [
      {
        client_id: settings.pageClientId,
        client_secret: settings.pageClientSecret,
        redirect_uris: redirectUris,
        grant_types: ['authorization_code'],
        response_types: ['code'],
        id_token_signed_response_alg: 'ES256',
        ...(backchannel ? { backchannel_logout_uri: backchannel.uri, backchannel_logout_session_required: backchannel.sid } : {}),
      },
      {
        client_id: settings.workerClientId,
        client_secret: settings.workerClientSecret,
        redirect_uris: [],
        grant_types: ['client_credentials'],
        response_types: [],
      },
    ],
    features: {
      devInteractions: { enabled: true },
      clientCredentials: { enabled: true },
      backchannelLogout: { enabled: true },
      resourceIndicators: {
        enabled: true,
        defaultResource: () => settings.audience,
        useGrantedResource: () => true,
        getResourceServerInfo: () => ({
          scope: 'ably',
          audience: settings.audience,
          accessTokenFormat: 'jwt',
          accessTokenTTL: 300,
          jwt: { sign: { alg: 'RS256' } },
        }),
      },
    },
    pkce: { required: () => true },
    // Its outgoing calls (the back-channel logouts) refuse loopback addresses (SSRF protection): the
    // service under test listens on 127.0.0.1, so the protecting dispatcher is left out here.
    fetch: (url, options) => {
      const { dispatcher, ...rest } = options;
      return globalThis.fetch(url, rest);
    },
    cookies: { keys: [crypto.randomBytes(16).toString('hex')] },
    findAccount: (ctx, id) => ({ accountId: id, claims: () => ({ sub: id }) }),
  });
  provider.on('server_error', (ctx, err) => process.stderr.write(`provider error: ${err}\n`));
  provider.on('backchannel.error', (ctx, err) => process.stderr.write(`provider back-channel logout error: ${err}\n`));
  return provider;
}

server.listen(0, '127.0.0.1', () => {
  issuer = `http://127.0.0.1:${server.address().port}`;
  handler = build().callback();
  console.log(JSON.stringify({ issuer, keys }));
});
process.on('SIGTERM', () => process.exit(0));
