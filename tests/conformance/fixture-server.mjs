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
// The surface it serves (tools, resources, prompts, completions) is
// fixture-server-data.mjs; the HTTP transport is fixture-server-http.mjs.
//
// The only dependency is the TypeScript MCP SDK (@modelcontextprotocol/sdk).
// It is looked up as a bare specifier first, then under
// $MCP_FIXTURE_NODE_MODULES, then under <repo>/.deps/node/node_modules.

import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

import {
  COMPLETIONS,
  LOG_LEVELS,
  PNG_1X1_RED,
  PROMPTS,
  RESOURCES,
  RESOURCE_TEMPLATES,
  TOOLS,
  WAV_MINIMAL,
} from './fixture-server-data.mjs';
import { runHttp } from './fixture-server-http.mjs';

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

// ------------------------------------------------------------------ main

const argv = process.argv.slice(2);
const usage = 'usage: fixture-server.mjs --http PORT [--resumable] | --stdio';
try {
  if (argv[0] === '--stdio') {
    await runStdio();
  } else if (argv[0] === '--http' && argv[1] !== undefined) {
    await runHttp(argv[1], argv.includes('--resumable'), { sdk, createServer, log });
  } else {
    log(usage);
    process.exit(2);
  }
} catch (err) {
  log('fatal:', err?.stack ?? err);
  process.exit(1);
}
