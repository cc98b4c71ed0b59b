"""One host session through the official Python SDK's `Client` (mcp 2.3,
PyPI, installed pinned by scripts/setup into .deps/mcp2) over stdio, in the
era mode given: "auto" (probes `server/discover`, falls back to
`initialize`), "legacy" (`initialize` only) or a 2026 version such as
"2026-07-28" (per-request `_meta`, no probe). tests/e2e/e2e_host_era.rs.

Usage: python_era.py MODE COMMAND [ARG...]   (stdio: gavel run ...)
       python_era.py MODE URL                 (streamable HTTP: gavel serve)

The plan is a JSON list on stdin; each step prints one JSON line on stdout:
  {"op": "list_tools"}                         -> {"result": ListToolsResult}
  {"op": "call", "name": N, "args": {...},
   "progress": true}                           -> {"result": CallToolResult,
                                                    "progress": [[p, total], ...]}
  {"op": "listen", "filter": {"tools": bool, "prompts": bool, "resources": [uri, ...]},
   "during": [step, ...], "expect_tool": N, "expect_uri": U}
                                              -> {"honored": SubscriptionFilter,
                                                    "during": [...], "events": [type, ...],
                                                    "tools": [name, ...]}
     (opens `subscriptions/listen`, runs the steps, then waits for change
     events — at most 3, each within 30 s — listing the tools after each,
     until N is listed or an update of U came; an event with a URI is
     "type:uri")
  {"op": "wait_file", "path": P, "contains": S} -> {} once file P contains S
     (polled, at most 30 s; an error otherwise)
A step that fails prints {"error": {"code", "message"}} instead. The first
line names the session: {"op": "connected", "protocol_version", "server_info"}.
"""

import asyncio
import json
import os
import sys

import anyio
from mcp.client.client import Client
from mcp.client.stdio import StdioServerParameters
from mcp.shared.exceptions import MCPError


def dump(model):
    # Only what came over the wire: no defaults the SDK's models fill in.
    return model.model_dump(mode="json", by_alias=True, exclude_unset=True)


async def step(client: Client, s: dict) -> dict:
    out: dict = {"op": s["op"]}
    try:
        if s["op"] == "list_tools":
            out["result"] = dump(await client.list_tools(cache_mode="bypass"))
        elif s["op"] == "call":
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
        elif s["op"] == "listen":
            out.update(await listen(client, s))
        elif s["op"] == "wait_file":
            with anyio.fail_after(30):
                while True:
                    try:
                        with open(s["path"]) as f:
                            if s["contains"] in f.read():
                                break
                    except FileNotFoundError:
                        pass
                    await anyio.sleep(0.05)
        else:
            raise ValueError(f"unknown step {s['op']!r}")
    except MCPError as e:
        out["error"] = {"code": e.code, "message": e.message, "data": e.data}
    return out


async def listen(client: Client, s: dict) -> dict:
    f = s.get("filter", {})
    out: dict = {"events": [], "tools": []}
    async with client.listen(
        tools_list_changed=f.get("tools", False),
        prompts_list_changed=f.get("prompts", False),
        resource_subscriptions=f.get("resources", ()),
    ) as sub:
        out["honored"] = dump(sub.honored)
        out["during"] = [await step(client, d) for d in s.get("during", [])]
        events = aiter(sub)
        for _ in range(3):
            with anyio.fail_after(30):
                event = await anext(events)
            uri = getattr(event, "uri", None)
            name = type(event).__name__
            out["events"].append(f"{name}:{uri}" if uri is not None else name)
            if uri is not None and uri == s.get("expect_uri"):
                break
            listed = await client.list_tools(cache_mode="bypass")
            out["tools"] = [t.name for t in listed.tools]
            if s.get("expect_tool") in out["tools"]:
                break
    return out


async def main(mode: str, command: str, args: list[str], plan: list[dict]) -> None:
    server: str | StdioServerParameters
    if command.startswith("http://"):
        server = command
    else:
        # The whole environment: gavel reads GAVEL_STATE_DIR and its clock from it.
        server = StdioServerParameters(command=command, args=args, env=dict(os.environ))
    async with Client(server, mode=mode, cache=None, read_timeout_seconds=60) as client:
        info = client.server_info
        print(
            json.dumps(
                {
                    "op": "connected",
                    "protocol_version": client.protocol_version,
                    "server_info": dump(info) if info is not None else None,
                }
            ),
            flush=True,
        )
        for s in plan:
            print(json.dumps(await step(client, s)), flush=True)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3:], json.load(sys.stdin)))
