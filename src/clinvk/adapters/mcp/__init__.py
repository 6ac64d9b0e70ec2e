"""The MCP server adapter: clinvk's services as Model Context Protocol tools.

`protocol` (JSON-RPC and MCP wire types), `tools` (the nine tools, their schemas from the
native REST API's msgspec types), `server` (one dispatcher for every transport), `stdio`
and `http` (the two transports).
"""
