"""A 2026-07-28 host through the official Python SDK (mcp 2.3, in
.deps/mcp2) for gavel's MRTR relay (tests/e2e/e2e_relay.rs): the SDK's own
loop (`Client.call_tool` with an elicitation callback) and a manual one
(`client.session.call_tool(..., allow_input_required=True)`), so a test can
alter, replay or move a round's `requestState` the way a hostile host would.

Usage: python_rounds.py URL [URL...]        (streamable HTTP: gavel serve)
       python_rounds.py COMMAND [ARG...]    (stdio: gavel run ...)

Every target is a `Client` pinned to 2026-07-28; a step names the target it
goes to with "via" (default 0). The plan is a JSON list on stdin; each step
prints one JSON line on stdout:
  {"op": "call", "name": N, "args": {...}, "answer": {...}}
      -> {"result": CallToolResult}   (the SDK drives the rounds; every
         elicitation is accepted with "answer" as its content)
  {"op": "prompt", "name": N, "args": {...}, "answer": {...}}
      -> {"result": GetPromptResult}
  {"op": "read", "uri": U, "answer": {...}} -> {"result": ReadResourceResult}
  {"op": "once", "name": N, "args": {...}, "save": LABEL}
      -> {"result": CallToolResult | InputRequiredResult}; an input round is
         kept under LABEL
  {"op": "retry", "name": N, "args": {...}, "from": LABEL, "answer": {...},
   "state": "same" | "flip" | "none" | <literal>, "responses": {...}}
      -> the retry's answer: every input request of LABEL answered with
         "answer" (or "responses" as given), and LABEL's requestState as
         "state" says ("flip": one byte changed)
  {"op": "retry_raw", "name": N, "args": {...}, "state": S, "responses": {...}}
      -> a retry with exactly that state and those responses (a round
         another host process was given)
  {"op": "advance", "seconds": S}  -> {} (moves gavel's test clock, the file
      GAVEL_TEST_CLOCK_FILE names, by S seconds)
A step that fails prints {"error": {"code", "message", "data"}} instead.
"""

import asyncio
import json
import os
import sys

from mcp import types
from mcp.client.client import Client
from mcp.client.stdio import StdioServerParameters
from mcp.shared.exceptions import MCPError

MODE = "2026-07-28"
answer: dict = {}


def dump(model):
    return model.model_dump(mode="json", by_alias=True, exclude_unset=True)


async def on_elicit(context, params):
    return types.ElicitResult(action="accept", content=answer)


def flipped(state: str) -> str:
    # One character in the middle changed (stays printable ASCII).
    i = len(state) // 2
    c = "A" if state[i] != "A" else "B"
    return state[:i] + c + state[i + 1 :]


async def step(clients: list, saved: dict, s: dict) -> dict:
    global answer
    out: dict = {"op": s["op"]}
    client = clients[s.get("via", 0)]
    answer = s.get("answer", {})
    try:
        if s["op"] == "call":
            out["result"] = dump(await client.call_tool(s["name"], s.get("args", {})))
        elif s["op"] == "prompt":
            out["result"] = dump(await client.get_prompt(s["name"], s.get("args")))
        elif s["op"] == "read":
            out["result"] = dump(await client.read_resource(s["uri"]))
        elif s["op"] == "retry_raw":
            r = await client.session.call_tool(
                s["name"],
                s.get("args", {}),
                input_responses=s.get("responses"),
                request_state=s.get("state"),
                allow_input_required=True,
            )
            out["result"] = dump(r)
        elif s["op"] == "advance":
            path = os.environ["GAVEL_TEST_CLOCK_FILE"]
            with open(path) as f:
                now = float(f.read().strip())
            with open(path, "w") as f:
                f.write(str(now + s["seconds"]))
        elif s["op"] == "once":
            r = await client.session.call_tool(s["name"], s.get("args", {}), allow_input_required=True)
            if isinstance(r, types.InputRequiredResult):
                saved[s.get("save", "last")] = r
            out["result"] = dump(r)
        elif s["op"] == "retry":
            first: types.InputRequiredResult = saved[s.get("from", "last")]
            responses = s.get("responses")
            if responses is None:
                responses = {
                    k: {"action": "accept", "content": answer} for k in (first.input_requests or {})
                }
            how = s.get("state", "same")
            state = {
                "same": first.request_state,
                "flip": flipped(first.request_state or ""),
                "none": None,
            }.get(how, how)
            r = await client.session.call_tool(
                s["name"],
                s.get("args", {}),
                input_responses=responses,
                request_state=state,
                allow_input_required=True,
            )
            if isinstance(r, types.InputRequiredResult) and "save" in s:
                saved[s["save"]] = r
            out["result"] = dump(r)
        else:
            raise ValueError(f"unknown step {s['op']!r}")
    except MCPError as e:
        out["error"] = {"code": e.code, "message": e.message, "data": e.data}
    return out


async def main(targets: list[str], plan: list[dict]) -> None:
    if targets[0].startswith("http://"):
        servers = targets
    else:
        # The whole environment: gavel reads GAVEL_STATE_DIR and its clock from it.
        servers = [StdioServerParameters(command=targets[0], args=targets[1:], env=dict(os.environ))]
    clients = [
        Client(srv, mode=MODE, cache=None, read_timeout_seconds=60, elicitation_callback=on_elicit)
        for srv in servers
    ]
    saved: dict = {}
    for c in clients:
        await c.__aenter__()
    try:
        print(json.dumps({"op": "connected", "targets": len(clients)}), flush=True)
        for s in plan:
            print(json.dumps(await step(clients, saved, s)), flush=True)
    finally:
        for c in reversed(clients):
            await c.__aexit__(None, None, None)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1:], json.load(sys.stdin)))
