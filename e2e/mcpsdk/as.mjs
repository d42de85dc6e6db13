// The authorization server of the MCP SDK end-to-end test: oidc-provider
// with what an MCP client needs from an OAuth 2.1 authorization server:
// dynamic client registration (RFC 7591, open), the authorization code grant
// with PKCE (S256), and RFC 8707 resource indicators that issue RS256 JWT
// access tokens whose `aud` is the resource and whose `scope` is what was
// granted for it.
//
// No browser: the interaction endpoint is headless. It logs in a fixed test
// user (the authorization request's login_hint, else MCP_AS_USER, else
// "alice") and grants exactly the scopes requested for the requested resource
// (those the resource offers: mcp:tools, repo:admin, mcp:read), then finishes
// the interaction, so following the redirects ends at the client's
// redirect_uri with a code.
//
// A client's registered `scope` does not restrict what it may request later
// (oidc-provider would, by default): MCP clients register with the scope of
// the first challenge and must be able to step up beyond it.
//
// Listens on 127.0.0.1 (port from argv[2], 0 = any) and prints
// "READY <issuer>" once serving. GET /__stats (loopback, test only) returns
// {"registrations": [...], "authorizations": [...], "tokens": [...]}.
import http from 'node:http';
import crypto from 'node:crypto';
import Provider from 'oidc-provider';

const port = Number(process.argv[2] || 0);
const defaultUser = process.env.MCP_AS_USER || 'alice';
const resourceScopes = 'mcp:tools repo:admin mcp:read';

const { privateKey } = crypto.generateKeyPairSync('rsa', { modulusLength: 2048 });
const signingKey = {
  ...privateKey.export({ format: 'jwk' }),
  alg: 'RS256',
  use: 'sig',
  kid: `rs256-${crypto.randomBytes(6).toString('hex')}`,
};

const stats = { registrations: [], authorizations: [], tokens: [] };

function claimsOf(jwt) {
  try {
    return JSON.parse(Buffer.from(jwt.split('.')[1], 'base64url').toString());
  } catch {
    return {};
  }
}

function makeProvider(issuer) {
  const provider = new Provider(issuer, {
    jwks: { keys: [signingKey] },
    cookies: { keys: [crypto.randomBytes(32).toString('hex')] },
    findAccount: (ctx, id) => ({ accountId: id, claims: () => ({ sub: id }) }),
    // The resource scopes are not OpenID scopes: they exist only through the
    // resource indicator below.
    scopes: ['openid', 'offline_access'],
    pkce: { required: () => true },
    interactions: { url: (ctx, interaction) => `/interaction/${interaction.uid}` },
    extraClientMetadata: {
      // A validator runs for every client, at registration and whenever the
      // client is loaded; dropping `scope` here lifts oidc-provider's
      // per-client scope restriction (see the header comment).
      properties: ['x_e2e'],
      validator(ctx, key, value, metadata) {
        delete metadata.scope;
      },
    },
    features: {
      devInteractions: { enabled: false },
      registration: { enabled: true },
      resourceIndicators: {
        enabled: true,
        defaultResource: () => undefined,
        useGrantedResource: () => true,
        getResourceServerInfo: (ctx, resourceIndicator) => ({
          scope: resourceScopes,
          audience: resourceIndicator,
          accessTokenTTL: 3600,
          accessTokenFormat: 'jwt',
          jwt: { sign: { alg: 'RS256' } },
        }),
      },
    },
  });
  provider.on('registration_create.success', (ctx, client) => {
    const body = ctx.oidc.body || {};
    stats.registrations.push({
      client_id: client.clientId,
      scope: body.scope ?? null,
      redirect_uris: client.redirectUris,
      token_endpoint_auth_method: client.tokenEndpointAuthMethod,
      application_type: client.applicationType,
    });
  });
  provider.on('grant.success', (ctx) => {
    const claims = claimsOf(ctx.body?.access_token || '');
    stats.tokens.push({
      grant_type: ctx.oidc.params?.grant_type,
      client_id: claims.client_id,
      sub: claims.sub,
      aud: claims.aud,
      scope: claims.scope,
      refresh_token: Boolean(ctx.body?.refresh_token),
    });
  });
  provider.on('server_error', (ctx, err) => console.error('server_error', err));
  return provider;
}

// interaction logs the test user in, then consents to exactly what was
// requested for the requested resource(s).
async function interaction(provider, req, res) {
  const details = await provider.interactionDetails(req, res);
  const { prompt, params } = details;
  if (prompt.name === 'login') {
    const accountId = params.login_hint || defaultUser;
    await provider.interactionFinished(req, res, { login: { accountId } }, { mergeWithLastSubmission: false });
    return;
  }
  if (prompt.name === 'consent') {
    const grant = details.grantId
      ? await provider.Grant.find(details.grantId)
      : new provider.Grant({ accountId: details.session.accountId, clientId: params.client_id });
    const missing = prompt.details;
    if (missing.missingOIDCScope) grant.addOIDCScope(missing.missingOIDCScope.join(' '));
    if (missing.missingOIDCClaims) grant.addOIDCClaims(missing.missingOIDCClaims);
    const granted = {};
    for (const [indicator, scopes] of Object.entries(missing.missingResourceScopes || {})) {
      grant.addResourceScope(indicator, scopes.join(' '));
      granted[indicator] = scopes.join(' ');
    }
    stats.authorizations.push({
      client_id: params.client_id,
      user: details.session.accountId,
      scope: params.scope ?? null,
      resource: params.resource ?? null,
      granted,
    });
    const grantId = await grant.save();
    await provider.interactionFinished(req, res, { consent: { grantId } }, { mergeWithLastSubmission: true });
    return;
  }
  res.writeHead(400, { 'content-type': 'text/plain' });
  res.end(`unexpected prompt ${prompt.name}`);
}

let provider;
let issuer;
const server = http.createServer((req, res) => {
  const url = new URL(req.url, 'http://127.0.0.1');
  if (url.pathname === '/__stats') {
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify(stats));
    return;
  }
  if (url.pathname.startsWith('/interaction/') && req.method === 'GET') {
    interaction(provider, req, res).catch((err) => {
      console.error('interaction', err);
      if (!res.headersSent) res.writeHead(500, { 'content-type': 'text/plain' });
      res.end(String(err));
    });
    return;
  }
  provider.callback()(req, res);
});

server.listen(port, '127.0.0.1', () => {
  issuer = `http://127.0.0.1:${server.address().port}`;
  provider = makeProvider(issuer);
  console.log(`READY ${issuer}`);
});

for (const sig of ['SIGINT', 'SIGTERM']) process.on(sig, () => server.close(() => process.exit(0)));
