// panva `oidc-provider` configured as close to mock-idp's `acme` tenant as it allows, so that
// bench/idp.sh can measure both with the same load generator (mock-idp/examples/idp_loadgen.rs).
//
//   node server.mjs PORT      ->  prints "oidc-provider listening on http://127.0.0.1:PORT"
//                                 (PORT 0 picks a free port; the line names the real one)
//
// Issuer http://127.0.0.1:PORT/acme; one public client `lanyard-cli` (PKCE S256 required,
// loopback redirect http://127.0.0.1/callback on any port), ES256 ID tokens and JWT access tokens
// (ES256) from one EC P-256 key generated at start, refresh-token rotation on every use with
// reuse detection (oidc-provider revokes the grant, as mock-idp revokes the family), user alice.
//
// There is no login page: the interaction route below signs alice in and grants the requested
// scopes without rendering HTML, so authorize -> interaction -> resume -> callback is a chain of
// redirects. That is cheaper than mock-idp's real login (an Argon2 check on a form post) but is
// only taken once per worker; later authorizations reuse the session and grant, as in mock-idp
// (for which the consent policy's `native_client_prompt` check is removed, see below).
// Storage is oidc-provider's built-in in-memory adapter; mock-idp keeps its state in memory too.
// BENCH_DEBUG=1 logs each interaction's prompt to stderr.
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import http from 'node:http';

import Provider, { interactionPolicy } from 'oidc-provider';

const requested = Number.parseInt(process.argv[2] ?? '', 10);
if (!Number.isInteger(requested) || requested < 0 || requested > 65535) {
  console.error('usage: node server.mjs PORT   (0 picks a free port)');
  process.exit(2);
}

// The issuer names the port, so listen first (port 0 allowed) and build the provider after.
const server = http.createServer((req, res) => handle(req, res));
server.keepAliveTimeout = 75_000;
await new Promise((resolve, reject) => {
  server.once('error', reject);
  server.listen(requested, '127.0.0.1', resolve);
});
const { port } = server.address();

const ORIGIN = `http://127.0.0.1:${port}`;
const MOUNT = '/acme';
const ISSUER = `${ORIGIN}${MOUNT}`;
// The resource server the access tokens are for: with resource indicators, oidc-provider issues
// JWT access tokens (RFC 9068) instead of opaque ones, like mock-idp.
const RESOURCE = `${ISSUER}/api`;
const SCOPE = 'openid profile email offline_access';

const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
const jwk = { ...privateKey.export({ format: 'jwk' }), kid: 'bench-es256', alg: 'ES256', use: 'sig' };

// The same user as mock-idp's acme/alice.
const ACCOUNTS = new Map([
  ['alice', {
    email: 'alice@acme.example',
    email_verified: true,
    name: 'Alice Acme',
    preferred_username: 'alice',
  }],
]);

// oidc-provider asks for consent on every authorization of a native client
// (`native_client_prompt`); mock-idp answers a signed-in session with a code directly, so drop
// that one check to match. Every other login/consent check stays.
const policy = interactionPolicy.base();
policy.get('consent').checks.remove('native_client_prompt');

const configuration = {
  clients: [{
    client_id: 'lanyard-cli',
    application_type: 'native',
    token_endpoint_auth_method: 'none',
    grant_types: ['authorization_code', 'refresh_token'],
    response_types: ['code'],
    redirect_uris: ['http://127.0.0.1/callback'],
    id_token_signed_response_alg: 'ES256',
    scope: SCOPE,
  }],
  jwks: { keys: [jwk] },
  cookies: { keys: [randomBytes(32).toString('base64url')] },
  scopes: ['openid', 'profile', 'email', 'offline_access'],
  claims: {
    openid: ['sub'],
    profile: ['name', 'preferred_username'],
    email: ['email', 'email_verified'],
  },
  async findAccount(_ctx, id) {
    const claims = ACCOUNTS.get(id);
    if (!claims) return undefined;
    return { accountId: id, claims: async () => ({ sub: id, ...claims }) };
  },
  pkce: { required: () => true },
  rotateRefreshToken: true,
  issueRefreshToken: async () => true,
  // mock-idp's defaults (mock-idp/src/config.rs `Lifetimes`).
  ttl: {
    AccessToken: 600,
    AuthorizationCode: 60,
    IdToken: 600,
    RefreshToken: 30 * 24 * 3600,
    Session: 8 * 3600,
    Grant: 30 * 24 * 3600,
    Interaction: 600,
  },
  features: {
    devInteractions: { enabled: false },
    resourceIndicators: {
      enabled: true,
      defaultResource: async () => RESOURCE,
      useGrantedResource: async () => true,
      getResourceServerInfo: async (_ctx, resource) => {
        if (resource !== RESOURCE) throw new Error(`unknown resource ${resource}`);
        return {
          scope: SCOPE,
          audience: 'lanyard-cli',
          accessTokenTTL: 600,
          accessTokenFormat: 'jwt',
          jwt: { sign: { alg: 'ES256' } },
        };
      },
    },
  },
  interactions: {
    policy,
    url: (_ctx, interaction) => `/interaction/${interaction.uid}`,
  },
};

const provider = new Provider(ISSUER, configuration);
const callback = provider.callback();

// Auto-login: sign alice in and grant every requested scope, then hand back to the provider.
async function interaction(req, res) {
  const details = await provider.interactionDetails(req, res);
  const { prompt, params, session, grantId } = details;
  if (process.env.BENCH_DEBUG) console.error('interaction', JSON.stringify({ prompt, session, grantId }));
  const result = {};
  let accountId = session?.accountId;
  if (prompt.name === 'login' || !accountId) {
    accountId = 'alice';
    result.login = { accountId };
  }
  const grant = (grantId && await provider.Grant.find(grantId))
    ?? new provider.Grant({ accountId, clientId: params.client_id });
  grant.addOIDCScope(SCOPE);
  grant.addResourceScope(RESOURCE, SCOPE);
  result.consent = { grantId: await grant.save() };
  await provider.interactionFinished(req, res, result, { mergeWithLastSubmission: false });
}

function handle(req, res) {
  if (req.url === MOUNT || req.url.startsWith(`${MOUNT}/`) || req.url.startsWith(`${MOUNT}?`)) {
    req.originalUrl = req.url;
    req.url = req.url.slice(MOUNT.length) || '/';
    callback(req, res);
  } else if (req.method === 'GET' && req.url.startsWith('/interaction/')) {
    interaction(req, res).catch((err) => {
      res.statusCode = 400;
      res.setHeader('Content-Type', 'text/plain');
      res.end(`interaction failed: ${err.message}\n`);
    });
  } else {
    res.statusCode = 404;
    res.end();
  }
}

console.log(`oidc-provider listening on ${ORIGIN}`);

for (const signal of ['SIGINT', 'SIGTERM']) {
  process.on(signal, () => {
    server.close(() => process.exit(0));
    server.closeAllConnections();
  });
}
