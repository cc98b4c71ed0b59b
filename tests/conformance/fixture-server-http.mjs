// The conformance fixture over Streamable HTTP (fixture-server.mjs --http):
// stateful sessions, one Server per session (`createServer`), DNS-rebinding
// protection (Host/Origin checked before any routing), optional SSE
// resumability. Apart from the server because it is transport only — the
// session table, routing by method and session id, the listening port —
// and stdio needs none of it.

import { randomUUID } from 'node:crypto';
import http from 'node:http';

export async function runHttp(portArg, resumable, { sdk, createServer, log }) {
  const { StreamableHTTPServerTransport } = await sdk('server/streamableHttp.js');
  const EventStore = resumable
    ? (await sdk('examples/shared/inMemoryEventStore.js')).InMemoryEventStore
    : undefined;

  const sessions = new Map(); // session id -> { transport, server }
  let allowedHosts = [];
  let allowedOrigins = [];

  const sendJsonError = (res, status, code, message) => {
    if (res.headersSent) return res.end();
    res.writeHead(status, { 'Content-Type': 'application/json' });
    res.end(JSON.stringify({ jsonrpc: '2.0', error: { code, message }, id: null }));
  };

  const readBody = (req) =>
    new Promise((resolve, reject) => {
      const chunks = [];
      req.on('data', (c) => chunks.push(c));
      req.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
      req.on('error', reject);
    });

  const isInitialize = (body) =>
    Array.isArray(body)
      ? body.some((m) => m?.method === 'initialize')
      : body?.method === 'initialize';

  const httpServer = http.createServer(async (req, res) => {
    try {
      const url = new URL(req.url ?? '/', 'http://placeholder');
      if (url.pathname !== '/mcp') {
        return sendJsonError(res, 404, -32000, 'Not found');
      }

      // DNS-rebinding protection, applied before any routing (the transport
      // checks again for the requests it sees).
      const host = req.headers.host;
      if (!host || !allowedHosts.includes(host)) {
        log(`rejecting request with Host ${JSON.stringify(host)}`);
        return sendJsonError(res, 403, -32000, `Invalid Host header: ${host}`);
      }
      const origin = req.headers.origin;
      if (origin !== undefined && !allowedOrigins.includes(origin)) {
        log(`rejecting request with Origin ${JSON.stringify(origin)}`);
        return sendJsonError(res, 403, -32000, `Invalid Origin header: ${origin}`);
      }

      const sessionId = req.headers['mcp-session-id'];
      const session = typeof sessionId === 'string' ? sessions.get(sessionId) : undefined;

      if (req.method === 'POST') {
        let body;
        try {
          body = JSON.parse(await readBody(req));
        } catch {
          return sendJsonError(res, 400, -32700, 'Parse error');
        }
        if (session) {
          return await session.transport.handleRequest(req, res, body);
        }
        if (sessionId !== undefined) {
          return sendJsonError(res, 404, -32001, 'Session not found');
        }
        if (!isInitialize(body)) {
          return sendJsonError(res, 400, -32000, 'Bad Request: No valid session ID provided');
        }
        const server = createServer();
        const transport = new StreamableHTTPServerTransport({
          sessionIdGenerator: () => randomUUID(),
          enableDnsRebindingProtection: true,
          allowedHosts,
          allowedOrigins,
          ...(EventStore ? { eventStore: new EventStore(), retryInterval: 500 } : {}),
          onsessioninitialized: (id) => {
            sessions.set(id, { transport, server });
            log(`session ${id} initialized (${sessions.size} open)`);
          },
        });
        transport.onclose = () => {
          const id = transport.sessionId;
          if (id && sessions.delete(id)) log(`session ${id} closed (${sessions.size} open)`);
        };
        server.onerror = (err) => log('server error:', err?.message ?? err);
        await server.connect(transport);
        return await transport.handleRequest(req, res, body);
      }

      if (req.method === 'GET' || req.method === 'DELETE') {
        if (!session) {
          return sessionId === undefined
            ? sendJsonError(res, 400, -32000, 'Bad Request: No valid session ID provided')
            : sendJsonError(res, 404, -32001, 'Session not found');
        }
        return await session.transport.handleRequest(req, res);
      }

      res.setHeader('Allow', 'GET, POST, DELETE');
      return sendJsonError(res, 405, -32000, 'Method not allowed');
    } catch (err) {
      log('request error:', err?.stack ?? err);
      sendJsonError(res, 500, -32603, 'Internal server error');
    }
  });

  const port = Number(portArg);
  if (!Number.isInteger(port) || port < 0 || port > 65535) {
    throw new Error(`invalid port: ${portArg}`);
  }
  await new Promise((resolve, reject) => {
    httpServer.once('error', reject);
    httpServer.listen(port, '127.0.0.1', resolve);
  });
  const actualPort = httpServer.address().port;
  allowedHosts.push(`127.0.0.1:${actualPort}`, `localhost:${actualPort}`);
  allowedOrigins.push(`http://127.0.0.1:${actualPort}`, `http://localhost:${actualPort}`);
  const url = `http://127.0.0.1:${actualPort}/mcp`;
  log(`listening on ${url}${resumable ? ' (resumable)' : ''}`);
  process.stdout.write(`LISTENING ${url}\n`);

  const shutdown = async () => {
    for (const { transport, server } of sessions.values()) {
      await transport.close().catch(() => {});
      await server.close().catch(() => {});
    }
    httpServer.close();
    process.exit(0);
  };
  process.on('SIGINT', shutdown);
  process.on('SIGTERM', shutdown);
}
