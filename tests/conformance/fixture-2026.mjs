#!/usr/bin/env node
// Fixture MCP server for the official conformance suite's 2026-07-28
// requirement set (@modelcontextprotocol/conformance 0.2.0-alpha.12,
// `server --requirements 2026-07-28`). The suite's own 2026 everything-server
// is not in its npm package, so this is ours: every tool, prompt and resource
// the set's server scenarios call, served 2026-07-28-only by the official
// TypeScript SDK v2 (@modelcontextprotocol/server, installed pinned by
// scripts/setup into .deps/node-mcp2; the SDK does discover, the per-request
// `_meta` envelope, header checks, `subscriptions/listen`, input rounds and
// caching hints itself — this file only supplies the server's surface).
//
// Usage:
//   node fixture-2026.mjs --http PORT   Streamable HTTP at http://127.0.0.1:PORT/mcp
//                                       (PORT 0: the OS picks; "LISTENING <url>" on stdout).
//                                       Host/Origin must be localhost or 127.0.0.1 (else 403).
//   node fixture-2026.mjs --stdio       The same server over stdio (protocol only on stdout).
// 2025-era requests are refused (-32022 naming 2026-07-28) in both modes.
//
// Tools (each as the set's scenarios describe it):
//   test_simple_text, test_image_content, test_audio_content,
//   test_embedded_resource, test_multiple_content_types, test_error_handling
//                                 fixed content (tools-call-*)
//   test_tool_with_logging        three info logs (sent only at or above the
//                                 request's logLevel), then a result
//   test_tool_with_progress       progress 0/50/100 of 100 on the request's progressToken
//   test_missing_capability       one sampling round: -32021 naming sampling (from the
//                                 SDK) when the request does not declare it
//   test_streaming_elicitation    a progress notification (when asked), then an
//                                 elicitation round; never a request of its own
//   test_logging_tool             one info log (only under a logLevel), then a result
//   test_trigger_tool_change      adds or removes test_dynamic_tool, announced on listens
//   test_trigger_prompt_change    adds or removes test_dynamic_prompt, announced likewise
//   test_input_required_result_{elicitation,sampling,list_roots,request_state,
//     multiple_inputs,multi_round,tampered_state,capabilities}
//                                 input rounds (MRTR, SEP-2322); every requestState is
//                                 HMAC-sealed (createRequestStateCodec), a tampered one
//                                 is refused with -32602 before the handler runs
//   test_custom_header            echoes `region`, an `x-mcp-header` parameter (SEP-2243)
//   json_schema_2020_12_tool      a JSON Schema 2020-12 input schema, kept verbatim
// Prompts: test_simple_prompt, test_prompt_with_arguments (arg1, arg2; completable),
//   test_prompt_with_embedded_resource, test_prompt_with_image,
//   test_input_required_result_prompt (an elicitation round).
// Resources: test://static-text, test://static-binary, test://watched-resource,
//   template test://template/{id}/data; an unknown URI is -32602 (SEP-2164).
// The input-round tools live in fixture-2026-rounds.mjs.

import { randomBytes } from 'node:crypto';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

import { roundTools } from './fixture-2026-rounds.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
const root =
  process.env.MCP_V2_NODE_MODULES ?? path.resolve(here, '../../.deps/node-mcp2/node_modules');
const load = (file) => import(pathToFileURL(path.join(root, file)).href);

const sdk = await load('@modelcontextprotocol/server/dist/index.mjs');
const {
  InMemoryServerEventBus,
  McpServer,
  ResourceTemplate,
  acceptedContent,
  completable,
  createMcpHandler,
  createRequestStateCodec,
  fromJsonSchema,
  hostHeaderValidationResponse,
  inputRequired,
  localhostAllowedHostnames,
  localhostAllowedOrigins,
  originValidationResponse,
} = sdk;
const { z } = await load('zod/index.js');

