//! The MCP resource server middleware (being built: the resource-server issue).
