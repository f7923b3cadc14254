-- mcpauth-authserver schema, version 2: resource servers (security review finding 8). Portable
-- SQL, like version 1. Only a client listed here may introspect (RFC 7662), and only access
-- tokens whose audience is one of its resources. Rows are written by administrators alone
-- (`mcpauth clients add --introspection RESOURCE`), never by registration, and go with their
-- client.
CREATE TABLE introspection_resources (
    client_id TEXT NOT NULL,
    resource TEXT NOT NULL,
    PRIMARY KEY (client_id, resource)
);
