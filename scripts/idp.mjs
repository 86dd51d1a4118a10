// DEVELOPMENT ONLY. A local OpenID Connect provider for trying authserver's "Use it from your app"
// paths on one machine: the certified `oidc-provider` package from npm (installed by scripts/setup into
// .cache/node), listening on 127.0.0.1 only, with throwaway keys made at every start, fixed demo users and
// fixed client secrets written in this file. Never point a production authserver at it.
//
//   node scripts/idp.mjs --port 8002 --service http://127.0.0.1:8000 [--examples-port 8003] [--state FILE]
//
// `scripts/serve --idp` starts it (and configures the service to trust it); see docs/development-idp.md.
// What it offers:
//   - the issuer http://127.0.0.1:PORT with discovery, JWKS, the authorization code flow (PKCE) and its
//     own login and consent pages (any password; the demo users below get their roles and e-mail);
//   - client `authserver-page` (confidential): the service's "Log in with Dev IdP" button;
//   - client `authserver-examples` (public, PKCE): the example pages on the examples origin;
//   - client `backend-worker` (client credentials): the backend token exchange;
//   - POST /dev/token  user=alice  ->  {"access_token", "token_type", "expires_in"}: an access token for
//     a demo user, issued by the provider itself (a custom grant of this development provider, since
//     oidc-provider has no password grant). This is what `scripts/idp-token alice` prints.
//   - with --examples-port, the examples/ folder on that port (another origin than the service),
//     GET /dev-config.json there (where the service, its sandbox and this provider are), and the
//     service's /auth, /login, /logout, /session and /client-config forwarded, as a reverse proxy would
//     for a page on the service's own origin.
import crypto from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const modules = process.env.ABLY_JS_NODE_MODULES || path.join(REPO, '.cache', 'node', 'node_modules');
const { default: Provider } = await import(pathToFileURL(path.join(modules, 'oidc-provider', 'lib', 'index.js')).href);

export const AUDIENCE = 'urn:authserver:dev';
export const PAGE_CLIENT = { id: 'authserver-page', secret: 'dev-only-page-secret-not-for-production-0123' };
export const WORKER_CLIENT = { id: 'backend-worker', secret: 'dev-only-worker-secret-not-for-production-01' };
const EXAMPLES_CLIENT = 'authserver-examples';
const DEV_GRANT = 'urn:authserver:dev:user-token';
const ACCESS_TOKEN_TTL = 3600;
// The demo users. Any other login name works at the provider's login page too, with the default role.
const USERS = {
  alice: { roles: ['user'], email: 'alice@example.com', name: 'Alice Example' },
  bob: { roles: ['admin'], email: 'bob@example.com', name: 'Bob Example' },
};

function option(name, fallback) {
  const at = process.argv.indexOf(`--${name}`);
  if (at === -1) return fallback;
  return process.argv[at + 1];
}

const port = Number(option('port', '8002'));
const service = option('service', 'http://127.0.0.1:8000').replace(/\/$/, '');
const examplesPort = option('examples-port', '') ? Number(option('examples-port')) : null;
const examplesOrigin = examplesPort === null ? null : `http://127.0.0.1:${examplesPort}`;
const issuer = `http://127.0.0.1:${port}`;

function signingKeys() {
  const rsa = crypto.generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey.export({ format: 'jwk' });
  const ec = crypto.generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey.export({ format: 'jwk' });
  return [
    { ...rsa, kid: 'dev-rsa', alg: 'RS256', use: 'sig' },
    { ...ec, kid: 'dev-ec', alg: 'ES256', use: 'sig' },
  ];
}

function profile(id) {
  const user = USERS[id];
  return user ? { roles: user.roles, email: user.email, name: user.name } : {};
}

