// The 2026 fixture's input-round tools (fixture-2026.mjs registers them):
// the input-required-result-* scenarios of SEP-2322 (multi-round-trip
// requests) — elicitation, sampling, roots, several at once, several
// rounds, requestState kept and sealed, and only what the client declared.
// Apart from the rest of the surface because these are the one part with
// logic of their own — each tool reads the round's answers and state and
// either finishes or asks again — and they change with the MRTR scenarios,
// not with the content ones. The SDK, the state codec and the shared
// helpers come from the main file (one codec key per process).

function samplingText(responses, key) {
  const r = responses?.[key];
  return r && typeof r === 'object' && r.content?.type === 'text' ? r.content.text : undefined;
}
function rootsOf(responses, key) {
  const r = responses?.[key];
  return r && typeof r === 'object' && Array.isArray(r.roots) ? r.roots : undefined;
}
// The verified requestState payload (the SDK ran the codec before the handler).
const stateOf = (ctx) => {
  const st = ctx.mcpReq.requestState();
  return st && typeof st === 'object' ? st : undefined;
};

// The input-required-result-* scenarios' tools (SEP-2322 multi-round-trip).
export function roundTools(s, { sdk, stateCodec, NO_ARGS, text, form, field }) {
  const { acceptedContent, inputRequired } = sdk;
  const NAME_FORM = form('What is your name?', { name: { type: 'string' } }, ['name']);
  const CONFIRM_FORM = form('Please confirm', { ok: { type: 'boolean' } }, ['ok']);
  const tool = (name, description, handler) =>
    s.registerTool(name, { description, inputSchema: NO_ARGS }, async (_args, ctx) => handler(ctx));

  tool('test_input_required_result_elicitation', 'Asks the user for their name', async (ctx) => {
    const name = field(ctx.mcpReq.inputResponses, 'user_name', 'name');
    if (name !== undefined) return text(`Hello, ${name}!`);
    return inputRequired({ inputRequests: { user_name: inputRequired.elicit(NAME_FORM) } });
  });
  tool('test_input_required_result_sampling', 'Asks the client model a question', async (ctx) => {
    const said = samplingText(ctx.mcpReq.inputResponses, 'capital_question');
    if (said !== undefined) return text(`Sampling result: ${said}`);
    return inputRequired({
      inputRequests: {
        capital_question: inputRequired.createMessage({
          messages: [{ role: 'user', content: { type: 'text', text: 'What is the capital of France?' } }],
          maxTokens: 100,
        }),
      },
    });
  });
  tool('test_input_required_result_list_roots', "Asks for the client's roots", async (ctx) => {
    const roots = rootsOf(ctx.mcpReq.inputResponses, 'client_roots');
    if (roots !== undefined) {
      return text(`Found ${roots.length} root(s): ${roots.map((r) => r?.uri).join(', ')}`);
    }
    return inputRequired({ inputRequests: { client_roots: inputRequired.listRoots() } });
  });
  tool('test_input_required_result_request_state', 'Asks to confirm, keeping state', async (ctx) => {
    const state = stateOf(ctx);
    const ok = acceptedContent(ctx.mcpReq.inputResponses, 'confirm')?.ok;
    if (state?.kind === 'request-state' && typeof ok === 'boolean') {
      return text(`state-ok: requestState validated (confirmed: ${ok})`);
    }
    return inputRequired({
      inputRequests: { confirm: inputRequired.elicit(CONFIRM_FORM) },
      requestState: await stateCodec.mint({ kind: 'request-state' }),
    });
  });
  tool('test_input_required_result_multiple_inputs', 'Asks for a name, a greeting and the roots at once', async (ctx) => {
    const r = ctx.mcpReq.inputResponses;
    const name = field(r, 'user_name', 'name');
    const greeting = samplingText(r, 'greeting');
    const roots = rootsOf(r, 'client_roots');
    if (stateOf(ctx)?.kind === 'multiple-inputs' && name && greeting !== undefined && roots) {
      return text(`Name: ${name}; Greeting: ${greeting}; Roots: ${roots.length}`);
    }
    return inputRequired({
      inputRequests: {
        user_name: inputRequired.elicit(NAME_FORM),
        greeting: inputRequired.createMessage({
          messages: [{ role: 'user', content: { type: 'text', text: 'Generate a greeting' } }],
          maxTokens: 50,
        }),
        client_roots: inputRequired.listRoots(),
      },
      requestState: await stateCodec.mint({ kind: 'multiple-inputs' }),
    });
  });
  tool('test_input_required_result_multi_round', 'Asks for a name, then a colour', async (ctx) => {
    const state = stateOf(ctx);
    const r = ctx.mcpReq.inputResponses;
    const name = state?.round === 1 ? field(r, 'step1', 'name') : undefined;
    if (name !== undefined) {
      return inputRequired({
        inputRequests: {
          step2: inputRequired.elicit(
            form('Step 2: What is your favorite color?', { color: { type: 'string' } }, ['color']),
          ),
        },
        requestState: await stateCodec.mint({ round: 2, name }),
      });
    }
    const color = state?.round === 2 ? field(r, 'step2', 'color') : undefined;
    if (color !== undefined) return text(`Multi-round complete for ${state.name} who likes ${color}`);
    return inputRequired({
      inputRequests: {
        step1: inputRequired.elicit(form('Step 1: What is your name?', { name: { type: 'string' } }, ['name'])),
      },
      requestState: await stateCodec.mint({ round: 1 }),
    });
  });
  tool('test_input_required_result_tampered_state', 'Asks to confirm; its state is sealed', async (ctx) => {
    if (stateOf(ctx)?.kind === 'tamper-test' && acceptedContent(ctx.mcpReq.inputResponses, 'confirm')) {
      return text('integrity-ok: state verified');
    }
    return inputRequired({
      inputRequests: { confirm: inputRequired.elicit(CONFIRM_FORM) },
      requestState: await stateCodec.mint({ kind: 'tamper-test' }),
    });
  });
  tool(
    'test_input_required_result_capabilities',
    'Asks only for what the client declared it can answer',
    async (ctx) => {
      const r = ctx.mcpReq.inputResponses;
      if (r && Object.keys(r).length > 0) {
        return text(`capabilities-ok: received ${Object.keys(r).sort().join(',')}`);
      }
      const caps = ctx.mcpReq.envelope?.['io.modelcontextprotocol/clientCapabilities'] ?? {};
      const inputRequests = {};
      if (caps.elicitation) {
        inputRequests.elicit_input = inputRequired.elicit(form('Elicitation input', { value: { type: 'string' } }, ['value']));
      }
      if (caps.sampling) {
        inputRequests.sample_input = inputRequired.createMessage({
          messages: [{ role: 'user', content: { type: 'text', text: 'Sample request' } }],
          maxTokens: 50,
        });
      }
      if (caps.roots) inputRequests.roots_input = inputRequired.listRoots();
      if (Object.keys(inputRequests).length === 0) return text('No supported capabilities declared');
      return inputRequired({ inputRequests, requestState: await stateCodec.mint({ kind: 'capabilities-test' }) });
    },
  );
}
