// A real OpenID Provider (the certified `oidc-provider` package) on loopback,
// for switchboard's integration tests.
//
// The test harness (tests/it/support/idp.rs) starts it with:
//   IDP_PORT            port to listen on; 0 (the default) lets the OS choose
//   IDP_CLIENT_ID       the static confidential client's id
//   IDP_CLIENT_SECRET   its secret
//   IDP_REDIRECT_URIS   its redirect URIs, separated by spaces (any that is
//                       not http(s) makes it a native client, RFC 8252)
//   IDP_CLIENT_AUTH_METHOD  optional: its token endpoint auth method
//                       (client_secret_basic by default)
//   IDP_WATCH_PID       optional: exit once this process is gone, so a test
//                       binary killed with SIGKILL leaves no IdP behind
//
// The first stdout line is the port it listens on. Then:
// - any login succeeds at the development login form, and `findAccount`
//   answers claims derived from the login name (see `claimsOf`);
// - grants are pre-approved (no consent page), PKCE is required;
// - `POST /__rotate` replaces the signing keys with a fresh key set behind the
//   same port (the Provider is recreated; sessions, interactions and codes
//   live in the shared in-memory adapter and survive), answering the new kid.

import { createServer } from 'node:http';
import { generateKeyPairSync, randomBytes } from 'node:crypto';

import Provider, { interactionPolicy } from 'oidc-provider';

const port = Number(process.env.IDP_PORT ?? '0');
const clientId = process.env.IDP_CLIENT_ID ?? 'switchboard-test';
const clientSecret = process.env.IDP_CLIENT_SECRET ?? 'switchboard-test-secret';
const redirectUris = (process.env.IDP_REDIRECT_URIS ?? 'https://shop.example.com/callback')
  .split(/\s+/)
  .filter(Boolean);
// A client with an app's private-use redirect scheme (com.example.app:/cb,
// RFC 8252) is a native client: oidc-provider refuses such URIs for web ones.
const applicationType = redirectUris.some((uri) => !/^https?:/i.test(uri)) ? 'native' : 'web';
// Interaction and session cookies must stay readable across key rotations.
const cookieKeys = [randomBytes(32).toString('base64url')];

function freshSigningKey() {
  const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const jwk = privateKey.export({ format: 'jwk' });
  return { ...jwk, kid: `k-${randomBytes(8).toString('hex')}`, alg: 'RS256', use: 'sig' };
}

// A login `name` has the email `name@example.com`, verified. A login
// `name|address` has the email `address`, and `name|address|unverified`
// that email with `email_verified: false` (an IdP where users register
// themselves and type any address).
function claimsOf(login) {
  const [first, address, verified] = String(login).split('|');
  const name = first.trim() || 'visitor';
  const given = name.charAt(0).toUpperCase() + name.slice(1);
  return {
    // The account id as the login form gave it, as oidc-provider expects.
    sub: address ? String(login) : name,
    email: address || `${name}@example.com`,
    email_verified: verified !== 'unverified',
    given_name: given,
    family_name: 'Tester',
    name: `${given} Tester`,
  };
}

// Grants are pre-approved, for native clients too: oidc-provider would
// otherwise ask a native client's user to consent on every login.
function interactions() {
  const policy = interactionPolicy.base();
  policy.get('consent').checks.remove('native_client_prompt');
  return { policy };
}

function buildProvider(issuer, signingKey) {
  const provider = new Provider(issuer, {
    clients: [
      {
        client_id: clientId,
        client_secret: clientSecret,
        redirect_uris: redirectUris,
        application_type: applicationType,
        grant_types: ['authorization_code'],
        response_types: ['code'],
        token_endpoint_auth_method: process.env.IDP_CLIENT_AUTH_METHOD ?? 'client_secret_basic',
      },
    ],
    jwks: { keys: [signingKey] },
    cookies: { keys: cookieKeys },
    claims: {
      openid: ['sub'],
      email: ['email', 'email_verified'],
      profile: ['name', 'given_name', 'family_name'],
    },
    // Profile claims in the ID token itself, as the IdPs switchboard meets
    // in practice send them.
    conformIdTokenClaims: false,
    pkce: { required: () => true },
    interactions: interactions(),
    features: { devInteractions: { enabled: true } },
    async findAccount(_ctx, id) {
      return {
        accountId: id,
        async claims() {
          return claimsOf(id);
        },
      };
    },
    // Pre-approved: every client gets every scope it asks for, without a
    // consent page.
    async loadExistingGrant(ctx) {
      const grantId = ctx.oidc.result?.consent?.grantId
        || ctx.oidc.session.grantIdFor(ctx.oidc.client.clientId);
      if (grantId) {
        return ctx.oidc.provider.Grant.find(grantId);
      }
      const grant = new ctx.oidc.provider.Grant({
        clientId: ctx.oidc.client.clientId,
        accountId: ctx.oidc.session.accountId,
      });
      grant.addOIDCScope('openid email profile');
      await grant.save();
      return grant;
    },
  });
  return provider;
}

let handler = null;

const server = createServer((req, res) => {
  if (req.method === 'POST' && req.url === '/__rotate') {
    const key = freshSigningKey();
    handler = buildProvider(issuerOf(), key).callback();
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ kid: key.kid }));
    return;
  }
  handler(req, res);
});

function issuerOf() {
  return `http://127.0.0.1:${server.address().port}`;
}

server.listen(port, '127.0.0.1', () => {
  // Built in the same tick as the listen callback, before any request can be
  // read, so `handler` is never null while serving.
  handler = buildProvider(issuerOf(), freshSigningKey()).callback();
  process.stdout.write(`${server.address().port}\n`);
});

const watched = Number(process.env.IDP_WATCH_PID ?? '0');
if (watched > 0) {
  setInterval(() => {
    try {
      process.kill(watched, 0);
    } catch {
      process.exit(0);
    }
  }, 1000).unref();
}

for (const signal of ['SIGINT', 'SIGTERM']) {
  process.on(signal, () => process.exit(0));
}
