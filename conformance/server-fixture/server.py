"""The MCP server the conformance server scenarios run against (conformance/run-server).

Built on the Python SDK (`mcp` from PyPI, v2), which serves both protocol eras from one
Streamable HTTP endpoint: the stateful 2025-11-25 lifecycle (initialize, Mcp-Session-Id, requests
from server to client on the POST's SSE stream) and the stateless 2026-07-28 revision (one
self-contained POST per request, `input_required` results for multi round-trip requests). Over
stdio it serves the 2025-11-25 era; `mcpauth gateway` bridges 2026-07-28 clients onto it. The
multi round-trip tools are in mrtr.py.

    python server.py http PORT     Streamable HTTP on 127.0.0.1:PORT, path /mcp
    python server.py stdio         newline-delimited JSON-RPC on stdin/stdout

The names, texts and data below are what the scenarios of @modelcontextprotocol/conformance
(src/scenarios/server/**) call and compare against; each group names its scenarios.
"""

import asyncio
import base64
import json
import sys
from typing import Annotated, Any

import mrtr

from pydantic import BaseModel, Field

from mcp.server import ServerRequestContext
from mcp.server.mcpserver import Context, MCPServer, RequestStateSecurity
from mcp.server.mcpserver.prompts.base import Prompt, UserMessage
from mcp.server.streamable_http import EventCallback, EventMessage, EventStore
from mcp.shared.exceptions import MCPError
from mcp.types import (
    MISSING_REQUIRED_CLIENT_CAPABILITY,
    AudioContent,
    Completion,
    CompletionArgument,
    CompletionContext,
    EmbeddedResource,
    EmptyResult,
    ImageContent,
    JSONRPCMessage,
    PromptReference,
    ResourceTemplateReference,
    SamplingMessage,
    SetLevelRequestParams,
    SubscribeRequestParams,
    TextContent,
    TextResourceContents,
    UnsubscribeRequestParams,
)

# A 1x1 PNG and a minimal WAV (tools-call-image, tools-call-audio, resources-read-binary,
# prompts-get-with-image).
PNG_B64 = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8DwHwAFBQIAX8jx0gAAAABJRU5ErkJggg=="
WAV_B64 = "UklGRiYAAABXQVZFZm10IBAAAAABAAEAQB8AAAB9AAACABAAZGF0YQIAAAA="


class MemoryEvents(EventStore):
    """SSE event ids for resumption (2025-11-25 transports, "Resumability and Redelivery")."""

    def __init__(self) -> None:
        self._log: list[tuple[str, int, JSONRPCMessage | None]] = []

    async def store_event(self, stream_id: str, message: JSONRPCMessage | None) -> str:
        self._log.append((stream_id, len(self._log) + 1, message))
        return str(len(self._log))

    async def replay_events_after(self, last_event_id: str, send_callback: EventCallback) -> str | None:
        try:
            after = int(last_event_id)
        except ValueError:
            return None
        stream = next((s for s, n, _ in self._log if n == after), None)
        if stream is None:
            return None
        for s, n, message in self._log:
            if s == stream and n > after and message is not None:
                await send_callback(EventMessage(message, str(n)))
        return stream


# requestState is sealed by the SDK (input-required-result-tampered-state): a fixed fixture key.
server = MCPServer(
    name="mcpauth-conformance-fixture",
    version="1.0.0",
    request_state_security=RequestStateSecurity(keys=[b"mcpauth conformance fixture request-state key"]),
)
subscriptions: set[str] = set()


def text(value: str) -> TextContent:
    return TextContent(type="text", text=value)


def text_resource(uri: str, mime: str, body: str) -> EmbeddedResource:
    return EmbeddedResource(type="resource", resource=TextResourceContents(uri=uri, mime_type=mime, text=body))


# ---- tools-call-* content types ----------------------------------------------------------


@server.tool()
def test_simple_text() -> str:
    """Answers one text block."""
    return "This is a simple text response for testing."


@server.tool()
def test_image_content() -> list[ImageContent]:
    """Answers one PNG image block."""
    return [ImageContent(type="image", data=PNG_B64, mime_type="image/png")]


