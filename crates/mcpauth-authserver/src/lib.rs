//! The MCP authorization server (in progress: the authorization-server issue builds it).