const log = (...args) => process.stderr.write(`[fixture-2026] ${args.join(' ')}\n`);
const onerror = (e) => log(e?.stack ?? e);
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
  h.writeUInt32LE(16, 16);
  h.writeUInt16LE(1, 20);
  h.writeUInt16LE(1, 22);
  h.writeUInt32LE(8000, 24);
  h.writeUInt32LE(8000, 28);
  h.writeUInt16LE(1, 32);
  h.writeUInt16LE(8, 34);
  h.write('data', 36);
  h.writeUInt32LE(samples.length, 40);
  return Buffer.concat([h, samples]).toString('base64');
}
const WAV_MINIMAL = makeWav();

const NO_ARGS = fromJsonSchema({ type: 'object', properties: {} });
const text = (t) => ({ content: [{ type: 'text', text: t }] });
const form = (message, properties, required) => ({
  message,
  requestedSchema: { type: 'object', properties, required },
});

// An accepted elicitation's string field, or undefined (missing, declined or
// malformed answers are asked again).
function field(responses, key, name) {
  const v = acceptedContent(responses, key)?.[name];
  return typeof v === 'string' ? v : undefined;
}

// Input rounds' requestState: sealed with a key of this process (one process
// serves every round of a flow), verified by the SDK before a handler runs.
const stateCodec = createRequestStateCodec({ key: randomBytes(32) });

// What the trigger tools change (module-wide: the HTTP entry builds a server
// per request, so the lists must outlive one).
const dynamic = { tool: false, prompt: false };
let notifier; // HTTP: the handler's listen notifier (stdio: none)

// ---------------------------------------------------------------- the server

function createServer() {
  const s = new McpServer(
    { name: 'gavel-conformance-2026-fixture', version: '1.0.0' },
    {
      capabilities: {
        tools: { listChanged: true },
        prompts: { listChanged: true },
        resources: { subscribe: false, listChanged: false },
        logging: {},
        completions: {},
      },
      instructions: 'Fixture server for the MCP 2026-07-28 conformance requirement set (gavel tests).',
      requestState: { verify: stateCodec.verify },
    },
  );
  contentTools(s);
  diagnosticTools(s);
  roundTools(s, { sdk, stateCodec, NO_ARGS, text, form, field });
  prompts(s);
  resources(s);
  return s;
}

function contentTools(s) {
  const fixed = (name, description, result) =>
    s.registerTool(name, { description, inputSchema: NO_ARGS }, async () => result);
  fixed('test_simple_text', 'Returns a simple text response', text('This is a simple text response for testing.'));
  fixed('test_image_content', 'Returns image content (1x1 red PNG)', {
    content: [{ type: 'image', data: PNG_1X1_RED, mimeType: 'image/png' }],
  });
  fixed('test_audio_content', 'Returns audio content (minimal WAV)', {
    content: [{ type: 'audio', data: WAV_MINIMAL, mimeType: 'audio/wav' }],
  });
  fixed('test_embedded_resource', 'Returns an embedded resource', {
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
  });
  fixed('test_multiple_content_types', 'Returns text, image and embedded resource content', {
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
  });
  fixed('test_error_handling', 'Always returns a tool error (isError: true)', {
    isError: true,
    content: [{ type: 'text', text: 'This tool intentionally returns an error for testing' }],
  });
  s.registerTool(
    'test_tool_with_logging',
    { description: 'Logs three info messages while running', inputSchema: NO_ARGS },
    async (_args, ctx) => {
      const steps = ['Tool execution started', 'Tool processing data', 'Tool execution completed'];
      for (const [i, step] of steps.entries()) {
        if (i > 0) await sleep(50);
        // Sent only when the request's logLevel admits info (the SDK filters).
        await ctx.mcpReq.log('info', step, 'test_tool_with_logging');
      }
      return text('Tool with logging executed successfully');
    },
  );
  s.registerTool(
    'test_tool_with_progress',
    { description: 'Reports progress 0, 50 and 100 of 100', inputSchema: NO_ARGS },
    async (_args, ctx) => {
      const progressToken = ctx.mcpReq._meta?.progressToken;
      for (const [i, progress] of [0, 50, 100].entries()) {
        if (i > 0) await sleep(50);
        if (progressToken !== undefined) {
          await ctx.mcpReq.notify({
            method: 'notifications/progress',
            params: { progressToken, progress, total: 100, message: `Completed step ${progress} of 100` },
          });
        }
      }
      return text(String(progressToken ?? 'no progress token'));
    },
  );
  s.registerTool(
    'test_custom_header',
    {
      description: 'Echoes its region, which travels in the Mcp-Param-Region header too (SEP-2243)',
      inputSchema: fromJsonSchema({
        type: 'object',
        properties: { region: { type: 'string', 'x-mcp-header': 'Region' } },
        required: ['region'],
      }),
    },
    async ({ region }) => text(`region: ${region}`),
  );
  s.registerTool(
    'json_schema_2020_12_tool',
    {
      description: 'Tool with JSON Schema 2020-12 features',
      inputSchema: fromJsonSchema({
        $schema: 'https://json-schema.org/draft/2020-12/schema',
        type: 'object',
        $defs: {
          address: {
            $anchor: 'addressDef',
            type: 'object',
            properties: { street: { type: 'string' }, city: { type: 'string' } },
          },
        },
        properties: {
          name: { type: 'string' },
          address: { $ref: '#/$defs/address' },
          contactMethod: { type: 'string', enum: ['phone', 'email'] },
          phone: { type: 'string' },
          email: { type: 'string' },
        },
        allOf: [{ anyOf: [{ required: ['phone'] }, { required: ['email'] }] }],
        if: { properties: { contactMethod: { const: 'phone' } }, required: ['contactMethod'] },
        then: { required: ['phone'] },
        else: { required: ['email'] },
        additionalProperties: false,
      }),
    },
    async (args) => text(`JSON Schema 2020-12 tool called with: ${JSON.stringify(args)}`),
  );
}

