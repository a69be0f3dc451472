// The node-oidc-provider peer for loadgen's side-by-side run (issue 7).
//
// It is set up the way loadgen sets up Portcullis: one confidential first-party client
// (authorization_code, refresh_token with rotation, client_credentials), one user whose
// password is an argon2id hash at Portcullis's parameters, ES256 JWT access tokens for the
// `api` scope, opaque tokens for userinfo, introspection on. Storage is in memory
// (store.mjs: the library's own memory adapter evicts under load): nothing touches a disk.
//
// Settings come as one JSON object on standard input (so the client secret and the password
// never show in the process list or its environment); the peer prints `listening <port>`.

import { generateKeyPairSync, randomBytes } from 'node:crypto';

import argon2 from 'argon2';
import Provider, { errors } from 'oidc-provider';

import MapStore from './store.mjs';

const API = 'urn:portcullis-bench:api';

// Portcullis's production argon2id parameters (m = 19456 KiB, t = 2, p = 1).
const ARGON2ID = {
  type: argon2.argon2id,
  memoryCost: 19456,
  timeCost: 2,
  parallelism: 1,
};

async function readSettings() {
  let text = '';
  for await (const chunk of process.stdin) text += chunk;
  const settings = JSON.parse(text);
  for (const key of ['port', 'client_id', 'client_secret', 'redirect_uri', 'email', 'password']) {
    if (settings[key] === undefined) throw new Error(`setting ${key} is missing`);
  }
  return settings;
}

// The same key set Portcullis publishes on a first start: two keys for each of RS256,
// PS256 (2048-bit RSA), ES256 (P-256) and EdDSA (Ed25519).
function keySet() {
  const kinds = [
    ['RS256', 'rsa', { modulusLength: 2048 }],
    ['PS256', 'rsa', { modulusLength: 2048 }],
    ['ES256', 'ec', { namedCurve: 'P-256' }],
    ['EdDSA', 'ed25519', {}],
  ];
  const keys = [];
  for (const generation of [1, 2]) {
    for (const [alg, type, options] of kinds) {
      const { privateKey } = generateKeyPairSync(type, options);
      keys.push({ ...privateKey.export({ format: 'jwk' }), alg, use: 'sig', kid: `${alg}-${generation}` });
    }
  }
  return { keys };
}

async function readForm(req, limit = 16 * 1024) {
  let body = '';
  for await (const chunk of req) {
    body += chunk;
    if (body.length > limit) throw new errors.InvalidRequest('form too large');
  }
  return new URLSearchParams(body);
}