@server.tool()
def test_audio_content() -> list[AudioContent]:
    """Answers one WAV audio block."""
    return [AudioContent(type="audio", data=WAV_B64, mime_type="audio/wav")]


@server.tool()
def test_embedded_resource() -> list[EmbeddedResource]:
    """Answers one embedded text resource."""
    return [text_resource("test://embedded-resource", "text/plain", "This is an embedded resource content.")]


@server.tool()
def test_multiple_content_types() -> list[TextContent | ImageContent | EmbeddedResource]:
    """Answers text, an image and an embedded JSON resource."""
    return [
        text("Multiple content types test:"),
        ImageContent(type="image", data=PNG_B64, mime_type="image/png"),
        text_resource("test://mixed-content-resource", "application/json", '{"test": "data", "value": 123}'),
    ]


@server.tool()
def test_error_handling() -> str:
    """Fails: the result carries isError (tools-call-error)."""
    raise RuntimeError("This tool intentionally returns an error for testing")


# ---- notifications during a call: tools-call-with-logging, tools-call-with-progress --------


@server.tool()
async def test_tool_with_logging(ctx: Context) -> str:
    """Sends three log messages while it runs."""
    for step, pause in (("Tool execution started", 0.05), ("Tool processing data", 0.05), ("Tool execution completed", 0)):
        await ctx.info(step)
        await asyncio.sleep(pause)
    return "Tool with logging executed successfully"


@server.tool()
async def test_tool_with_progress(ctx: Context) -> str:
    """Reports progress 0, 50 and 100 of 100 against the caller's progress token."""
    for done in (0, 50, 100):
        await ctx.report_progress(progress=done, total=100, message=f"Completed step {done} of 100")
        if done < 100:
            await asyncio.sleep(0.05)
    meta = ctx.request_context.meta if ctx.request_context else None
    return str(meta.get("progress_token") if meta else 0)


@server.tool()
async def test_reconnection(ctx: Context) -> str:
    """Closes its SSE stream mid-call; the client resumes with Last-Event-ID (server-sse-polling)."""
    await ctx.info("Before disconnect")
    await ctx.close_sse_stream()
    await asyncio.sleep(0.2)
    await ctx.info("After reconnect")
    return "Reconnection test completed"


# ---- requests to the client on the 2025-11-25 wire: sampling and elicitation --------------


@server.tool()
async def test_sampling(prompt: str, ctx: Context) -> str:
    """Asks the client's model (sampling/createMessage) and echoes its answer."""
    try:
        result = await ctx.session.create_message(
            messages=[SamplingMessage(role="user", content=text(prompt))],
            max_tokens=100,
            related_request_id=ctx.request_id,
        )
    except Exception as e:  # the client's refusal is reported, not raised
        return f"Sampling not supported or error: {e}"
    return f"LLM response: {result.content.text if result.content.type == 'text' else 'No response'}"


class Reply(BaseModel):
    response: str = Field(description="User's response")


class Defaults(BaseModel):
    """Every primitive type with a default (SEP-1034, elicitation-sep1034-defaults)."""

    name: str = Field(default="John Doe", description="User name")
    age: int = Field(default=30, description="User age")
    score: float = Field(default=95.5, description="User score")
    status: str = Field(default="active", description="User status", json_schema_extra={"enum": ["active", "inactive", "pending"]})
    verified: bool = Field(default=True, description="Verification status")


def _options(*pairs: tuple[str, str]) -> list[dict[str, str]]:
    return [{"const": value, "title": title} for value, title in pairs]


