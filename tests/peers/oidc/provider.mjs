// A real OAuth 2.0 authorization server (oidc-provider 9.x) on loopback, playing a
// third-party service (a Slack / Jira stand-in) for the gateway's credential vault tests.
//
// Configured by the JSON in $OIDC_PEER_CONFIG (written by tests/peers/oidc.py):
//   port, clients[{client_id, client_secret?, token_endpoint_auth_method, redirect_uris}],
//   scopes (API scopes), resource (default resource indicator), access_token_ttl,
//   refresh_token_ttl, rotate_refresh_tokens ("public" | "always"), auto_approve,
//   default_account.
// Prints "oidc-provider ready at <issuer>" on stdout once it listens.
//
// auto_approve: GET /interaction/:uid completes login (account = the authorization
// request's login_hint, else default_account; login_hint "deny" answers access_denied)
// and consent without a form, so a plain HTTP client can follow the redirects.
// Without it the stock development login and consent pages are served (for a browser).

import { randomBytes } from 'node:crypto';

import Provider from 'oidc-provider';

const config = JSON.parse(process.env.OIDC_PEER_CONFIG ?? '{}');
const host = '127.0.0.1';
const issuer = `http://${host}:${config.port}`;
const apiScopes = config.scopes ?? ['read', 'write'];
const accessTokenTTL = config.access_token_ttl ?? 3600;
const refreshTokenTTL = config.refresh_token_ttl ?? 14 * 24 * 3600;
const DENY_ACCOUNT = 'deny';

const clients = (config.clients ?? []).map((client) => ({
  client_id: client.client_id,
  ...(client.client_secret ? { client_secret: client.client_secret } : {}),
  token_endpoint_auth_method: client.token_endpoint_auth_method ?? 'client_secret_basic',
  redirect_uris: client.redirect_uris,
  grant_types: ['authorization_code', 'refresh_token'],
  response_types: ['code'],
}));

const provider = new Provider(issuer, {
  clients,
  scopes: ['openid', 'offline_access', ...apiScopes],
  claims: { openid: ['sub'], email: ['email', 'email_verified'], profile: ['name'] },
  // Signed cookies for the interaction state; fresh keys per run (state is in memory anyway).
  cookies: { keys: [randomBytes(32).toString('hex')] },
  pkce: { required: () => true },
  async findAccount(_ctx, sub) {
    return {
      accountId: sub,
      async claims() {
        return { sub, email: `${sub}@example.test`, email_verified: true, name: sub };
      },
    };
  },
  // Like Slack / Google: every client allowed the refresh_token grant gets a refresh token,
  // without the OIDC offline_access dance.
  async issueRefreshToken(_ctx, client) {
    return client.grantTypeAllowed('refresh_token');
  },
  // Public clients always get a new refresh token (the old one then fails with
  // invalid_grant); confidential ones too when rotate_refresh_tokens is "always".
  rotateRefreshToken(ctx) {
    const { Client: client } = ctx.oidc.entities;
    return config.rotate_refresh_tokens === 'always' || client.clientAuthMethod === 'none';
  },
  // Tokens outlive the browser session at the provider, as with real SaaS providers.
  async expiresWithSession() {
    return false;
  },
  ttl: {
    AccessToken: accessTokenTTL,
    RefreshToken: refreshTokenTTL,
    AuthorizationCode: 60,
    Interaction: 600,
    Session: 24 * 3600,
    Grant: Math.max(refreshTokenTTL, 24 * 3600),
  },
  features: {
    devInteractions: { enabled: true },
    // The stock policies, spelled out: a confidential client may introspect any token, a
    // public one only its own; a client may revoke only its own tokens.
    introspection: {
      enabled: true,
      async allowedPolicy(ctx, client, token) {
        return client.clientAuthMethod !== 'none' || token.clientId === ctx.oidc.client.clientId;
      },
    },
    revocation: {
      enabled: true,
      async allowedPolicy(_ctx, client, token) {
        return token.clientId === client.clientId;
      },
    },
    resourceIndicators: {
      enabled: true,
      // Without a `resource` parameter, tokens are for the default API (so API scopes apply).
      async defaultResource(_ctx, _client, oneOf) {
        return oneOf ?? config.resource;
      },
      async useGrantedResource() {
        return true;
      },
      // Any resource is accepted: access tokens stay opaque, so they can be introspected.
      async getResourceServerInfo(_ctx, resourceIndicator) {
        return {
          scope: apiScopes.join(' '),
          audience: resourceIndicator,
          accessTokenFormat: 'opaque',
          accessTokenTTL,
        };
      },
    },
  },
});

async function autoApprove(ctx, next) {
  if (ctx.method !== 'GET' || !/^\/interaction\/[^/]+$/.test(ctx.path)) {
    return next();
  }
  const details = await provider.interactionDetails(ctx.req, ctx.res);
  const { prompt, params, session } = details;
  let result;
  if (params.login_hint === DENY_ACCOUNT) {
    result = { error: 'access_denied', error_description: 'End-User denied access' };
  } else if (prompt.name === 'login') {
    result = { login: { accountId: String(params.login_hint || config.default_account || 'alice') } };
  } else if (prompt.name === 'consent') {
    const grant = details.grantId
      ? await provider.Grant.find(details.grantId)
      : new provider.Grant({ accountId: session.accountId, clientId: params.client_id });
    const missing = prompt.details;
    if (missing.missingOIDCScope) grant.addOIDCScope(missing.missingOIDCScope.join(' '));
    if (missing.missingOIDCClaims) grant.addOIDCClaims(missing.missingOIDCClaims);
    for (const [indicator, scopes] of Object.entries(missing.missingResourceScopes ?? {})) {
      grant.addResourceScope(indicator, scopes.join(' '));
    }
    result = { consent: { grantId: await grant.save() } };
  } else {
    ctx.throw(501, `auto-approve does not handle the "${prompt.name}" prompt`);
  }
  const returnTo = await provider.interactionResult(ctx.req, ctx.res, result, {
    mergeWithLastSubmission: prompt.name !== 'login',
  });
  ctx.status = 303;
  ctx.redirect(returnTo);
}

if (config.auto_approve) {
  provider.use(autoApprove);
}

provider.on('server_error', (_ctx, error) => console.error('server_error', error));

provider.listen(config.port, host, () => {
  console.log(`oidc-provider ready at ${issuer}`);
});

for (const signal of ['SIGTERM', 'SIGINT']) {
  process.on(signal, () => process.exit(0));
}
