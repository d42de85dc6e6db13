// The MCP client of the MCP SDK end-to-end test: the SDK's Client and
// StreamableHTTPClientTransport with an in-memory OAuthClientProvider, going
// from no token through discovery, dynamic registration and authorization to
// tool calls, the way the SDK's simpleOAuthClient example does, without a
// browser: redirectToAuthorization follows the authorization server's
// redirects with fetch (a small cookie jar keeps its session) until they reach
// the loopback redirect_uri, where a callback listener takes the code.
//
//   node client.mjs <MCP URL> [--mode basic|stepup] [--user NAME]
//
// Prints one JSON object per line, each with a "step":
//   http        every request the SDK made (MCP, metadata, registration,
//               token): method, url, JSON-RPC method, whether it carried a
//               bearer token, its Mcp-Session-Id, status, WWW-Authenticate
//   authorize   an authorization request: scope, resource, client_id
//   browser     each hop of the headless user agent
//   registered  the dynamic registration's result
//   tokens      the tokens saved: scope, and the access token's claims
//   unauthorized  the SDK gave up a request to let the user authorize
//   transport_error  an error the SDK's transport reported (it goes on)
//   connected, tools, call, whoami, sse (the standalone SSE stream's status),
//   terminated, done, error
// basic: connect (401 -> OAuth), list tools, call echo and whoami, end the
// session. stepup: the same, then call delete_repo, which needs more scope:
// the SDK meets 403 insufficient_scope, authorizes again for the challenge's
// scope, and the call is retried on the same session.
import http from 'node:http';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { UnauthorizedError } from '@modelcontextprotocol/sdk/client/auth.js';

const args = process.argv.slice(2);
const mcpUrl = args[0];
const opt = (name, dflt) => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? args[i + 1] : dflt;
};
const mode = opt('mode', 'basic');
const user = opt('user', '');

const out = (step, fields = {}) => process.stdout.write(`${JSON.stringify({ step, ...fields })}\n`);

function rpcMethod(body) {
  if (typeof body !== 'string') return undefined;
  try {
    const msg = JSON.parse(body);
    return Array.isArray(msg) ? msg.map((m) => m.method).join(',') : msg.method;
  } catch {
    return undefined;
  }
}

// sseOpened settles with the status of the SDK's standalone SSE stream (the
// GET it opens after initialization), so the run ends only after it went
// through the front.
let sseStatus;
const sseOpened = new Promise((resolve) => (sseStatus = resolve));

// loggingFetch is the fetch the SDK uses for everything it sends.
async function loggingFetch(url, init = {}) {
  const res = await fetch(url, init);
  const sent = new Headers(init.headers);
  if ((init.method || 'GET') === 'GET' && String(url) === mcpUrl) sseStatus(res.status);
  out('http', {
    method: init.method || 'GET',
    url: String(url),
    rpc: rpcMethod(init.body),
    bearer: /^bearer /i.test(sent.get('authorization') ?? ''),
    session: sent.get('mcp-session-id'),
    status: res.status,
    www_authenticate: res.headers.get('www-authenticate'),
  });
  return res;
}

// The loopback redirect_uri: a listener that takes the authorization response.
const callback = await new Promise((resolve) => {
  let waiting;
  const server = http.createServer((req, res) => {
    const u = new URL(req.url, 'http://127.0.0.1');
    res.writeHead(200, { 'content-type': 'text/plain' });
    res.end('You may close this window.');
    waiting?.(u.searchParams);
    waiting = undefined;
  });
  server.listen(0, '127.0.0.1', () =>
    resolve({
      url: `http://127.0.0.1:${server.address().port}/callback`,
      next: () => new Promise((r) => (waiting = r)),
      close: () => server.close(),
    }),
  );
});

// A user agent's cookie jar, enough for one loopback authorization server.
const jar = new Map();
function keepCookies(res) {
  for (const line of res.headers.getSetCookie()) {
    const [pair, ...attrs] = line.split(';');
    const eq = pair.indexOf('=');
    const name = pair.slice(0, eq).trim();
    const value = pair.slice(eq + 1).trim();
    const expired = attrs.some((a) => {
      const [k, v] = a.trim().split('=');
      return (k.toLowerCase() === 'expires' && Date.parse(v) <= Date.now()) || (k.toLowerCase() === 'max-age' && Number(v) <= 0);
    });
    if (expired || value === '') jar.delete(name);
    else jar.set(name, value);
  }
}
const cookieHeader = () => [...jar].map(([k, v]) => `${k}=${v}`).join('; ');

// authorizeHeadless plays the user's browser: it follows redirects from the
// authorization URL until the callback listener has the response.
async function authorizeHeadless(authorizationUrl, state) {
  const response = callback.next();
  let url = new URL(authorizationUrl);
  for (let hop = 0; hop < 20; hop++) {
    const res = await fetch(url, { redirect: 'manual', headers: { cookie: cookieHeader() } });
    keepCookies(res);
    out('browser', { status: res.status, url: url.origin + url.pathname });
    const location = res.headers.get('location');
    if (res.status >= 300 && res.status < 400 && location) {
      await res.body?.cancel();
      url = new URL(location, url);
      continue;
    }
    const text = await res.text();
    if (url.href.startsWith(callback.url)) break;
    throw new Error(`authorization stopped at ${url.origin}${url.pathname} with ${res.status}: ${text.slice(0, 300)}`);
  }
  const params = await response;
  if (params.get('error')) {
    throw new Error(`authorization error ${params.get('error')}: ${params.get('error_description')}`);
  }
  if (params.get('state') !== state) throw new Error('state mismatch');
  return params.get('code');
}

