#!/usr/bin/env node
// Fixture MCP server for the official MCP conformance suite
// (@modelcontextprotocol/conformance, "server" scenarios).
//
// Usage:
//   node fixture-server.mjs --http PORT [--resumable]
//       Streamable HTTP at http://127.0.0.1:PORT/mcp (stateful sessions, one
//       Server instance per session, DNS-rebinding protection on).  PORT may be
//       0: the chosen port is printed on stdout as "LISTENING <url>".
//       --resumable adds an in-memory SSE event store (priming events, retry,
//       Last-Event-ID replay); off by default.
//   node fixture-server.mjs --stdio
//       Same server over stdio (newline-delimited JSON-RPC).  Only protocol
//       messages go to stdout; diagnostics go to stderr.
//
// The only dependency is the TypeScript MCP SDK (@modelcontextprotocol/sdk).
// It is looked up as a bare specifier first, then under
// $MCP_FIXTURE_NODE_MODULES, then under <repo>/.deps/node/node_modules.

import { randomUUID } from 'node:crypto';
import http from 'node:http';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const nodeModulesRoots = [
  process.env.MCP_FIXTURE_NODE_MODULES,
  path.resolve(here, '../../.deps/node/node_modules'),
].filter(Boolean);

async function sdk(sub) {
  try {
    return await import(`@modelcontextprotocol/sdk/${sub}`);
  } catch (err) {
    if (err?.code !== 'ERR_MODULE_NOT_FOUND') throw err;
  }
  let lastErr;
  for (const root of nodeModulesRoots) {
    const file = path.join(root, '@modelcontextprotocol/sdk/dist/esm', sub);
    try {
      return await import(pathToFileURL(file).href);
    } catch (err) {
      if (err?.code !== 'ERR_MODULE_NOT_FOUND') throw err;
      lastErr = err;
    }
  }
  throw lastErr;
}

const { Server } = await sdk('server/index.js');
const types = await sdk('types.js');
const {
  CallToolRequestSchema,
  CompleteRequestSchema,
  CreateMessageResultSchema,
  ElicitResultSchema,
  ErrorCode,
  GetPromptRequestSchema,
  ListPromptsRequestSchema,
  ListResourceTemplatesRequestSchema,
  ListResourcesRequestSchema,
  ListToolsRequestSchema,
  McpError,
  ReadResourceRequestSchema,
  SubscribeRequestSchema,
  UnsubscribeRequestSchema,
} = types;

const log = (...args) => process.stderr.write(`[fixture-server] ${args.join(' ')}\n`);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// ---------------------------------------------------------------- test data

// 1x1 red pixel PNG.
const PNG_1X1_RED =
  'iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8DwHwAFBQIAX8jx0gAAAABJRU5ErkJggg==';

// Minimal valid WAV: PCM mono 8 kHz 8-bit, 8 samples of silence.
function makeWav() {
  const samples = Buffer.alloc(8, 0x80);
  const h = Buffer.alloc(44);
  h.write('RIFF', 0);
  h.writeUInt32LE(36 + samples.length, 4);
  h.write('WAVE', 8);
  h.write('fmt ', 12);
  h.writeUInt32LE(16, 16); // fmt chunk size
  h.writeUInt16LE(1, 20); // PCM
  h.writeUInt16LE(1, 22); // channels
  h.writeUInt32LE(8000, 24); // sample rate
  h.writeUInt32LE(8000, 28); // byte rate
  h.writeUInt16LE(1, 32); // block align
  h.writeUInt16LE(8, 34); // bits per sample
  h.write('data', 36);
  h.writeUInt32LE(samples.length, 40);
  return Buffer.concat([h, samples]).toString('base64');
}
const WAV_MINIMAL = makeWav();

const LOG_LEVELS = ['debug', 'info', 'notice', 'warning', 'error', 'critical', 'alert', 'emergency'];

const EMPTY_OBJECT_SCHEMA = { type: 'object', properties: {} };

