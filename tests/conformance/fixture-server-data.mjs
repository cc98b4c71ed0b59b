// The conformance fixture's surface as data (fixture-server.mjs serves it):
// the tools, resources, templates, prompts and completion values the
// 0.1.16 suite's server scenarios list and call, and the fixed media they
// return. Apart from the server because it is what the suite expects to
// find, not how it is served: a scenario that adds a tool changes this file
// (and the server's switch), never the transports.

// 1x1 red pixel PNG.
export const PNG_1X1_RED =
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
export const WAV_MINIMAL = makeWav();

export const LOG_LEVELS = ['debug', 'info', 'notice', 'warning', 'error', 'critical', 'alert', 'emergency'];

const EMPTY_OBJECT_SCHEMA = { type: 'object', properties: {} };

export const TOOLS = [
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

export const RESOURCES = [
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

export const RESOURCE_TEMPLATES = [
  {
    uriTemplate: 'test://template/{id}/data',
    name: 'template-data',
    description: 'Templated data resource; {id} is substituted into the content',
    mimeType: 'application/json',
  },
];

export const PROMPTS = [
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

export const COMPLETIONS = {
  arg1: ['paris', 'park', 'party', 'test', 'testing'],
  arg2: ['hello', 'world'],
  resourceUri: ['test://static-text', 'test://static-binary', 'test://watched-resource'],
  id: ['1', '123', '42'],
};