// The server-stateless scenario's diagnostic tools and list-change hooks.
function diagnosticTools(s) {
  s.registerTool(
    'test_missing_capability',
    { description: 'Needs the client to declare sampling', inputSchema: NO_ARGS },
    async (_args, ctx) => {
      // Asking for sampling is what needs it: the SDK answers a request that
      // did not declare sampling with -32021 naming it (HTTP 400), before
      // anything is asked.
      const answer = ctx.mcpReq.inputResponses?.sample;
      if (answer === undefined) {
        return inputRequired({
          inputRequests: {
            sample: inputRequired.createMessage({
              messages: [{ role: 'user', content: { type: 'text', text: 'Say something' } }],
              maxTokens: 20,
            }),
          },
        });
      }
      return text(`Success: ${answer?.content?.text ?? 'no text'}`);
    },
  );
  s.registerTool(
    'test_streaming_elicitation',
    { description: 'Streams progress, then asks by elicitation (an input round)', inputSchema: NO_ARGS },
    async (_args, ctx) => {
      const progressToken = ctx.mcpReq._meta?.progressToken;
      if (progressToken !== undefined) {
        await ctx.mcpReq.notify({
          method: 'notifications/progress',
          params: { progressToken, progress: 50, total: 100 },
        });
      }
      const answer = acceptedContent(ctx.mcpReq.inputResponses, 'answer');
      if (answer === undefined) {
        return inputRequired({
          inputRequests: {
            answer: inputRequired.elicit(form('Anything to add?', { note: { type: 'string' } }, ['note'])),
          },
        });
      }
      return text(`Streaming complete: ${answer.note}`);
    },
  );
  s.registerTool(
    'test_logging_tool',
    { description: 'Logs once, only under a logLevel', inputSchema: NO_ARGS },
    async (_args, ctx) => {
      await ctx.mcpReq.log('info', 'Diagnostic trace logging activated', 'test_logging_tool');
      return text('Logging evaluated');
    },
  );
  // The hooks change the list for real. Over HTTP every request gets a new
  // server built from `dynamic`, and the handler's notifier tells the open
  // listens; over stdio the connection's one server is changed in place and
  // the SDK announces the change itself.
  const dynamicTool = () =>
    s.registerTool(
      'test_dynamic_tool',
      { description: 'Present while toggled on by test_trigger_tool_change', inputSchema: NO_ARGS },
      async () => text('dynamic tool here'),
    );
  const dynamicPrompt = () =>
    s.registerPrompt(
      'test_dynamic_prompt',
      { description: 'Present while toggled on by test_trigger_prompt_change' },
      async () => ({ messages: [{ role: 'user', content: { type: 'text', text: 'dynamic prompt' } }] }),
    );
  const registered = {
    tool: dynamic.tool ? dynamicTool() : undefined,
    prompt: dynamic.prompt ? dynamicPrompt() : undefined,
  };
  const toggle = (kind, add) => {
    dynamic[kind] = !dynamic[kind];
    if (notifier) {
      kind === 'tool' ? notifier.toolsChanged() : notifier.promptsChanged();
    } else if (dynamic[kind]) {
      registered[kind] = add();
    } else {
      registered[kind]?.remove();
      registered[kind] = undefined;
    }
    return text(`test_dynamic_${kind} ${dynamic[kind] ? 'added' : 'removed'}`);
  };
  s.registerTool(
    'test_trigger_tool_change',
    { description: 'Adds or removes test_dynamic_tool', inputSchema: NO_ARGS },
    async () => toggle('tool', dynamicTool),
  );
  s.registerTool(
    'test_trigger_prompt_change',
    { description: 'Adds or removes test_dynamic_prompt', inputSchema: NO_ARGS },
    async () => toggle('prompt', dynamicPrompt),
  );
}