function claimsOf(jwt) {
  try {
    return JSON.parse(Buffer.from(jwt.split('.')[1], 'base64url').toString());
  } catch {
    return null;
  }
}

// HeadlessProvider is an OAuthClientProvider kept in memory.
class HeadlessProvider {
  #client;
  #tokens;
  #verifier;
  #state;
  #code;

  get redirectUrl() {
    return callback.url;
  }

  get clientMetadata() {
    return {
      client_name: 'mcp-authz e2e (MCP TypeScript SDK)',
      redirect_uris: [callback.url],
      grant_types: ['authorization_code'],
      response_types: ['code'],
      token_endpoint_auth_method: 'none',
      application_type: 'native',
    };
  }

  state() {
    this.#state = crypto.randomUUID();
    return this.#state;
  }

  clientInformation() {
    return this.#client;
  }

  saveClientInformation(info) {
    this.#client = info;
    out('registered', { client_id: info.client_id, scope: info.scope ?? null });
  }

  tokens() {
    return this.#tokens;
  }

  saveTokens(tokens) {
    this.#tokens = tokens;
    out('tokens', { scope: tokens.scope ?? null, refresh_token: Boolean(tokens.refresh_token), claims: claimsOf(tokens.access_token) });
  }

  saveCodeVerifier(verifier) {
    this.#verifier = verifier;
  }

  codeVerifier() {
    return this.#verifier;
  }

  async redirectToAuthorization(url) {
    out('authorize', {
      scope: url.searchParams.get('scope'),
      resource: url.searchParams.get('resource'),
      client_id: url.searchParams.get('client_id'),
      code_challenge_method: url.searchParams.get('code_challenge_method'),
    });
    if (user) url.searchParams.set('login_hint', user);
    this.#code = await authorizeHeadless(url, this.#state);
  }

  // takeCode hands the authorization code to transport.finishAuth, as the
  // application's redirect handler would.
  takeCode() {
    const code = this.#code;
    this.#code = undefined;
    if (!code) throw new Error('no authorization code');
    return code;
  }
}

const provider = new HeadlessProvider();
const client = new Client({ name: 'mcp-authz-e2e-client', version: '1.0.0' });
// Errors the SDK's transport reports beside the request they concern: the
// trail when a request times out, e.g. the SSE stream of a POST's response
// cut before its result ("SSE stream disconnected"), which the SDK resumes
// only from an event id (sdk 1.32.2 dist/esm/client/streamableHttp.js:251,
// canResume = isReconnectable || hasPrimingEvent; a POST's stream is not
// reconnectable) and so leaves to the 60 s request timeout.
client.onerror = (err) => out('transport_error', { message: String(err?.message ?? err) });
const newTransport = () => new StreamableHTTPClientTransport(new URL(mcpUrl), { authProvider: provider, fetch: loggingFetch });

const text = (result) => result.content?.map((c) => c.text).join('') ?? '';

async function main() {
  let transport = newTransport();
  try {
    await client.connect(transport);
  } catch (err) {
    if (!(err instanceof UnauthorizedError)) throw err;
    out('unauthorized', { during: 'connect', message: err.message });
    await transport.finishAuth(provider.takeCode());
    transport = newTransport();
    await client.connect(transport);
  }
  out('connected', { session: transport.sessionId });

  const { tools } = await client.listTools();
  out('tools', { names: tools.map((t) => t.name).sort() });

  const echo = await client.callTool({ name: 'echo', arguments: { text: 'hello through envoy' } });
  out('call', { tool: 'echo', text: text(echo), is_error: Boolean(echo.isError), session: transport.sessionId });

  const who = await client.callTool({ name: 'whoami', arguments: {} });
  out('whoami', JSON.parse(text(who)));

  if (mode === 'stepup') {
    const call = () => client.callTool({ name: 'delete_repo', arguments: { name: 'demo' } });
    let result;
    try {
      result = await call();
    } catch (err) {
      if (!(err instanceof UnauthorizedError)) throw err;
      out('unauthorized', { during: 'tools/call delete_repo', message: err.message });
      await transport.finishAuth(provider.takeCode());
      result = await call();
    }
    out('call', { tool: 'delete_repo', text: text(result), is_error: Boolean(result.isError), session: transport.sessionId });
    const after = await client.callTool({ name: 'whoami', arguments: {} });
    out('whoami', JSON.parse(text(after)));
  }

  const sse = await Promise.race([sseOpened, new Promise((r) => setTimeout(r, 30000, 'none within 30 s'))]);
  out('sse', { status: sse });

  await transport.terminateSession();
  out('terminated', {});
  await client.close();
  out('done', {});
}

try {
  await main();
  callback.close();
  process.exit(0);
} catch (err) {
  out('error', { name: err?.constructor?.name, message: String(err?.message ?? err), code: err?.code });
  process.exit(1);
}