const exampleRedirects = examplesOrigin ? [`${examplesOrigin}/other-origin/`, `${examplesOrigin}/react/`] : [];
const provider = new Provider(issuer, {
  jwks: { keys: signingKeys() },
  clients: [
    {
      client_id: PAGE_CLIENT.id,
      client_secret: PAGE_CLIENT.secret,
      redirect_uris: [`${service}/login/oidc/callback`],
      grant_types: ['authorization_code'],
      response_types: ['code'],
    },
    {
      client_id: EXAMPLES_CLIENT,
      token_endpoint_auth_method: 'none',
      redirect_uris: exampleRedirects.length ? exampleRedirects : ['http://127.0.0.1/unused'],
      grant_types: ['authorization_code'],
      response_types: ['code'],
    },
    {
      client_id: WORKER_CLIENT.id,
      client_secret: WORKER_CLIENT.secret,
      redirect_uris: [],
      grant_types: ['client_credentials', DEV_GRANT],
      response_types: [],
    },
  ],
  claims: { openid: ['sub', 'roles'], email: ['email'], profile: ['name'] },
  conformIdTokenClaims: false,
  extraTokenClaims: (ctx, token) => (token.accountId ? profile(token.accountId) : undefined),
  features: {
    devInteractions: { enabled: true },
    clientCredentials: { enabled: true },
    resourceIndicators: {
      enabled: true,
      defaultResource: () => AUDIENCE,
      useGrantedResource: () => true,
      getResourceServerInfo: () => ({
        scope: 'ably',
        audience: AUDIENCE,
        accessTokenFormat: 'jwt',
        accessTokenTTL: ACCESS_TOKEN_TTL,
        jwt: { sign: { alg: 'RS256' } },
      }),
    },
  },
  pkce: { required: () => true },
  ttl: { AccessToken: ACCESS_TOKEN_TTL, IdToken: ACCESS_TOKEN_TTL, ClientCredentials: ACCESS_TOKEN_TTL },
  cookies: { keys: [crypto.randomBytes(16).toString('hex')] },
  findAccount: (ctx, id) => ({ accountId: id, claims: () => ({ sub: id, ...profile(id) }) }),
});
provider.on('server_error', (ctx, err) => process.stderr.write(`dev idp: server error: ${err}\n`));

// The development grant: POST /token grant_type=urn:authserver:dev:user-token&user=NAME by the
// backend-worker client. oidc-provider itself makes and signs the access token, as for any grant.
provider.registerGrantType(
  DEV_GRANT,
  async (ctx) => {
    const user = String(ctx.oidc.params.user || '');
    if (!/^[A-Za-z0-9][A-Za-z0-9_.@+-]{0,63}$/.test(user)) {
      ctx.status = 400;
      ctx.body = { error: 'invalid_request', error_description: 'user: a demo user name such as alice' };
      return;
    }
    const token = new ctx.oidc.provider.AccessToken({
      accountId: user,
      client: ctx.oidc.client,
      grantId: `dev-${crypto.randomUUID()}`,
      gty: DEV_GRANT,
      scope: 'ably',
    });
    token.resourceServer = new ResourceServerInfo(AUDIENCE);
    ctx.body = {
      access_token: await token.save(),
      token_type: 'Bearer',
      expires_in: token.expiration,
    };
  },
  ['user'],
);

class ResourceServerInfo {
  constructor(identifier) {
    this.identifierValue = identifier;
    this.audience = identifier;
    this.scope = 'ably';
    this.accessTokenTTL = ACCESS_TOKEN_TTL;
    this.accessTokenFormat = 'jwt';
    this.jwt = { sign: { alg: 'RS256' } };
  }

  get scopes() {
    return new Set(['ably']);
  }

  identifier() {
    return this.identifierValue;
  }
}

const providerHandler = provider.callback();