function prompts(s) {
  const user = (content) => ({ role: 'user', content });
  s.registerPrompt('test_simple_prompt', { description: 'A simple prompt without arguments' }, async () => ({
    messages: [user({ type: 'text', text: 'This is a simple prompt for testing.' })],
  }));
  const words = ['paris', 'park', 'party', 'test', 'testing', 'tested'];
  s.registerPrompt(
    'test_prompt_with_arguments',
    {
      description: 'A prompt with two required arguments',
      argsSchema: z.object({
        arg1: completable(z.string().describe('First test argument'), (v) => words.filter((w) => w.startsWith(v ?? ''))),
        arg2: z.string().describe('Second test argument'),
      }),
    },
    async ({ arg1, arg2 }) => ({
      messages: [user({ type: 'text', text: `Prompt with arguments: arg1='${arg1}', arg2='${arg2}'` })],
    }),
  );
  s.registerPrompt(
    'test_prompt_with_embedded_resource',
    {
      description: 'A prompt that embeds a resource',
      argsSchema: z.object({ resourceUri: z.string().describe('URI of the resource to embed') }),
    },
    async ({ resourceUri }) => ({
      messages: [
        user({
          type: 'resource',
          resource: { uri: resourceUri, mimeType: 'text/plain', text: 'Embedded resource content for testing.' },
        }),
        user({ type: 'text', text: 'Please process the embedded resource above.' }),
      ],
    }),
  );
  s.registerPrompt('test_prompt_with_image', { description: 'A prompt with image content' }, async () => ({
    messages: [
      user({ type: 'image', data: PNG_1X1_RED, mimeType: 'image/png' }),
      user({ type: 'text', text: 'Please analyze the image above.' }),
    ],
  }));
  s.registerPrompt(
    'test_input_required_result_prompt',
    { description: 'Asks which context to use, then builds the prompt' },
    async (ctx) => {
      const context = field(ctx.mcpReq.inputResponses, 'user_context', 'context');
      if (context !== undefined) {
        return { messages: [user({ type: 'text', text: `Prompt with context: ${context}` })] };
      }
      return inputRequired({
        inputRequests: {
          user_context: inputRequired.elicit(
            form('What context should the prompt use?', { context: { type: 'string' } }, ['context']),
          ),
        },
      });
    },
  );
}

