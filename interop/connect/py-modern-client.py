"""The Python SDK's v2 client (`mcp` from PyPI), which speaks the stateless 2026-07-28 revision
and probes `server/discover` first (mode "auto"), on stdio through `mcpauth connect` to a legacy
(2025-11-25) server: the bridge must answer the probe, so the client stays on 2026-07-28, and turn
the server's mid-call `elicitation/create` into an `input_required` result the client answers.

Usage: python py-modern-client.py MCPAUTH_BIN URL TOOL ARGS_JSON EXPECT ELICIT_TOOL ELICIT_ARGS_JSON
       ELICIT_EXPECT [connect arguments...]

Prints one PASS/FAIL line per check and "N passed, M failed" last; exits non-zero on failure."""

import asyncio
import json
import sys

from mcp import Client
from mcp.client.stdio import StdioServerParameters
from mcp.types import ElicitResult

LABEL = "Python SDK v2 client"
results = {"passed": 0, "failed": 0}


def check(ok: bool, what: str, detail: str = "") -> bool:
    results["passed" if ok else "failed"] += 1
    print(f"  {'PASS' if ok else 'FAIL'}  {LABEL}: {what}" + ("" if ok or not detail else f"\n        {detail}"))
    return ok


def text_of(result) -> str:
    return " ".join(getattr(c, "text", "") for c in result.content)


async def main() -> None:
    bin_, url, tool, args, expect, elicit_tool, elicit_args, elicit_expect, *extra = sys.argv[1:]
    asked: list[str] = []

    async def on_elicit(context, params):
        asked.append(params.message)
        return ElicitResult(action="accept", content={"name": "Ada Lovelace", "email": "ada@example.com"})

    server = StdioServerParameters(command=bin_, args=["connect", url, *extra])
    async with asyncio.timeout(60):
        async with Client(server, elicitation_callback=on_elicit) as client:
            check(
                client.protocol_version == "2026-07-28",
                "stays on 2026-07-28 through the bridge (server/discover answered)",
                f"negotiated {client.protocol_version}",
            )
            tools = await client.list_tools()
            names = [t.name for t in tools.tools]
            check(tool in names and elicit_tool in names, f"tools/list has {tool} and {elicit_tool}", str(names))
            result = await client.call_tool(tool, json.loads(args))
            check(expect in text_of(result), f"tools/call {tool}", text_of(result))
            result = await client.call_tool(elicit_tool, json.loads(elicit_args))
            check(
                len(asked) == 1 and elicit_expect in text_of(result),
                f"tools/call {elicit_tool}: the server's elicitation/create answered as input_required",
                f"asked {asked}; got {text_of(result)}",
            )


try:
    asyncio.run(main())
except Exception as e:  # the harness reports, it does not crash
    check(False, "session", repr(e))
print(f"{results['passed']} passed, {results['failed']} failed")
sys.exit(0 if results["failed"] == 0 and results["passed"] > 0 else 1)