// POST /dev/token user=NAME: the same grant without client authentication, for the command line
// (scripts/idp-token). Loopback only, like the rest of this provider.
function devToken(req, res) {
  let body = '';
  req.on('data', (chunk) => { body += chunk; });
  req.on('end', () => {
    const user = new URLSearchParams(body).get('user') || '';
    const form = new URLSearchParams({ grant_type: DEV_GRANT, user }).toString();
    const basic = Buffer.from(`${WORKER_CLIENT.id}:${WORKER_CLIENT.secret}`).toString('base64');
    const forward = http.request(
      `${issuer}/token`,
      { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded', authorization: `Basic ${basic}` } },
      (answer) => {
        res.writeHead(answer.statusCode, { 'content-type': 'application/json', 'cache-control': 'no-store' });
        answer.pipe(res);
      },
    );
    forward.on('error', (err) => { res.writeHead(502); res.end(String(err)); });
    forward.end(form);
  });
}

const server = http.createServer((req, res) => {
  if (req.method === 'POST' && req.url === '/dev/token') return devToken(req, res);
  return providerHandler(req, res);
});

const TYPES = { '.html': 'text/html; charset=utf-8', '.js': 'text/javascript', '.mjs': 'text/javascript',
  '.css': 'text/css', '.json': 'application/json', '.png': 'image/png', '.map': 'application/json' };

async function devConfig() {
  const answer = await fetch(`${service}/client-config`).then((r) => r.json()).catch(() => ({}));
  return {
    service,
    authUrl: `${service}/auth`,
    clientOptions: answer.clientOptions || {},
    issuer,
    clientId: EXAMPLES_CLIENT,
    audience: AUDIENCE,
  };
}

// What the examples' origin forwards to the service, as a reverse proxy in front of a same-origin app
// would (examples/same-origin): the token service's API under the page's own origin.
const FORWARDED = new Set(['/auth', '/login', '/logout', '/session', '/client-config']);

function forward(req, res) {
  const target = new URL(req.url, service);
  const headers = { ...req.headers, host: target.host, 'x-forwarded-host': req.headers.host };
  const upstream = http.request(target, { method: req.method, headers }, (answer) => {
    res.writeHead(answer.statusCode, answer.headers);
    answer.pipe(res);
  });
  upstream.on('error', () => { res.writeHead(502, { 'content-type': 'text/plain' }); res.end('authserver is not answering\n'); });
  req.pipe(upstream);
}

// The examples' origin: files of examples/ (no listing, nothing outside it), /dev-config.json, and
// the service's API forwarded.
async function serveExample(req, res) {
  const url = new URL(req.url, 'http://x');
  if (FORWARDED.has(url.pathname)) {
    forward(req, res);
    return;
  }
  if (url.pathname === '/dev-config.json') {
    res.writeHead(200, { 'content-type': 'application/json', 'cache-control': 'no-store' });
    res.end(JSON.stringify(await devConfig()));
    return;
  }
  // ably-js for the plain pages: the copy scripts/setup installed from npm.
  const root = path.join(REPO, 'examples');
  let file = path.normalize(path.join(root, decodeURIComponent(url.pathname)));
  if (url.pathname === '/ably.min.js') file = path.join(modules, 'ably', 'build', 'ably.min.js');
  else if (url.pathname.endsWith('/')) file = path.join(file, 'index.html');
  const allowed = file.startsWith(root + path.sep) || url.pathname === '/ably.min.js';
  if (!allowed || !fs.existsSync(file) || !fs.statSync(file).isFile()) {
    res.writeHead(404, { 'content-type': 'text/plain' });
    res.end('not found\n');
    return;
  }
  res.writeHead(200, { 'content-type': TYPES[path.extname(file)] || 'application/octet-stream', 'cache-control': 'no-cache' });
  fs.createReadStream(file).pipe(res);
}

// Once listening: where it is, as one JSON object, into the --state file (scripts/idp-token reads it;
// written whole, then renamed, so a reader never sees half of it) or else on stdout.
function announce() {
  const state = JSON.stringify({ issuer, audience: AUDIENCE, service, examples: examplesOrigin, users: Object.keys(USERS) });
  const file = option('state', '');
  if (!file) {
    console.log(state);
    return;
  }
  fs.writeFileSync(`${file}.tmp`, `${state}\n`);
  fs.renameSync(`${file}.tmp`, file);
}

server.listen(port, '127.0.0.1', () => {
  if (examplesPort === null) {
    announce();
    return;
  }
  http.createServer((req, res) => { serveExample(req, res).catch(() => res.end()); })
    .listen(examplesPort, '127.0.0.1', announce);
});
for (const signal of ['SIGTERM', 'SIGINT']) process.on(signal, () => process.exit(0));
