// A real OAuth 2.0 authorization server for mcp-authz's end-to-end tests:
// oidc-provider issuing RFC 9068 JWT access tokens by client_credentials with
// RFC 8707 resource indicators. Listens on 127.0.0.1 (port from argv[2], 0 =
// any) and prints "READY <issuer>" once serving.
//
// Test-only admin endpoints (loopback):
//   POST /__rotate?alg=RS256  publish a new signing key for alg, first in the JWKS
//   GET  /__stats             {"jwks": <JWKS requests served>}
import http from 'node:http';
import crypto from 'node:crypto';
import Provider from 'oidc-provider';

const port = Number(process.argv[2] || 0);

function newKey(alg) {
  const { privateKey } = alg.startsWith('ES')
    ? crypto.generateKeyPairSync('ec', { namedCurve: 'P-256' })
    : crypto.generateKeyPairSync('rsa', { modulusLength: 2048 });
  const jwk = privateKey.export({ format: 'jwk' });
  return { ...jwk, alg, use: 'sig', kid: `${alg.toLowerCase()}-${crypto.randomBytes(6).toString('hex')}` };
}

let keys = [newKey('RS256'), newKey('ES256')];
let jwksRequests = 0;

// Which algorithm signs a client's tokens: one client per algorithm.
const clientAlg = { 'rs-client': 'RS256', 'es-client': 'ES256' };
// mcp-authz's own client, used to call the introspection endpoint.
const resourceServerClient = 'mcp-authz';

function makeProvider(issuer) {
  const provider = new Provider(issuer, {
    clients: [...Object.keys(clientAlg), resourceServerClient].map((id) => ({
      client_id: id,
      client_secret: `${id}-secret`,
      grant_types: ['client_credentials'],
      redirect_uris: [],
      response_types: [],
      token_endpoint_auth_method: 'client_secret_basic',
    })),
    jwks: { keys },
    scopes: ['mcp:read', 'mcp:write', 'mcp:admin'],
    features: {
      devInteractions: { enabled: false },
      clientCredentials: { enabled: true },
      introspection: { enabled: true },
      revocation: { enabled: true },
      resourceIndicators: {
        enabled: true,
        defaultResource: () => undefined,
        useGrantedResource: () => true,
        getResourceServerInfo: (ctx, resourceIndicator, client) => ({
          scope: 'mcp:read mcp:write mcp:admin',
          audience: resourceIndicator,
          accessTokenTTL: 3600,
          // Resource indicators containing /opaque get opaque tokens, which
          // only introspection can judge.
          ...(resourceIndicator.includes('/opaque')
            ? { accessTokenFormat: 'opaque' }
            : { accessTokenFormat: 'jwt', jwt: { sign: { alg: clientAlg[client.clientId] || 'RS256' } } }),
        }),
      },
    },
    ttl: { ClientCredentials: 3600 },
  });
  provider.on('server_error', (ctx, err) => console.error('server_error', err));
  return provider;
}

let current;
const server = http.createServer((req, res) => {
  const url = new URL(req.url, 'http://127.0.0.1');
  if (url.pathname === '/__rotate' && req.method === 'POST') {
    const alg = url.searchParams.get('alg') || 'RS256';
    keys = [newKey(alg), ...keys];
    current = makeProvider(issuer);
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ kid: keys[0].kid }));
    return;
  }
  if (url.pathname === '/__stats') {
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ jwks: jwksRequests }));
    return;
  }
  if (url.pathname === '/jwks') jwksRequests += 1;
  current.callback()(req, res);
});

let issuer;
server.listen(port, '127.0.0.1', () => {
  issuer = `http://127.0.0.1:${server.address().port}`;
  current = makeProvider(issuer);
  console.log(`READY ${issuer}`);
});

for (const sig of ['SIGINT', 'SIGTERM']) process.on(sig, () => server.close(() => process.exit(0)));