class Enums(BaseModel):
    """The five enum shapes of SEP-1330 (elicitation-sep1330-enums)."""

    untitledSingle: str = Field(description="Simple enum without titles", json_schema_extra={"enum": ["active", "inactive", "pending"]})
    titledSingle: str = Field(
        description="Enum with titled options (oneOf)",
        json_schema_extra={"oneOf": _options(("low", "Low Priority"), ("medium", "Medium Priority"), ("high", "High Priority"))},
    )
    untitledMulti: list[str] = Field(
        description="Multi-select without titles",
        json_schema_extra={"items": {"type": "string", "enum": ["read", "write", "execute"]}},
    )
    titledMulti: list[str] = Field(
        description="Multi-select with titled options",
        json_schema_extra={"items": {"anyOf": _options(("feature", "New Feature"), ("bug", "Bug Fix"), ("docs", "Documentation"))}},
    )
    legacyEnum: str = Field(
        description="Legacy enum with enumNames",
        json_schema_extra={"enum": ["small", "medium", "large"], "enumNames": ["Small Size", "Medium Size", "Large Size"]},
    )


async def ask(ctx: Context, message: str, schema: type[BaseModel], prefix: str) -> str:
    try:
        result = await ctx.elicit(message=message, schema=schema)
    except Exception as e:
        return f"Elicitation not supported or error: {e}"
    content = result.data.model_dump_json() if result.action == "accept" else "{}"
    return f"{prefix}: action={result.action}, content={content}"


@server.tool()
async def test_elicitation(message: str, ctx: Context) -> str:
    """Asks the user (elicitation/create) for one string (tools-call-elicitation)."""
    return await ask(ctx, message, Reply, "User response")


@server.tool()
async def test_elicitation_sep1034_defaults(ctx: Context) -> str:
    """Asks for a form whose fields all have defaults."""
    return await ask(ctx, "Please provide user information", Defaults, "Elicitation result")


@server.tool()
async def test_elicitation_sep1330_enums(ctx: Context) -> str:
    """Asks for a form with every enum shape."""
    return await ask(ctx, "Please select values using different enum schema types", Enums, "Elicitation completed")


@server.tool()
async def test_missing_capability(ctx: Context) -> str:
    """Needs the client's sampling capability: without it, a JSON-RPC error naming it."""
    caps = ctx.session.client_capabilities
    if caps is None or caps.sampling is None:
        raise MCPError(
            code=MISSING_REQUIRED_CLIENT_CAPABILITY,
            message="This tool requires the client 'sampling' capability",
            data={"requiredCapabilities": {"sampling": {}}},
        )
    return "Client declared sampling capability; proceeding."


@server.tool()
def test_x_mcp_header(
    region: Annotated[str, Field(description="Sent as the Mcp-Param-Region header", json_schema_extra={"x-mcp-header": "Region"})] = "<none>",
) -> str:
    """Echoes a parameter the client mirrors into an Mcp-Param-* header (SEP-2243)."""
    return f"region={region}"


# ---- server-stateless: list changes announced on subscriptions/listen streams (SEP-2575) ----


def transient() -> str:
    """Added and removed again by the two triggers below."""
    return "transient"


@server.tool()
async def test_trigger_tool_change(ctx: Context) -> str:
    """Changes the tool list and announces it."""
    server.add_tool(transient, name="test_transient_tool")
    server.remove_tool("test_transient_tool")
    await ctx.notify_tools_changed()
    return "tool list changed"


@server.tool()
async def test_trigger_prompt_change(ctx: Context) -> str:
    """Changes the prompt list and announces it."""
    server.add_prompt(Prompt.from_function(transient, name="test_transient_prompt", description="transient"))
    server.remove_prompt("test_transient_prompt")
    await ctx.notify_prompts_changed()
    return "prompt list changed"


# ---- json-schema-2020-12: an input schema with the 2020-12 keywords, kept verbatim ---------

SCHEMA_2020_12: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "$defs": {
        "address": {
            "$anchor": "addressDef",
            "type": "object",
            "properties": {"street": {"type": "string"}, "city": {"type": "string"}},
        }
    },
    "properties": {
        "name": {"type": "string"},
        "address": {"$ref": "#/$defs/address"},
        "contactMethod": {"type": "string", "enum": ["phone", "email"]},
        "phone": {"type": "string"},
        "email": {"type": "string"},
    },
    "allOf": [{"anyOf": [{"required": ["phone"]}, {"required": ["email"]}]}],
    "if": {"properties": {"contactMethod": {"const": "phone"}}, "required": ["contactMethod"]},
    "then": {"required": ["phone"]},
    "else": {"required": ["email"]},
    "additionalProperties": False,
}