const TOOLS = [
  {
    name: 'test_simple_text',
    description: 'Returns a simple text response',
    inputSchema: EMPTY_OBJECT_SCHEMA,
  },
  {
    name: 'test_image_content',
    description: 'Returns image content (1x1 red PNG)',
    inputSchema: EMPTY_OBJECT_SCHEMA,
  },
  {
    name: 'test_audio_content',
    description: 'Returns audio content (minimal WAV)',
    inputSchema: EMPTY_OBJECT_SCHEMA,
  },
  {
    name: 'test_embedded_resource',
    description: 'Returns an embedded resource',
    inputSchema: EMPTY_OBJECT_SCHEMA,
  },
  {
    name: 'test_multiple_content_types',
    description: 'Returns text, image and embedded resource content',
    inputSchema: EMPTY_OBJECT_SCHEMA,
  },
  {
    name: 'test_tool_with_logging',
    description: 'Sends three info log notifications while running',
    inputSchema: EMPTY_OBJECT_SCHEMA,
  },
  {
    name: 'test_tool_with_progress',
    description: 'Sends progress notifications 0/100, 50/100, 100/100',
    inputSchema: EMPTY_OBJECT_SCHEMA,
  },
  {
    name: 'test_error_handling',
    description: 'Always returns a tool error (isError: true)',
    inputSchema: EMPTY_OBJECT_SCHEMA,
  },
  {
    name: 'test_sampling',
    description: 'Requests LLM sampling from the client',
    inputSchema: {
      type: 'object',
      properties: { prompt: { type: 'string', description: 'The prompt to send to the LLM' } },
      required: ['prompt'],
    },
  },
  {
    name: 'test_elicitation',
    description: 'Requests user input (elicitation) from the client',
    inputSchema: {
      type: 'object',
      properties: { message: { type: 'string', description: 'The message to show the user' } },
      required: ['message'],
    },
  },
  {
    name: 'test_elicitation_sep1034_defaults',
    description: 'Elicitation with default values for all primitive types (SEP-1034)',
    inputSchema: EMPTY_OBJECT_SCHEMA,
  },
  {
    name: 'test_elicitation_sep1330_enums',
    description: 'Elicitation with all enum schema variants (SEP-1330)',
    inputSchema: EMPTY_OBJECT_SCHEMA,
  },
  {
    name: 'json_schema_2020_12_tool',
    description: 'Tool with JSON Schema 2020-12 features',
    inputSchema: {
      $schema: 'https://json-schema.org/draft/2020-12/schema',
      type: 'object',
      $defs: {
        address: {
          type: 'object',
          properties: { street: { type: 'string' }, city: { type: 'string' } },
        },
      },
      properties: {
        name: { type: 'string' },
        address: { $ref: '#/$defs/address' },
      },
      additionalProperties: false,
    },
  },
  {
    name: 'test_reconnection',
    description:
      'Closes its SSE stream mid-call (when the transport is resumable) and then returns a result (SEP-1699)',
    inputSchema: EMPTY_OBJECT_SCHEMA,
  },
];

const RESOURCES = [
  {
    uri: 'test://static-text',
    name: 'static-text',
    description: 'A static text resource',
    mimeType: 'text/plain',
  },
  {
    uri: 'test://static-binary',
    name: 'static-binary',
    description: 'A static binary resource (1x1 PNG)',
    mimeType: 'image/png',
  },
  {
    uri: 'test://watched-resource',
    name: 'watched-resource',
    description: 'A resource that can be subscribed to',
    mimeType: 'text/plain',
  },
];

const RESOURCE_TEMPLATES = [
  {
    uriTemplate: 'test://template/{id}/data',
    name: 'template-data',
    description: 'Templated data resource; {id} is substituted into the content',
    mimeType: 'application/json',
  },
];

const PROMPTS = [
  { name: 'test_simple_prompt', description: 'A simple prompt without arguments' },
  {
    name: 'test_prompt_with_arguments',
    description: 'A prompt with two required arguments',
    arguments: [
      { name: 'arg1', description: 'First test argument', required: true },
      { name: 'arg2', description: 'Second test argument', required: true },
    ],
  },
  {
    name: 'test_prompt_with_embedded_resource',
    description: 'A prompt that embeds a resource',
    arguments: [{ name: 'resourceUri', description: 'URI of the resource to embed', required: true }],
  },
  { name: 'test_prompt_with_image', description: 'A prompt with image content' },
];

const COMPLETIONS = {
  arg1: ['paris', 'park', 'party', 'test', 'testing'],
  arg2: ['hello', 'world'],
  resourceUri: ['test://static-text', 'test://static-binary', 'test://watched-resource'],
  id: ['1', '123', '42'],
};

// --------------------------------------------------------------- the server

