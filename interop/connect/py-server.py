"""A Python SDK (`mcp` from PyPI) MCP server on stdio, served by `mcpauth gateway -- python py-server.py`.

Tools: `multiply` (a*b as text) and `whoami` (the Python SDK's version), so the harness can tell the
answer came from this server."""

from importlib.metadata import version

from mcp.server.mcpserver import MCPServer

mcp = MCPServer("mcpauth-interop-python")


@mcp.tool()
def multiply(a: int, b: int) -> str:
    """Multiplies two integers."""
    return str(a * b)


@mcp.tool()
def whoami() -> str:
    """The Python SDK version serving this."""
    return f"mcp {version('mcp')}"


if __name__ == "__main__":
    mcp.run("stdio")
