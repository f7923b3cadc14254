"""A Python SDK (`mcp` from PyPI, v2) server on Streamable HTTP, which serves the stateless
2026-07-28 revision per request: the real modern peer behind `mcpauth connect --protocol native`
for a legacy (2025-11-25) client. Usage: python py-modern-server.py PORT

Tools: `multiply` (a*b as text) and `greet`, whose `who` parameter is elicited from the user: on
2026-07-28 the server answers `input_required` and the client retries with the answer (multi
round-trip requests), which the bridge turns into an `elicitation/create` request to the legacy
client."""

import sys
from typing import Annotated

from pydantic import BaseModel

from mcp.server.mcpserver import Elicit, MCPServer, Resolve

mcp = MCPServer("mcpauth-interop-modern")


class Person(BaseModel):
    name: str


def ask_name() -> Elicit[Person]:
    return Elicit("Who should be greeted?", Person)


@mcp.tool()
def multiply(a: int, b: int) -> str:
    """Multiplies two integers."""
    return str(a * b)


@mcp.tool()
def greet(who: Annotated[Person, Resolve(ask_name)]) -> str:
    """Greets the person the user names."""
    return f"Hello, {who.name}!"


if __name__ == "__main__":
    mcp.run("streamable-http", host="127.0.0.1", port=int(sys.argv[1]))
