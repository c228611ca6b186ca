// panva `oidc-provider` (a certified OpenID provider) for session-core's interop test
// (session-core/tests/interop_oidc_provider.rs): the same client that signs in at mock-idp must
// sign in, refresh and revoke here.
//
//   node provider.mjs PORT   ->  prints "oidc-provider listening on http://127.0.0.1:PORT"
//                                (PORT 0 picks a free port; the line names the real one)
//
// Issuer http://127.0.0.1:PORT (the provider at the root, so the dev interaction pages' URLs are
// the provider's own). One public native client `lanyard-cli`: no secret, PKCE S256 required,
// redirect http://127.0.0.1/callback on any port (oidc-provider ignores the port of a native
// client's loopback redirect, RFC 8252 §7.3), ES256 ID tokens, refresh tokens rotated on every
// use. Revocation (RFC 7009) and introspection (RFC 7662, so the test can ask whether a token is
// still active) are on. Sign-in and consent are oidc-provider's own development pages
// (`devInteractions`): any login name is accepted as the subject; the test posts the forms.
// Storage is the built-in in-memory adapter.
//
// Two of oidc-provider's strict defaults stay on, and session-core must cope with them: the email
// and profile claims of a code flow are only at UserInfo, not in the ID token (OIDC Core §5.4,
// `conformIdTokenClaims`), and `offline_access` is honoured only with `prompt=consent` (OIDC Core
// §11), so there is a refresh token only if the client asks for consent. OIDC_PROVIDER_DEBUG=1 logs server errors to stderr.
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import http from 'node:http';

import Provider from 'oidc-provider';

const requested = Number.parseInt(process.argv[2] ?? '', 10);
if (!Number.isInteger(requested) || requested < 0 || requested > 65535) {
  console.error('usage: node provider.mjs PORT   (0 picks a free port)');
  process.exit(2);
}

// The issuer names the port, so listen first (port 0 allowed) and build the provider after.
let callback = (_req, res) => {
  res.statusCode = 503;
  res.end();
};
const server = http.createServer((req, res) => callback(req, res));
await new Promise((resolve, reject) => {
  server.once('error', reject);
  server.listen(requested, '127.0.0.1', resolve);
});
const { port } = server.address();
const ISSUER = `http://127.0.0.1:${port}`;

const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
const jwk = { ...privateKey.export({ format: 'jwk' }), kid: 'interop-es256', alg: 'ES256', use: 'sig' };

const configuration = {
  clients: [{
    client_id: 'lanyard-cli',
    application_type: 'native',
    token_endpoint_auth_method: 'none',
    grant_types: ['authorization_code', 'refresh_token'],
    response_types: ['code'],
    redirect_uris: ['http://127.0.0.1/callback'],
    id_token_signed_response_alg: 'ES256',
  }],
  jwks: { keys: [jwk] },
  cookies: { keys: [randomBytes(32).toString('base64url')] },
  scopes: ['openid', 'profile', 'email', 'offline_access'],
  claims: {
    openid: ['sub'],
    profile: ['name', 'preferred_username'],
    email: ['email', 'email_verified'],
  },
  // Every login name is a user; the claims are derived from it so the test can check them.
  async findAccount(_ctx, id) {
    return {
      accountId: id,
      claims: async () => ({
        sub: id,
        email: `${id}@interop.example`,
        email_verified: true,
        name: `${id} (oidc-provider)`,
        preferred_username: id,
      }),
    };
  },
  // Public clients must use PKCE; oidc-provider only accepts S256 (no `plain`).
  pkce: { required: () => true },
  // Rotate on every use, as mock-idp does (oidc-provider's default already rotates the refresh
  // tokens of public clients; this says so for the reader).
  rotateRefreshToken: true,
  ttl: {
    AccessToken: 600,
    AuthorizationCode: 60,
    IdToken: 600,
    RefreshToken: 24 * 3600,
    Session: 3600,
    Grant: 24 * 3600,
    Interaction: 600,
  },
  features: {
    devInteractions: { enabled: true },
    revocation: { enabled: true },
    introspection: { enabled: true },
  },
};

const provider = new Provider(ISSUER, configuration);
if (process.env.OIDC_PROVIDER_DEBUG) {
  provider.on('server_error', (_ctx, err) => console.error('server_error', err));
  for (const event of ['grant.error', 'authorization.error', 'revocation.error', 'introspection.error']) {
    provider.on(event, (_ctx, err) => console.error(event, err));
  }
}
callback = provider.callback();

console.log(`oidc-provider listening on ${ISSUER}`);

for (const signal of ['SIGINT', 'SIGTERM']) {
  process.on(signal, () => {
    server.close(() => process.exit(0));
    server.closeAllConnections();
  });
}