@server.tool(name="json_schema_2020_12_tool")
def json_schema_2020_12_tool() -> str:
    """Lists a JSON Schema 2020-12 input schema."""
    return "json_schema_2020_12_tool"


# MCPServer.tool() derives the schema from the signature and has no override: replace it.
server._tool_manager._tools["json_schema_2020_12_tool"].parameters = SCHEMA_2020_12

# ---- resources-* -------------------------------------------------------------------------


@server.resource("test://static-text")
def static_text() -> str:
    """A text resource."""
    return "This is the content of the static text resource."


@server.resource("test://static-binary")
def static_binary() -> bytes:
    """A binary resource (PNG)."""
    return base64.b64decode(PNG_B64)


@server.resource("test://template/{id}/data")
def template_data(id: str) -> str:
    """A resource template: the id is substituted into JSON."""
    return json.dumps({"id": id, "templateTest": True, "data": f"Data for ID: {id}"})


@server.resource("test://watched-resource")
def watched() -> str:
    """The resource resources-subscribe and resources-unsubscribe subscribe to."""
    return "Watched resource content"


async def on_subscribe(ctx: ServerRequestContext, params: SubscribeRequestParams) -> EmptyResult:
    subscriptions.add(str(params.uri))
    return EmptyResult()


async def on_unsubscribe(ctx: ServerRequestContext, params: UnsubscribeRequestParams) -> EmptyResult:
    subscriptions.discard(str(params.uri))
    return EmptyResult()


async def on_set_level(ctx: ServerRequestContext, params: SetLevelRequestParams) -> EmptyResult:
    """logging/setLevel (logging-set-level): accepted; the fixture logs at every level."""
    return EmptyResult()


# MCPServer has no decorators for these three: register them on the low-level server.
server._lowlevel_server.add_request_handler("resources/subscribe", SubscribeRequestParams, on_subscribe)
server._lowlevel_server.add_request_handler("resources/unsubscribe", UnsubscribeRequestParams, on_unsubscribe)
server._lowlevel_server.add_request_handler("logging/setLevel", SetLevelRequestParams, on_set_level)
mrtr.register(server)

# ---- prompts-* ---------------------------------------------------------------------------


@server.prompt()
def test_simple_prompt() -> list[UserMessage]:
    """A prompt without arguments."""
    return [UserMessage(role="user", content=text("This is a simple prompt for testing."))]


@server.prompt()
def test_prompt_with_arguments(arg1: str, arg2: str) -> list[UserMessage]:
    """A prompt with two required arguments."""
    return [UserMessage(role="user", content=text(f"Prompt with arguments: arg1='{arg1}', arg2='{arg2}'"))]


@server.prompt()
def test_prompt_with_embedded_resource(resourceUri: str) -> list[UserMessage]:
    """A prompt embedding the resource it is given."""
    return [
        UserMessage(role="user", content=text_resource(resourceUri, "text/plain", "Embedded resource content for testing.")),
        UserMessage(role="user", content=text("Please process the embedded resource above.")),
    ]


@server.prompt()
def test_prompt_with_image() -> list[UserMessage]:
    """A prompt with an image."""
    return [
        UserMessage(role="user", content=ImageContent(type="image", data=PNG_B64, mime_type="image/png")),
        UserMessage(role="user", content=text("Please analyze the image above.")),
    ]


@server.completion()
async def complete(
    ref: PromptReference | ResourceTemplateReference, argument: CompletionArgument, context: CompletionContext | None
) -> Completion:
    """completion/complete (completion-complete): no suggestions."""
    return Completion(values=[], total=0, has_more=False)


def main(argv: list[str]) -> int:
    if argv[1:] == ["stdio"]:
        server.run("stdio")
        return 0
    if len(argv) == 3 and argv[1] == "http" and argv[2].isdigit():
        # 127.0.0.1 turns on the SDK's Host/Origin checks (dns-rebinding-protection).
        server.run("streamable-http", host="127.0.0.1", port=int(argv[2]), event_store=MemoryEvents(), retry_interval=100)
        return 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
