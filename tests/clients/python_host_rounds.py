"""A 2026-07-28 host that answers input rounds (MRTR), through the official
Python SDK's `Client` (mcp 2.3, .deps/mcp2) over stdio or streamable HTTP:
tests/e2e/e2e_host_rounds.rs.

Usage: python_host_rounds.py COMMAND [ARG...]   (stdio: gavel run ...)
       python_host_rounds.py URL                 (streamable HTTP: gavel serve)

Stdin is one JSON object:
  {"elicit": ANSWER | null,     the elicitation callback's answer, or no
                                callback (no elicitation capability declared):
                                {"action": "accept"|"decline"|"cancel",
                                 "content": {...}}
   "sample": TEXT | null,       the sampling callback's reply text, or none
   "log_level": LEVEL | null,   the logLevel every request carries, or none
   "steps": [STEP, ...]}
Each step prints one JSON line on stdout:
  {"op": "call", "name": N, "args": {...}}
      -> {"result": CallToolResult, "asked": [request params, ...]}
         (the SDK drives every input round through the callbacks)
  {"op": "call_once", "name": N, "args": {...},
   "responses": {...} | null, "state_from": I | null}
      -> {"result": CallToolResult | InputRequiredResult, "asked": []}
         (one tools/call, nothing answered: the test drives the rounds;
         the requestState sent is the one step I's result carried — a
         state opens only in the gavel process that sealed it)
  {"op": "read", "uri": U}  /  {"op": "prompt", "name": N, "args": {...}}
      -> as "call", for resources/read and prompts/get
Every step's line also has "logs": the log messages received during it
({"level", "logger", "data"}).
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


def dump(model):
    return model.model_dump(mode="json", by_alias=True, exclude_unset=True)


async def main(target: list[str], plan: dict) -> None:
    asked: list = []
    logs: list = []

    async def on_log(params):
        logs.append(dump(params))

    async def on_elicit(context, params):
        asked.append(dump(params))
        a = plan["elicit"]
        return types.ElicitResult(action=a["action"], content=a.get("content"))

    async def on_sample(context, params):
        asked.append(dump(params))
        return types.CreateMessageResult(
            role="assistant",
            content=types.TextContent(type="text", text=plan["sample"]),
            model="test-model",
        )

    if target[0].startswith("http://"):
        server = target[0]
    else:
        server = StdioServerParameters(command=target[0], args=target[1:], env=dict(os.environ))
    kwargs = {}
    if plan.get("elicit") is not None:
        kwargs["elicitation_callback"] = on_elicit
    if plan.get("sample") is not None:
        kwargs["sampling_callback"] = on_sample
    if plan.get("log_level") is not None:
        kwargs["log_level"] = plan["log_level"]
    kwargs["logging_callback"] = on_log
    async with Client(server, mode="2026-07-28", cache=None, read_timeout_seconds=60, **kwargs) as client:
        done: list = []
        for s in plan["steps"]:
            asked.clear()
            logs.clear()
            out: dict = {"op": s["op"]}
            try:
                if s["op"] == "call":
                    out["result"] = dump(await client.call_tool(s["name"], s.get("args", {})))
                elif s["op"] == "call_once":
                    r = await client.session.call_tool(
                        s["name"],
                        s.get("args", {}),
                        input_responses=s.get("responses"),
                        request_state=(
                            done[s["state_from"]]["result"]["requestState"]
                            if s.get("state_from") is not None
                            else None
                        ),
                        allow_input_required=True,
                    )
                    out["result"] = dump(r)
                elif s["op"] == "read":
                    out["result"] = dump(await client.read_resource(s["uri"]))
                elif s["op"] == "prompt":
                    out["result"] = dump(await client.get_prompt(s["name"], s.get("args", {})))
                else:
                    raise ValueError(f"unknown step {s['op']!r}")
            except MCPError as e:
                out["error"] = {"code": e.code, "message": e.message, "data": e.data}
            out["asked"] = list(asked)
            out["logs"] = list(logs)
            done.append(out)
            print(json.dumps(out), flush=True)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1:], json.load(sys.stdin)))
