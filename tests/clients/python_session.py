"""One MCP session through the official Python SDK (mcp 2.x, PyPI) over
streamable HTTP: initialize, call `echo`, and leave the context — which sends
`DELETE` for the session. Prints the echo; the SDK's own warnings (such as
"Session termination failed: 202") go to stderr, where the test reads them.

Usage: python_session.py URL TEXT
"""

import asyncio
import logging
import sys

from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client


async def main(url: str, text: str) -> None:
    async with streamable_http_client(url) as streams:
        read, write = streams[0], streams[1]
        async with ClientSession(read, write) as session:
            await session.initialize()
            result = await session.call_tool("echo", {"text": text})
            print(result.content[0].text, flush=True)


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    asyncio.run(main(sys.argv[1], sys.argv[2]))
