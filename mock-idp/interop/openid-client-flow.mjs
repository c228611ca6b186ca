#!/usr/bin/env node
// Interop check: drives the mock IdP with panva's certified relying party, openid-client v6.
//
//   node mock-idp/interop/openid-client-flow.mjs http://127.0.0.1:PORT/acme
//
// Discovery, authorization code + PKCE S256 (login as alice through the HTML form), ID token
// validation, UserInfo, refresh with rotation, introspection (as the confidential
// lanyard-registry), revocation, and rejection of a rotated-out refresh token. Prints one JSON
// line of results and exits 0; on any failure prints the error to stderr and exits 1.
//
// The IdP runs over plain http on loopback, hence allowInsecureRequests.

import { createHash } from 'node:crypto';

import * as client from 'openid-client';

const CLI = 'lanyard-cli';
const REGISTRY = 'lanyard-registry';
const REGISTRY_SECRET = 'lanyard-registry-dev-secret';
const USERNAME = 'alice';
const PASSWORD = 'lanyard-dev';
// A loopback redirect URI: the IdP matches it on any port (RFC 8252 §7.3).
const REDIRECT_URI = 'http://127.0.0.1:53682/callback';
const SCOPE = 'openid profile email offline_access';

class CheckFailed extends Error {}

function check(condition, message) {
  if (!condition) throw new CheckFailed(message);
}

/** The value of the hidden `auth_request` input of the login page. */
function authRequestOf(html) {
  const m = /<input[^>]*\bname="auth_request"[^>]*\bvalue="([^"]*)"/.exec(html);
  check(m, `no auth_request input in the login page: ${html.slice(0, 500)}`);
  // maud escapes attribute values; undo the entities it may produce.
  return m[1]
    .replaceAll('&quot;', '"')
    .replaceAll('&lt;', '<')
    .replaceAll('&gt;', '>')
    .replaceAll('&#39;', "'")
    .replaceAll('&amp;', '&');
}

/**
 * OIDC Core §3.1.3.8: at_hash is the base64url left half of the access token's hash, with the
 * hash of the ID token's alg (SHA-256 for ES256/RS256). openid-client does not check at_hash
 * (it is optional in the code flow), so the script does.
 */
function atHashMatches(idTokenClaims, accessToken) {
  const left = createHash('sha256').update(accessToken, 'ascii').digest().subarray(0, 16);
  return idTokenClaims.at_hash === left.toString('base64url');
}

/** Runs `fn`, expecting it to throw an OAuth error response with `error`; returns the error. */
async function expectOAuthError(fn, error, what) {
  let thrown;
  try {
    await fn();
  } catch (e) {
    thrown = e;
  }
  check(thrown, `${what}: expected an ${error} error, but it succeeded`);
  if (thrown instanceof CheckFailed) throw thrown;
  check(
    thrown instanceof client.ResponseBodyError && thrown.error === error,
    `${what}: expected ${error}, got ${thrown?.name}: ${thrown?.error ?? thrown?.code} ${thrown?.message}`,
  );
  return thrown;
}

