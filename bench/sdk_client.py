"""A host on the official Python MCP SDK (`mcp` 2.3, .deps/mcp2), driven by
`cargo bench --bench sdk` (bench/sdk.rs): it opens one session over stdio to
the command it is given, then answers each `N` line on stdin with N calls of
the tool, one after another, and one JSON line: every call's round trip in
microseconds as the SDK's caller sees it (`client.call_tool` from request
to result).

Usage: sdk_client.py TOOL ARGS_JSON COMMAND [ARG...]
"""

import asyncio
import json
import os
import sys
import time

from mcp.client.client import Client
from mcp.client.stdio import StdioServerParameters


async def main(tool: str, args: dict, command: str, argv: list[str]) -> None:
    server = StdioServerParameters(command=command, args=argv, env=dict(os.environ))
    async with Client(server, mode="legacy", cache=None, read_timeout_seconds=60) as client:
        await client.list_tools(cache_mode="bypass")
        print(json.dumps({"ready": True}), flush=True)
        loop = asyncio.get_running_loop()
        while True:
            line = await loop.run_in_executor(None, sys.stdin.readline)
            if not line.strip():
                return
            n = int(line)
            samples = []
            for _ in range(n):
                t = time.perf_counter_ns()
                r = await client.call_tool(tool, args)
                samples.append((time.perf_counter_ns() - t) / 1000.0)
                if r.is_error:
                    raise SystemExit(f"{tool} failed: {r}")
            print(json.dumps({"us": samples}), flush=True)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], json.loads(sys.argv[2]), sys.argv[3], sys.argv[4:]))
