"""A scripted MCP session through the official Python SDK (mcp, PyPI) over
stdio — it launches the command given — or, when the command is an
http:// URL, over streamable HTTP to it; runs the steps of a JSON plan in order
and prints one JSON array with each step's answer (the test asserts on it).

A step is {"op": "list_tools"} | {"op": "call", "name": N, "args": {...}} |
{"op": "list_resources"} | {"op": "read", "uri": U}. A JSON-RPC error is
answered as {"error": {"code": C, "message": M}}, so a plan goes on after
one. An argument "$last_decision_id" stands for the decision id of the
latest answer that carried one (`_meta["dev.gavel/decision"]`). The
launched process gets this process's environment.

Usage: python_agent_tools.py PLAN_JSON (COMMAND [ARGS...] | URL)
"""

import asyncio
import json
import logging
import os
import sys

from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError


LAST = {"id": None}


async def step(session: ClientSession, s: dict):
    op = s["op"]
    if op == "list_tools":
        return (await session.list_tools()).model_dump(mode="json", by_alias=True, exclude_none=True)
    if op == "call":
        args = {k: (LAST["id"] if v == "$last_decision_id" else v) for k, v in s.get("args", {}).items()}
        r = await session.call_tool(s["name"], args)
        d = r.model_dump(mode="json", by_alias=True, exclude_none=True)
        seen = ((d.get("_meta") or {}).get("dev.gavel/decision") or {}).get("decision_id")
        if seen:
            LAST["id"] = seen
        return d
    if op == "list_resources":
        return (await session.list_resources()).model_dump(mode="json", by_alias=True, exclude_none=True)
    if op == "read":
        return (await session.read_resource(s["uri"])).model_dump(mode="json", by_alias=True, exclude_none=True)
    raise ValueError(f"unknown op {op!r}")


async def run(plan: list, streams) -> list:
    out = []
    async with ClientSession(streams[0], streams[1]) as session:
        await session.initialize()
        for s in plan:
            try:
                out.append(await step(session, s))
            except MCPError as e:
                out.append({"error": {"code": e.error.code, "message": e.error.message}})
    return out


async def main(plan: list, command: str, args: list) -> None:
    if command.startswith("http://"):
        async with streamable_http_client(command) as streams:
            out = await run(plan, streams)
    else:
        params = StdioServerParameters(command=command, args=args, env=dict(os.environ))
        async with stdio_client(params) as streams:
            out = await run(plan, streams)
    print(json.dumps(out), flush=True)


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    asyncio.run(main(json.loads(sys.argv[1]), sys.argv[2], sys.argv[3:]))