async function main() {
  const issuerArg = process.argv[2];
  if (!issuerArg) {
    throw new Error('usage: node openid-client-flow.mjs ISSUER_URL');
  }
  const issuer = new URL(issuerArg);
  const insecure = { execute: [client.allowInsecureRequests] };

  // 1. Discovery (validates that the document's issuer equals the URL it was fetched for).
  //    lanyard-cli is public: no secret, token_endpoint_auth_method none.
  //    openid-client skips the ID token's signature when it came straight from the token
  //    endpoint (OIDC Core §3.1.3.7 item 6 allows relying on TLS instead); enabling its
  //    non-repudiation checks makes it verify the signature against the JWKS as well, and
  //    id_token_signed_response_alg pins the algorithm the IdP must use for this client.
  const cli = await client.discovery(
    issuer,
    CLI,
    { id_token_signed_response_alg: 'ES256' },
    client.None(),
    { execute: [client.allowInsecureRequests, client.enableNonRepudiationChecks] },
  );
  const registry = await client.discovery(
    issuer,
    REGISTRY,
    REGISTRY_SECRET,
    client.ClientSecretBasic(REGISTRY_SECRET),
    insecure,
  );
  const meta = cli.serverMetadata();
  check(meta.issuer === issuerArg, `discovered issuer ${meta.issuer} != ${issuerArg}`);

  // 2. The authorization request, with PKCE S256, state and nonce.
  const pkceCodeVerifier = client.randomPKCECodeVerifier();
  const codeChallenge = await client.calculatePKCECodeChallenge(pkceCodeVerifier);
  const state = client.randomState();
  const nonce = client.randomNonce();
  const authorizationUrl = client.buildAuthorizationUrl(cli, {
    redirect_uri: REDIRECT_URI,
    scope: SCOPE,
    code_challenge: codeChallenge,
    code_challenge_method: 'S256',
    state,
    nonce,
  });

  // 3. The "browser": the login page, then the login form as alice.
  const page = await fetch(authorizationUrl, { redirect: 'manual' });
  check(page.status === 200, `authorize answered ${page.status}, not the login page`);
  const authRequest = authRequestOf(await page.text());
  const login = await fetch(new URL(`${issuer.href.replace(/\/$/, '')}/login`), {
    method: 'POST',
    redirect: 'manual',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({ auth_request: authRequest, username: USERNAME, password: PASSWORD }),
  });
  check(login.status === 303, `login answered ${login.status}, not 303`);
  const location = login.headers.get('location');
  check(location, 'login redirect has no Location');
  const callback = new URL(location);
  check(
    `${callback.origin}${callback.pathname}` === REDIRECT_URI,
    `login redirected to ${location}, not to ${REDIRECT_URI}`,
  );

  // 4. Code exchange: openid-client checks state and iss (RFC 9207) of the callback, sends the
  //    PKCE verifier, and validates the ID token (ES256 signature via the JWKS, iss, aud, exp,
  //    iat, nonce, sub present). at_hash it leaves alone, so the script checks that itself.
  const tokens = await client.authorizationCodeGrant(cli, callback, {
    pkceCodeVerifier,
    expectedState: state,
    expectedNonce: nonce,
    idTokenExpected: true,
  });
  const claims = tokens.claims();
  check(claims, 'no ID token claims');
  check(claims.nonce === nonce, 'ID token nonce mismatch');
  check(tokens.refresh_token, 'no refresh token although offline_access was granted');
  const idTokenAlg = JSON.parse(Buffer.from(tokens.id_token.split('.')[0], 'base64url')).alg;
  check(idTokenAlg === 'ES256', `ID token alg ${idTokenAlg}, expected ES256`);
  check(atHashMatches(claims, tokens.access_token), `ID token at_hash ${claims.at_hash} does not match the access token`);

  // 5. UserInfo, with the subject checked against the ID token's.
  const userinfo = await client.fetchUserInfo(cli, tokens.access_token, claims.sub);
  check(userinfo.sub === claims.sub, 'UserInfo sub differs from the ID token sub');

  // 6. Refresh: a new refresh token (rotation) and a new access token.
  const refreshed = await client.refreshTokenGrant(cli, tokens.refresh_token);
  check(refreshed.refresh_token, 'the refresh response has no refresh_token');
  check(refreshed.refresh_token !== tokens.refresh_token, 'the refresh token was not rotated');
  check(refreshed.access_token !== tokens.access_token, 'the access token was not renewed');
  const refreshedClaims = refreshed.claims();
  if (refreshedClaims) {
    // OIDC Core §12.2: same iss, sub, aud and auth_time as the original ID token.
    check(refreshedClaims.sub === claims.sub, 'the refreshed ID token has another sub');
    check(refreshedClaims.auth_time === claims.auth_time, 'the refreshed ID token has another auth_time');
    check(atHashMatches(refreshedClaims, refreshed.access_token), 'the refreshed ID token at_hash does not match');
  }

  // 7. Introspection of the new access token, as the confidential client.
  const atIntrospection = await client.tokenIntrospection(registry, refreshed.access_token);
  check(atIntrospection.active === true, `new access token not active: ${JSON.stringify(atIntrospection)}`);
  check(atIntrospection.sub === claims.sub, 'introspected sub differs');
  check(atIntrospection.client_id === CLI, 'introspected client_id differs');
  const rtIntrospectionBefore = await client.tokenIntrospection(registry, refreshed.refresh_token);
  check(rtIntrospectionBefore.active === true, 'new refresh token not active before revocation');
  // The rotated-out refresh token is already inactive (introspection does not trip reuse
  // detection, so this leaves the new one alone).
  const oldRtIntrospection = await client.tokenIntrospection(registry, tokens.refresh_token);
  check(oldRtIntrospection.active === false, `rotated-out refresh token still active: ${JSON.stringify(oldRtIntrospection)}`);

  // 8. Revocation of the new refresh token by its own (public) client; then it is inactive.
  await client.tokenRevocation(cli, refreshed.refresh_token, { token_type_hint: 'refresh_token' });
  const rtIntrospectionAfter = await client.tokenIntrospection(registry, refreshed.refresh_token);
  check(rtIntrospectionAfter.active === false, `revoked refresh token still active: ${JSON.stringify(rtIntrospectionAfter)}`);

  // 9. The old, rotated-out refresh token is refused. (Step 7 already showed it dead before
  //    the revocation; here its family is revoked too, so this is the rejection an RP sees.)
  const oldRejected = await expectOAuthError(
    () => client.refreshTokenGrant(cli, tokens.refresh_token),
    'invalid_grant',
    'refresh with the rotated-out refresh token',
  );
  // And so is the revoked one.
  const revokedRejected = await expectOAuthError(
    () => client.refreshTokenGrant(cli, refreshed.refresh_token),
    'invalid_grant',
    'refresh with the revoked refresh token',
  );

  const result = {
    ok: true,
    issuer: meta.issuer,
    id_token_alg: idTokenAlg,
    sub: claims.sub,
    id_token_aud: claims.aud,
    id_token_nonce_matched: claims.nonce === nonce,
    at_hash_verified: true,
    preferred_username: userinfo.preferred_username ?? null,
    userinfo_sub: userinfo.sub,
    refresh_rotated: refreshed.refresh_token !== tokens.refresh_token,
    refreshed_id_token: Boolean(refreshed.id_token),
    introspection_active: atIntrospection.active,
    introspection_client_id: atIntrospection.client_id,
    old_refresh_introspection_active: oldRtIntrospection.active,
    refresh_introspection_active_before_revocation: rtIntrospectionBefore.active,
    refresh_introspection_active_after_revocation: rtIntrospectionAfter.active,
    old_refresh_token_error: oldRejected.error,
    old_refresh_token_error_description: oldRejected.error_description ?? null,
    revoked_refresh_token_error: revokedRejected.error,
  };
  process.stdout.write(`${JSON.stringify(result)}\n`);
}

function describeCause(cause) {
  if (cause instanceof Error) return { name: cause.name, message: cause.message, code: cause.code };
  if (cause instanceof Response) return { status: cause.status, url: cause.url };
  return cause;
}

main().then(
  () => process.exit(0),
  (err) => {
    const report = {
      ok: false,
      name: err?.name,
      message: err?.message,
      code: err?.code,
      error: err?.error,
      error_description: err?.error_description,
      status: err?.status,
      cause: describeCause(err?.cause),
    };
    process.stderr.write(`openid-client flow failed: ${JSON.stringify(report)}\n`);
    if (err?.stack) process.stderr.write(`${err.stack}\n`);
    process.exit(1);
  },
);
