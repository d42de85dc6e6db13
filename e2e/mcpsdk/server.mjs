// The MCP server of the MCP SDK end-to-end test: the SDK's McpServer behind
// its StreamableHTTPServerTransport, stateful (Mcp-Session-Id), on
// 127.0.0.1. It has no authorization of its own: it trusts the identity
// headers the front (Envoy + mcp-authz) sets, as a server behind Envoy does.
//
// Tools: echo {text} -> text; delete_repo {name} -> "deleted <name>";
// whoami -> the identity headers of this call as JSON. Resource: docs://readme.
//
// GET /__seen (test only, not routed through the front) lists every request
// that reached /mcp: HTTP method, JSON-RPC method(s), tool name, session,
// the x-mcp-auth-* headers, and whether an Authorization header arrived.
//
// Port from argv[2] (0 = any); prints "READY <url of /mcp>" once serving.
import http from 'node:http';
import { randomUUID } from 'node:crypto';
import { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import { StreamableHTTPServerTransport } from '@modelcontextprotocol/sdk/server/streamableHttp.js';
import { isInitializeRequest } from '@modelcontextprotocol/sdk/types.js';
import { z } from 'zod';

const port = Number(process.argv[2] || 0);
const seen = [];
const sessions = new Map(); // session id -> transport

function identity(headers) {
  return {
    subject: headers['x-mcp-auth-subject'] ?? null,
    client_id: headers['x-mcp-auth-client-id'] ?? null,
    scopes: headers['x-mcp-auth-scopes'] ?? null,
    issuer: headers['x-mcp-auth-issuer'] ?? null,
    has_claims: headers['x-mcp-auth-claims'] !== undefined,
    authorization: headers.authorization !== undefined,
  };
}

function newServer() {
  const server = new McpServer({ name: 'mcp-authz-e2e', version: '1.0.0' });
  server.registerTool(
    'echo',
    { description: 'Returns its input', inputSchema: { text: z.string() } },
    async ({ text }) => ({ content: [{ type: 'text', text }] }),
  );
  server.registerTool(
    'delete_repo',
    { description: 'Deletes a repository (needs repo:admin)', inputSchema: { name: z.string() } },
    async ({ name }) => ({ content: [{ type: 'text', text: `deleted ${name}` }] }),
  );
  server.registerTool(
    'whoami',
    { description: 'The identity this call arrived with' },
    async (extra) => ({
      content: [{ type: 'text', text: JSON.stringify(identity(extra.requestInfo?.headers ?? {})) }],
    }),
  );
  server.registerResource(
    'readme',
    'docs://readme',
    { description: 'A document', mimeType: 'text/plain' },
    async (uri) => ({ contents: [{ uri: uri.href, text: 'hello from the MCP server' }] }),
  );
  return server;
}

function readBody(req) {
  return new Promise((resolve, reject) => {
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => resolve(Buffer.concat(chunks).toString()));
    req.on('error', reject);
  });
}

function jsonRpcError(res, status, code, message) {
  res.writeHead(status, { 'content-type': 'application/json' });
  res.end(JSON.stringify({ jsonrpc: '2.0', error: { code, message }, id: null }));
}

async function handleMcp(req, res) {
  let body;
  if (req.method === 'POST') {
    try {
      body = JSON.parse(await readBody(req));
    } catch {
      jsonRpcError(res, 400, -32700, 'Parse error');
      return;
    }
  }
  const messages = body === undefined ? [] : Array.isArray(body) ? body : [body];
  const sessionId = req.headers['mcp-session-id'];
  // On stderr, which the test prints when it fails: how each exchange
  // ended, to tell an answer never written from one lost on the way.
  const started = Date.now();
  const what = `${req.method} ${messages.map((m) => m.method ?? 'response').join(',')}`;
  let finished = false;
  res.on('finish', () => {
    finished = true;
    console.error(`mcp ${what}: ${res.statusCode} finished after ${Date.now() - started} ms`);
  });
  res.on('close', () => {
    if (!finished) console.error(`mcp ${what}: ${res.statusCode} closed before finishing, after ${Date.now() - started} ms`);
  });
  seen.push({
    http_method: req.method,
    rpc_methods: messages.map((m) => m.method ?? null),
    tool: messages.find((m) => m.method === 'tools/call')?.params?.name ?? null,
    session: sessionId ?? null,
    ...identity(req.headers),
  });

  let transport = sessionId ? sessions.get(sessionId) : undefined;
  if (sessionId && !transport) {
    jsonRpcError(res, 404, -32001, 'Session not found');
    return;
  }
  if (!transport) {
    if (req.method !== 'POST' || !isInitializeRequest(body)) {
      jsonRpcError(res, 400, -32000, 'Bad Request: No valid session ID provided');
      return;
    }
    transport = new StreamableHTTPServerTransport({
      sessionIdGenerator: () => randomUUID(),
      onsessioninitialized: (id) => sessions.set(id, transport),
    });
    transport.onclose = () => {
      if (transport.sessionId) sessions.delete(transport.sessionId);
    };
    await newServer().connect(transport);
  }
  await transport.handleRequest(req, res, body);
}

const httpServer = http.createServer((req, res) => {
  const url = new URL(req.url, 'http://127.0.0.1');
  if (url.pathname === '/__seen') {
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify(seen));
    return;
  }
  if (url.pathname !== '/mcp') {
    res.writeHead(404).end();
    return;
  }
  handleMcp(req, res).catch((err) => {
    console.error('mcp', err);
    if (!res.headersSent) jsonRpcError(res, 500, -32603, 'Internal server error');
    else res.end();
  });
});

httpServer.listen(port, '127.0.0.1', () => {
  console.log(`READY http://127.0.0.1:${httpServer.address().port}/mcp`);
});

for (const sig of ['SIGINT', 'SIGTERM']) {
  process.on(sig, () => {
    httpServer.closeAllConnections();
    httpServer.close(() => process.exit(0));
  });
}