function createServer() {
  const server = new Server(
    { name: 'gavel-conformance-fixture', version: '1.0.0' },
    {
      capabilities: {
        tools: {},
        resources: { subscribe: true, listChanged: false },
        prompts: { listChanged: false },
        logging: {},
        completions: {},
      },
      instructions: 'Fixture server for the MCP conformance suite (gavel tests).',
    },
  );

  const subscriptions = new Set();
  let logLevel; // unset: send everything

  // The SDK's built-in logging/setLevel handler keys the level by session id;
  // keep our own copy too (the tool sends via extra.sendNotification so the
  // messages travel on the tool call's own SSE stream).
  server.setRequestHandler(types.SetLevelRequestSchema, async (request) => {
    const { level } = request.params;
    if (!LOG_LEVELS.includes(level)) {
      throw new McpError(ErrorCode.InvalidParams, `Unknown log level: ${level}`);
    }
    logLevel = level;
    return {};
  });
  const logEnabled = (level) =>
    logLevel === undefined || LOG_LEVELS.indexOf(level) >= LOG_LEVELS.indexOf(logLevel);

  // ---- tools
  server.setRequestHandler(ListToolsRequestSchema, async () => ({ tools: TOOLS }));

  server.setRequestHandler(CallToolRequestSchema, async (request, extra) => {
    const { name } = request.params;
    const args = request.params.arguments ?? {};
    switch (name) {
      case 'test_simple_text':
        return { content: [{ type: 'text', text: 'This is a simple text response for testing.' }] };

      case 'test_image_content':
        return { content: [{ type: 'image', data: PNG_1X1_RED, mimeType: 'image/png' }] };

      case 'test_audio_content':
        return { content: [{ type: 'audio', data: WAV_MINIMAL, mimeType: 'audio/wav' }] };

      case 'test_embedded_resource':
        return {
          content: [
            {
              type: 'resource',
              resource: {
                uri: 'test://embedded-resource',
                mimeType: 'text/plain',
                text: 'This is an embedded resource content.',
              },
            },
          ],
        };

      case 'test_multiple_content_types':
        return {
          content: [
            { type: 'text', text: 'Multiple content types test:' },
            { type: 'image', data: PNG_1X1_RED, mimeType: 'image/png' },
            {
              type: 'resource',
              resource: {
                uri: 'test://mixed-content-resource',
                mimeType: 'application/json',
                text: JSON.stringify({ test: 'data', value: 123 }),
              },
            },
          ],
        };

      case 'test_tool_with_logging': {
        const messages = ['Tool execution started', 'Tool processing data', 'Tool execution completed'];
        for (let i = 0; i < messages.length; i++) {
          if (i > 0) await sleep(50);
          if (logEnabled('info')) {
            await extra.sendNotification({
              method: 'notifications/message',
              params: { level: 'info', logger: 'test_tool_with_logging', data: messages[i] },
            });
          }
        }
        return { content: [{ type: 'text', text: 'Tool with logging executed successfully' }] };
      }

      case 'test_tool_with_progress': {
        const progressToken = request.params._meta?.progressToken;
        const steps = [0, 50, 100];
        for (let i = 0; i < steps.length; i++) {
          if (i > 0) await sleep(50);
          if (progressToken !== undefined) {
            await extra.sendNotification({
              method: 'notifications/progress',
              params: { progressToken, progress: steps[i], total: 100, message: `Step ${i + 1} of 3` },
            });
          }
        }
        return { content: [{ type: 'text', text: 'Tool with progress executed successfully' }] };
      }

      case 'test_error_handling':
        return {
          isError: true,
          content: [{ type: 'text', text: 'This tool intentionally returns an error for testing' }],
        };

      case 'test_sampling': {
        if (!server.getClientCapabilities()?.sampling) {
          return {
            isError: true,
            content: [{ type: 'text', text: 'Client does not support sampling' }],
          };
        }
        const result = await extra.sendRequest(
          {
            method: 'sampling/createMessage',
            params: {
              messages: [
                { role: 'user', content: { type: 'text', text: String(args.prompt ?? '') } },
              ],
              maxTokens: 100,
            },
          },
          CreateMessageResultSchema,
        );
        const text =
          result.content?.type === 'text' ? result.content.text : JSON.stringify(result.content);
        return { content: [{ type: 'text', text: `LLM response: ${text}` }] };
      }

      case 'test_elicitation': {
        if (!server.getClientCapabilities()?.elicitation) {
          return {
            isError: true,
            content: [{ type: 'text', text: 'Client does not support elicitation' }],
          };
        }
        const result = await extra.sendRequest(
          {
            method: 'elicitation/create',
            params: {
              message: String(args.message ?? ''),
              requestedSchema: {
                type: 'object',
                properties: {
                  username: { type: 'string', description: "User's response" },
                  email: { type: 'string', description: "User's email address" },
                },
                required: ['username', 'email'],
              },
            },
          },
          ElicitResultSchema,
        );
        return {
          content: [
            {
              type: 'text',
              text: `User response: action=${result.action}, content=${JSON.stringify(result.content ?? {})}`,
            },
          ],
        };
      }

      case 'test_elicitation_sep1034_defaults': {
        const result = await extra.sendRequest(
          {
            method: 'elicitation/create',
            params: {
              message: 'Please review and update the form fields with defaults',
              requestedSchema: {
                type: 'object',
                properties: {
                  name: { type: 'string', description: 'User name', default: 'John Doe' },
                  age: { type: 'integer', description: 'User age', default: 30 },
                  score: { type: 'number', description: 'User score', default: 95.5 },
                  status: {
                    type: 'string',
                    description: 'User status',
                    enum: ['active', 'inactive', 'pending'],
                    default: 'active',
                  },
                  verified: { type: 'boolean', description: 'Verification status', default: true },
                },
                required: [],
              },
            },
          },
          ElicitResultSchema,
        );
        return {
          content: [
            {
              type: 'text',
              text: `Elicitation completed: action=${result.action}, content=${JSON.stringify(result.content ?? {})}`,
            },
          ],
        };
      }

      case 'test_elicitation_sep1330_enums': {
        const result = await extra.sendRequest(
          {
            method: 'elicitation/create',
            params: {
              message: 'Please select options from the enum fields',
              requestedSchema: {
                type: 'object',
                properties: {
                  untitledSingle: {
                    type: 'string',
                    description: 'Untitled single-select enum',
                    enum: ['option1', 'option2', 'option3'],
                  },
                  titledSingle: {
                    type: 'string',
                    description: 'Titled single-select enum',
                    oneOf: [
                      { const: 'value1', title: 'First Option' },
                      { const: 'value2', title: 'Second Option' },
                      { const: 'value3', title: 'Third Option' },
                    ],
                  },
                  legacyEnum: {
                    type: 'string',
                    description: 'Legacy titled enum (deprecated enumNames)',
                    enum: ['opt1', 'opt2', 'opt3'],
                    enumNames: ['Option One', 'Option Two', 'Option Three'],
                  },
                  untitledMulti: {
                    type: 'array',
                    description: 'Untitled multi-select enum',
                    items: { type: 'string', enum: ['option1', 'option2', 'option3'] },
                  },
                  titledMulti: {
                    type: 'array',
                    description: 'Titled multi-select enum',
                    items: {
                      anyOf: [
                        { const: 'value1', title: 'First Choice' },
                        { const: 'value2', title: 'Second Choice' },
                        { const: 'value3', title: 'Third Choice' },
                      ],
                    },
                  },
                },
                required: [],
              },
            },
          },
          ElicitResultSchema,
        );
        return {
          content: [
            {
              type: 'text',
              text: `Elicitation completed: action=${result.action}, content=${JSON.stringify(result.content ?? {})}`,
            },
          ],
        };
      }

      case 'json_schema_2020_12_tool':
        return { content: [{ type: 'text', text: `Received arguments: ${JSON.stringify(args)}` }] };

      case 'test_reconnection': {
        // Only available when the HTTP transport has an event store and the
        // client negotiated >= 2025-11-25; otherwise this is a plain delay.
        await sleep(100);
        if (typeof extra.closeSSEStream === 'function') extra.closeSSEStream();
        await sleep(200);
        return { content: [{ type: 'text', text: 'Reconnection test completed successfully' }] };
      }

      default:
        throw new McpError(ErrorCode.InvalidParams, `Unknown tool: ${name}`);
    }
  });

  // ---- resources
  server.setRequestHandler(ListResourcesRequestSchema, async () => ({ resources: RESOURCES }));
  server.setRequestHandler(ListResourceTemplatesRequestSchema, async () => ({
    resourceTemplates: RESOURCE_TEMPLATES,
  }));

  server.setRequestHandler(ReadResourceRequestSchema, async (request) => {
    const { uri } = request.params;
    switch (uri) {
      case 'test://static-text':
        return {
          contents: [
            { uri, mimeType: 'text/plain', text: 'This is the content of the static text resource.' },
          ],
        };
      case 'test://static-binary':
        return { contents: [{ uri, mimeType: 'image/png', blob: PNG_1X1_RED }] };
      case 'test://watched-resource':
        return {
          contents: [{ uri, mimeType: 'text/plain', text: 'This is the content of the watched resource.' }],
        };
    }
    const m = /^test:\/\/template\/([^/]+)\/data$/.exec(uri);
    if (m) {
      const id = decodeURIComponent(m[1]);
      return {
        contents: [
          {
            uri,
            mimeType: 'application/json',
            text: JSON.stringify({ id, templateTest: true, data: `Data for ID: ${id}` }),
          },
        ],
      };
    }
    // -32002: "Resource not found" per the MCP spec.
    throw new McpError(-32002, `Resource not found: ${uri}`, { uri });
  });

  server.setRequestHandler(SubscribeRequestSchema, async (request) => {
    subscriptions.add(request.params.uri);
    return {};
  });
  server.setRequestHandler(UnsubscribeRequestSchema, async (request) => {
    subscriptions.delete(request.params.uri);
    return {};
  });

  // ---- prompts
  server.setRequestHandler(ListPromptsRequestSchema, async () => ({ prompts: PROMPTS }));

  server.setRequestHandler(GetPromptRequestSchema, async (request) => {
    const { name } = request.params;
    const args = request.params.arguments ?? {};
    switch (name) {
      case 'test_simple_prompt':
        return {
          messages: [
            { role: 'user', content: { type: 'text', text: 'This is a simple prompt for testing.' } },
          ],
        };
      case 'test_prompt_with_arguments': {
        for (const a of ['arg1', 'arg2']) {
          if (args[a] === undefined) {
            throw new McpError(ErrorCode.InvalidParams, `Missing required argument: ${a}`);
          }
        }
        return {
          messages: [
            {
              role: 'user',
              content: {
                type: 'text',
                text: `Prompt with arguments: arg1='${args.arg1}', arg2='${args.arg2}'`,
              },
            },
          ],
        };
      }
      case 'test_prompt_with_embedded_resource': {
        if (args.resourceUri === undefined) {
          throw new McpError(ErrorCode.InvalidParams, 'Missing required argument: resourceUri');
        }
        return {
          messages: [
            {
              role: 'user',
              content: {
                type: 'resource',
                resource: {
                  uri: args.resourceUri,
                  mimeType: 'text/plain',
                  text: 'Embedded resource content for testing.',
                },
              },
            },
            {
              role: 'user',
              content: { type: 'text', text: 'Please process the embedded resource above.' },
            },
          ],
        };
      }
      case 'test_prompt_with_image':
        return {
          messages: [
            { role: 'user', content: { type: 'image', data: PNG_1X1_RED, mimeType: 'image/png' } },
            { role: 'user', content: { type: 'text', text: 'Please analyze the image above.' } },
          ],
        };
      default:
        throw new McpError(ErrorCode.InvalidParams, `Unknown prompt: ${name}`);
    }
  });

  // ---- completion
  server.setRequestHandler(CompleteRequestSchema, async (request) => {
    const { argument } = request.params;
    const candidates = COMPLETIONS[argument?.name] ?? [];
    const prefix = String(argument?.value ?? '');
    const values = candidates.filter((v) => v.startsWith(prefix));
    return { completion: { values, total: values.length, hasMore: false } };
  });

  return server;
}

// ----------------------------------------------------------------- stdio

async function runStdio() {
  const { StdioServerTransport } = await sdk('server/stdio.js');
  const server = createServer();
  const transport = new StdioServerTransport();
  server.onerror = (err) => log('server error:', err?.stack ?? err);
  // On stdin EOF, let in-flight requests finish; the process then exits
  // naturally once nothing else is pending.
  process.stdin.on('end', () => log('stdin closed'));
  await server.connect(transport);
  log('serving MCP over stdio');
}

// ------------------------------------------------------------------ http

async function runHttp(portArg, resumable) {
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

// ------------------------------------------------------------------ main

const argv = process.argv.slice(2);
const usage = 'usage: fixture-server.mjs --http PORT [--resumable] | --stdio';
try {
  if (argv[0] === '--stdio') {
    await runStdio();
  } else if (argv[0] === '--http' && argv[1] !== undefined) {
    await runHttp(argv[1], argv.includes('--resumable'));
  } else {
    log(usage);
    process.exit(2);
  }
} catch (err) {
  log('fatal:', err?.stack ?? err);
  process.exit(1);
}
