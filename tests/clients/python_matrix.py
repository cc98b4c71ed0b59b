"""The era matrix's host: the official Python SDK's `Client` (mcp 2.3, PyPI,
.deps/mcp2) in the era mode given, answering everything an upstream may
ask of a host — elicitation (a form filled from its schema), sampling and
roots — and recording what it was asked. tests/e2e/e2e_era_matrix.rs.

Usage: python_matrix.py MODE COMMAND [ARG...]   (stdio: gavel run ...)
       python_matrix.py MODE URL                 (streamable HTTP: gavel serve)

The plan is a JSON list on stdin; each step prints one JSON line:
  {"op": "call", "name": N, "args": {...}, "progress": bool}
      -> {"result": CallToolResult, "progress": [[p, total], ...], "asked": [...]}
  {"op": "cancel", "name": N, "args": {...}, "after": seconds}
      -> {"cancelled": bool}      (the call abandoned after `after` s: the
                                   SDK sends notifications/cancelled)
  {"op": "list_tools"}                            -> {"tools": [name, ...]}
  {"op": "changed", "step": {...}, "expect_tool": N}
      -> {"step": {...}, "tools": [...], "heard": bool}
         (runs the step, then waits up to 30 s for a tools list change —
          a legacy host's notifications/tools/list_changed, or on a modern
          host a subscriptions/listen event — and lists the tools)
`asked` names what the host was asked during the step: ["elicitation:<message>",
"sampling", "roots"]. A failed step prints {"error": {"code", "message"}}.
The first line: {"op": "connected", "protocol_version"}.
"""

import asyncio
import json
import os
import sys

import anyio
import mcp.types as types
from mcp.client.client import Client
from mcp.client.stdio import StdioServerParameters
from mcp.shared.exceptions import MCPError

ASKED: list[str] = []
CHANGED = asyncio.Event()


def dump(model):
    return model.model_dump(mode="json", by_alias=True, exclude_unset=True)


def fill(schema: dict) -> dict:
    """A form answer for `schema`: defaults where given, else a valid value."""
    out: dict = {}
    for name, p in (schema.get("properties") or {}).items():
        if "default" in p:
            out[name] = p["default"]
            continue
        t = p.get("type")
        if "enum" in p:
            out[name] = p["enum"][0]
        elif "oneOf" in p:
            out[name] = p["oneOf"][0]["const"]
        elif t == "boolean":
            out[name] = True
        elif t in ("integer", "number"):
            out[name] = p.get("minimum", 1)
        elif t == "array":
            items = p.get("items") or {}
            enum = items.get("enum") or [c["const"] for c in items.get("anyOf", [])]
            out[name] = enum[:1]
        else:
            fmt = p.get("format")
            out[name] = {
                "email": "host@example.test",
                "uri": "https://example.test/",
                "date": "2020-01-01",
                "date-time": "2020-01-01T00:00:00Z",
            }.get(fmt, "from the python host")
    return out


async def on_elicit(context, params):
    ASKED.append(f"elicitation:{params.message}")
    if getattr(params, "mode", None) == "url":
        return types.ElicitResult(action="accept")
    return types.ElicitResult(action="accept", content=fill(params.requested_schema))


async def on_sample(context, params):
    ASKED.append("sampling")
    return types.CreateMessageResult(
        role="assistant",
        content=types.TextContent(type="text", text="sampled by the python host"),
        model="python-host",
        stop_reason="endTurn",
    )


async def on_roots(context):
    ASKED.append("roots")
    return types.ListRootsResult(roots=[types.Root(uri="file:///matrix-root", name="matrix")])


async def on_message(message) -> None:
    if isinstance(message, types.ToolListChangedNotification):
        CHANGED.set()


async def step(client: Client, s: dict) -> dict:
    out: dict = {"op": s["op"]}
    ASKED.clear()
    try:
        if s["op"] == "call":
            progress: list = []

            async def on_progress(p: float, total: float | None, message: str | None) -> None:
                progress.append([p, total])

            r = await client.call_tool(
                s["name"],
                s.get("args", {}),
                progress_callback=on_progress if s.get("progress") else None,
            )
            out["result"] = dump(r)
            out["progress"] = progress
        elif s["op"] == "cancel":
            with anyio.move_on_after(s.get("after", 0.5)) as scope:
                await client.call_tool(s["name"], s.get("args", {}))
            out["cancelled"] = scope.cancelled_caught
        elif s["op"] == "list_tools":
            listed = await client.list_tools(cache_mode="bypass")
            out["tools"] = [t.name for t in listed.tools]
        elif s["op"] == "changed":
            out.update(await changed(client, s))
        else:
            raise ValueError(f"unknown step {s['op']!r}")
    except MCPError as e:
        out["error"] = {"code": e.code, "message": e.message, "data": e.data}
    out["asked"] = list(ASKED)
    return out


async def changed(client: Client, s: dict) -> dict:
    out: dict = {"heard": False, "tools": []}
    if client.protocol_version == "2026-07-28":
        async with client.listen(tools_list_changed=True) as sub:
            out["step"] = await step(client, s["step"])
            events = aiter(sub)
            with anyio.move_on_after(30):
                await anext(events)
                out["heard"] = True
    else:
        CHANGED.clear()
        out["step"] = await step(client, s["step"])
        with anyio.move_on_after(30):
            await CHANGED.wait()
            out["heard"] = True
    listed = await client.list_tools(cache_mode="bypass")
    out["tools"] = [t.name for t in listed.tools]
    return out


async def main(mode: str, command: str, args: list[str], plan: list[dict]) -> None:
    server: str | StdioServerParameters
    if command.startswith("http://"):
        server = command
    else:
        server = StdioServerParameters(command=command, args=args, env=dict(os.environ))
    async with Client(
        server,
        mode=mode,
        cache=None,
        read_timeout_seconds=60,
        elicitation_callback=on_elicit,
        sampling_callback=on_sample,
        list_roots_callback=on_roots,
        message_handler=on_message,
    ) as client:
        print(json.dumps({"op": "connected", "protocol_version": client.protocol_version}), flush=True)
        for s in plan:
            print(json.dumps(await step(client, s)), flush=True)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3:], json.load(sys.stdin)))