function resources(s) {
  const plain = (name, uri, description, mimeType, body) =>
    s.registerResource(name, uri, { description, mimeType }, async () => ({
      contents: [{ uri, mimeType, ...body }],
    }));
  plain('static-text', 'test://static-text', 'A static text resource', 'text/plain', {
    text: 'This is the content of the static text resource.',
  });
  plain('static-binary', 'test://static-binary', 'A static binary resource (1x1 PNG)', 'image/png', {
    blob: PNG_1X1_RED,
  });
  plain('watched-resource', 'test://watched-resource', 'A resource that can be watched', 'text/plain', {
    text: 'Watched resource content',
  });
  s.registerResource(
    'template-data',
    new ResourceTemplate('test://template/{id}/data', { list: undefined }),
    { description: 'Templated data resource; {id} is substituted into the content', mimeType: 'application/json' },
    async (uri, { id }) => ({
      contents: [
        {
          uri: uri.href,
          mimeType: 'application/json',
          text: JSON.stringify({ id, templateTest: true, data: `Data for ID: ${id}` }),
        },
      ],
    }),
  );
}

// ---------------------------------------------------------------- transports

if (process.argv.includes('--stdio')) {
  const { serveStdio } = await load('@modelcontextprotocol/server/dist/stdio.mjs');
  serveStdio(() => createServer(), { legacy: 'reject', onerror });
} else {
  const at = process.argv.indexOf('--http');
  if (at === -1) {
    log('usage: fixture-2026.mjs --http PORT | --stdio');
    process.exit(2);
  }
  await serveHttp(Number(process.argv[at + 1] ?? 0));
}

// Streamable HTTP: the SDK's web-standard handler behind node:http, with the
// Host/Origin checks the SDK leaves to the mount (DNS rebinding: 403).
const MAX_BODY = 4 * 1024 * 1024;

async function serveHttp(port) {
  const nodeHttp = await import('node:http');
  // Content negotiation by the client's first preference: a request whose
  // Accept header names text/event-stream first is answered as a stream
  // (server-sse-multiple-streams asks so, and reports a JSON answer as INFO,
  // a stream as SUCCESS); any other gets the SDK's default, JSON unless the
  // handler sends something before its result. Both share one listen bus.
  const bus = new InMemoryServerEventBus(onerror);
  const factory = () => createServer();
  const json = createMcpHandler(factory, { legacy: 'reject', onerror, bus });
  const sse = createMcpHandler(factory, { legacy: 'reject', onerror, bus, responseMode: 'sse' });
  const prefersSse = (accept) =>
    (accept ?? '').split(',')[0].split(';')[0].trim().toLowerCase() === 'text/event-stream';
  const handlerFor = (r) => (prefersSse(r.headers.get('accept')) ? sse : json);
  notifier = json.notify;
  const srv = nodeHttp.createServer(async (req, res) => {
    const abort = new AbortController();
    res.on('close', () => abort.abort());
    try {
      // Bounded as the SDK's own reads are (its default, 4 MiB).
      const chunks = [];
      let size = 0;
      for await (const c of req) {
        size += c.length;
        if (size > MAX_BODY) {
          res.writeHead(413).end();
          return;
        }
        chunks.push(c);
      }
      const body = Buffer.concat(chunks);
      const headers = new Headers();
      for (const [k, v] of Object.entries(req.headers)) {
        if (v !== undefined) headers.set(k, Array.isArray(v) ? v.join(', ') : v);
      }
      const request = new Request(`http://${req.headers.host ?? '127.0.0.1'}${req.url}`, {
        method: req.method,
        headers,
        body: ['GET', 'HEAD'].includes(req.method) ? undefined : body,
        signal: abort.signal,
      });
      const response =
        hostHeaderValidationResponse(request, localhostAllowedHostnames()) ??
        originValidationResponse(request, localhostAllowedOrigins()) ??
        (await handlerFor(request).fetch(request));
      res.writeHead(response.status, Object.fromEntries(response.headers));
      if (response.body) {
        for await (const chunk of response.body) res.write(chunk);
      }
      res.end();
    } catch (e) {
      if (!abort.signal.aborted) onerror(e);
      if (!res.headersSent) res.writeHead(500);
      res.end();
    }
  });
  srv.listen(port, '127.0.0.1', () => {
    process.stdout.write(`LISTENING http://127.0.0.1:${srv.address().port}/mcp\n`);
  });
}