function escapeHtml(text) {
  return String(text).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

function loginPage(uid, message) {
  const notice = message ? `<p role="alert">${escapeHtml(message)}</p>` : '';
  return `<!doctype html>
<html><head><meta charset="utf-8"><title>Sign in</title></head>
<body><main><h1>Sign in</h1>${notice}
<form method="post" action="/interaction/${escapeHtml(uid)}/login">
<label>Email <input name="username" type="email" autocomplete="username" required></label>
<label>Password <input name="password" type="password" autocomplete="current-password" required></label>
<button type="submit">Sign in</button>
</form></main></body></html>`;
}

const settings = await readSettings();
const issuer = `http://127.0.0.1:${settings.port}`;
const user = { sub: 'bench-user', email: settings.email, email_verified: true, name: 'Bench User' };
const passwordHash = await argon2.hash(settings.password, ARGON2ID);
delete settings.password;

const provider = new Provider(issuer, {
  adapter: MapStore,
  clients: [{
    client_id: settings.client_id,
    client_secret: settings.client_secret,
    redirect_uris: [settings.redirect_uri],
    response_types: ['code'],
    grant_types: ['authorization_code', 'refresh_token', 'client_credentials'],
    token_endpoint_auth_method: 'client_secret_basic',
    // OIDC scopes only: `api` belongs to the resource server below.
    scope: 'openid profile email offline_access',
  }],
  jwks: keySet(),
  cookies: { keys: [randomBytes(32).toString('base64url')] },
  claims: {
    openid: ['sub'],
    email: ['email', 'email_verified'],
    profile: ['name'],
  },
  scopes: ['openid', 'offline_access'],
  async findAccount(_ctx, sub) {
    if (sub !== user.sub) return undefined;
    return { accountId: sub, claims: async () => ({ ...user }) };
  },
  features: {
    devInteractions: { enabled: false },
    clientCredentials: { enabled: true },
    introspection: { enabled: true },
    userinfo: { enabled: true },
    resourceIndicators: {
      enabled: true,
      // A client_credentials request without `resource` gets the API's JWT, as at
      // Portcullis; a sign-in without `resource` keeps its opaque, userinfo-bound token.
      async defaultResource(ctx, _client, oneOf) {
        if (oneOf) return oneOf;
        if (ctx.oidc.route === 'token' && ctx.oidc.params.grant_type === 'client_credentials') return API;
        return undefined;
      },
      async getResourceServerInfo(_ctx, resource) {
        if (resource !== API) throw new errors.InvalidTarget();
        return {
          scope: 'api',
          audience: API,
          accessTokenTTL: 15 * 60,
          accessTokenFormat: 'jwt',
          jwt: { sign: { alg: 'ES256' } },
        };
      },
      async useGrantedResource() {
        return false;
      },
    },
  },
  rotateRefreshToken: true,
  ttl: {
    AccessToken: 15 * 60,
    AuthorizationCode: 60,
    ClientCredentials: 15 * 60,
    IdToken: 15 * 60,
    Interaction: 10 * 60,
    RefreshToken: 30 * 24 * 60 * 60,
    Session: 14 * 24 * 60 * 60,
    Grant: 30 * 24 * 60 * 60,
  },
});

// The sign-in pages: node-oidc-provider leaves them to the application. The client is
// first-party, so a correct password also grants what was asked (no consent page), as
// Portcullis does for a `--first-party` client.
provider.use(async (ctx, next) => {
  const route = /^\/interaction\/([A-Za-z0-9_-]+)(\/login)?$/.exec(ctx.path);
  if (!route) return next();
  const [, uid, login] = route;
  const interaction = await provider.interactionDetails(ctx.req, ctx.res);
  if (interaction.uid !== uid) throw new errors.SessionNotFound('interaction mismatch');
  ctx.set('cache-control', 'no-store');

  if (!login && ctx.method === 'GET') {
    ctx.type = 'html';
    ctx.body = loginPage(uid);
    return undefined;
  }
  if (!login || ctx.method !== 'POST') {
    ctx.status = 405;
    return undefined;
  }

  const form = await readForm(ctx.req);
  const password = form.get('password') ?? '';
  const known = form.get('username') === user.email;
  // Verify even for an unknown name, so both answers take an argon2id run.
  const matches = await argon2.verify(passwordHash, password) && known;
  if (!matches) {
    ctx.status = 401;
    ctx.type = 'html';
    ctx.body = loginPage(uid, 'Wrong email or password.');
    return undefined;
  }

  const { params, prompt } = interaction;
  const grant = new provider.Grant({ accountId: user.sub, clientId: params.client_id });
  grant.addOIDCScope(params.scope);
  for (const [resource, scopes] of Object.entries(prompt.details.missingResourceScopes ?? {})) {
    grant.addResourceScope(resource, scopes.join(' '));
  }
  const grantId = await grant.save();
  const returnTo = await provider.interactionResult(
    ctx.req,
    ctx.res,
    { login: { accountId: user.sub }, consent: { grantId } },
    { mergeWithLastSubmission: false },
  );
  ctx.status = 303;
  ctx.redirect(returnTo);
  return undefined;
});

provider.listen(settings.port, '127.0.0.1', () => {
  process.stdout.write(`listening ${settings.port}\n`);
});
