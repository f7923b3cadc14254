"""The multi round-trip tools of the conformance fixture (input-required-result-* scenarios).

On 2026-07-28 a tool that needs the client's answers returns input_required and gets them with
the retry (SEP-2322). On the 2025-11-25 lifecycle (the stdio fixture, behind the gateway's bridge)
the same tool asks the client directly, one request after another; the gateway turns each into
input_required for a 2026-07-28 client. server.py registers them with register().
"""

import json
from typing import Any

from pydantic import BaseModel

from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.prompts.base import UserMessage
from mcp.shared.message import ServerMessageMetadata
from mcp.types import (
    CreateMessageRequest,
    CreateMessageRequestParams,
    CreateMessageResult,
    ElicitRequest,
    ElicitRequestFormParams,
    ElicitResult,
    InputRequest,
    InputRequiredResult,
    ListRootsRequest,
    ListRootsResult,
    SamplingMessage,
    TextContent,
)
from mcp.types.version import MODERN_PROTOCOL_VERSIONS


def form(message: str, **fields: str) -> ElicitRequest:
    """A form-mode elicitation asking for the given string fields, all required."""
    schema = {
        "type": "object",
        "properties": {name: {"type": kind} for name, kind in fields.items()},
        "required": list(fields),
    }
    return ElicitRequest(params=ElicitRequestFormParams(message=message, requested_schema=schema))


def sample(prompt: str, max_tokens: int) -> CreateMessageRequest:
    return CreateMessageRequest(
        params=CreateMessageRequestParams(messages=[SamplingMessage(role="user", content=TextContent(type="text", text=prompt))], max_tokens=max_tokens)
    )


def elicited(answer: Any, field: str) -> Any:
    """A field of an accepted form elicitation answer, or None."""
    if isinstance(answer, ElicitResult) and answer.content:
        return answer.content.get(field)
    return None


ANSWER_TYPES: dict[str, type[BaseModel]] = {
    "elicitation/create": ElicitResult,
    "sampling/createMessage": CreateMessageResult,
    "roots/list": ListRootsResult,
}


def modern(ctx: Context) -> bool:
    return ctx.protocol_version in MODERN_PROTOCOL_VERSIONS


async def answers_to(ctx: Context, requests: dict[str, InputRequest], state: str | None = None) -> dict[str, Any] | InputRequiredResult:
    """The client's answers to REQUESTS, or (2026-07-28) the input_required result asking for them.

    On 2026-07-28 the answers count only with the requestState STATE they were asked with."""
    if modern(ctx):
        got = ctx.input_responses or {}
        if requests.keys() <= got.keys() and ctx.request_state == state:
            return {key: got[key] for key in requests}
        return InputRequiredResult(input_requests=requests, request_state=state)
    related = ServerMessageMetadata(related_request_id=ctx.request_id)
    return {
        key: await ctx.session.send_request(request, ANSWER_TYPES[request.method], metadata=related)
        for key, request in requests.items()
    }




def register(server: MCPServer) -> None:
    """Adds the input-required tools and prompt to SERVER."""

    @server.tool()
    async def test_input_required_result_elicitation(ctx: Context) -> str | InputRequiredResult:
        """One elicitation round: asks for a name, then greets it."""
        got = await answers_to(ctx, {"user_name": form("What is your name?", name="string")})
        if isinstance(got, InputRequiredResult):
            return got
        return f"Hello, {elicited(got['user_name'], 'name') or '?'}!"


    @server.tool()
    async def test_input_required_result_sampling(ctx: Context) -> str | InputRequiredResult:
        """One sampling round: asks the client's model, then quotes it."""
        got = await answers_to(ctx, {"capital_question": sample("What is the capital of France?", 100)})
        if isinstance(got, InputRequiredResult):
            return got
        answer = got["capital_question"]
        return f"Model said: {answer.content.text if isinstance(answer, CreateMessageResult) and answer.content.type == 'text' else '?'}"


    @server.tool()
    async def test_input_required_result_list_roots(ctx: Context) -> str | InputRequiredResult:
        """One roots/list round: counts the client's roots."""
        got = await answers_to(ctx, {"client_roots": ListRootsRequest()})
        if isinstance(got, InputRequiredResult):
            return got
        answer = got["client_roots"]
        return f"Client exposed {len(answer.roots) if isinstance(answer, ListRootsResult) else 0} root(s)."


    def confirm() -> ElicitRequest:
        schema = {"type": "object", "properties": {"ok": {"type": "boolean"}}, "required": ["ok"]}
        return ElicitRequest(params=ElicitRequestFormParams(message="Please confirm", requested_schema=schema))


    @server.tool()
    async def test_input_required_result_request_state(ctx: Context) -> str | InputRequiredResult:
        """Completes only when the retry echoes the requestState it was given."""
        got = await answers_to(ctx, {"confirm": confirm()}, state="request-state-nonce")
        if isinstance(got, InputRequiredResult):
            return got
        return "state-ok: confirmation received"


    @server.tool()
    async def test_input_required_result_multiple_inputs(ctx: Context) -> str | InputRequiredResult:
        """Asks for an elicitation, a sampling and a roots/list answer in one round."""
        requests: dict[str, InputRequest] = {
            "user_name": form("What is your name?", name="string"),
            "greeting": sample("Generate a greeting", 50),
            "client_roots": ListRootsRequest(),
        }
        got = await answers_to(ctx, requests, state="multiple-inputs")
        return got if isinstance(got, InputRequiredResult) else "All inputs received."


    @server.tool()
    async def test_input_required_result_multi_round(ctx: Context) -> str | InputRequiredResult:
        """Three rounds: a name, then a colour, then the answer; the round travels in requestState."""
        step1 = {"step1": form("Step 1: What is your name?", name="string")}
        step2 = {"step2": form("Step 2: What is your favorite color?", color="string")}
        if not modern(ctx):
            name = elicited((await answers_to(ctx, step1))["step1"], "name")
            return f"{name} likes {elicited((await answers_to(ctx, step2))['step2'], 'color')}."
        state = json.loads(ctx.request_state) if ctx.request_state else {"round": 0}
        answers = ctx.input_responses or {}
        if state.get("round") == 1 and "step1" in answers:
            return InputRequiredResult(
                input_requests=step2, request_state=json.dumps({"round": 2, "name": elicited(answers["step1"], "name")})
            )
        if state.get("round") == 2 and "step2" in answers:
            return f"{state.get('name')} likes {elicited(answers['step2'], 'color')}."
        # First round, or an answer missing or out of order: start over.
        return InputRequiredResult(input_requests=step1, request_state=json.dumps({"round": 1}))


    @server.tool()
    async def test_input_required_result_tampered_state(ctx: Context) -> str | InputRequiredResult:
        """Hands out a requestState; the SDK's seal rejects a modified echo before this runs."""
        got = await answers_to(ctx, {"confirm": confirm()}, state="round-1")
        return got if isinstance(got, InputRequiredResult) else "state-ok: round-1"


    @server.tool()
    async def test_input_required_result_capabilities(ctx: Context) -> str | InputRequiredResult:
        """Asks only for what the client declared it can answer (sampling, elicitation)."""
        caps = ctx.client_capabilities if modern(ctx) else ctx.session.client_capabilities
        requests: dict[str, InputRequest] = {}
        if caps is None or caps.sampling is not None:
            requests["sample"] = sample("Say hello", 50)
        if caps is None or caps.elicitation is not None:
            requests["ask"] = form("What is your name?", name="string")
        got = await answers_to(ctx, requests, state="capability-gated")
        return got if isinstance(got, InputRequiredResult) else f"Answered: {', '.join(sorted(got))}"


    @server.prompt()
    async def test_input_required_result_prompt(ctx: Context) -> list[UserMessage] | InputRequiredResult:
        """prompts/get answering input_required (input-required-result-non-tool-request)."""
        got = await answers_to(ctx, {"user_context": form("What context should the prompt use?", context="string")})
        if isinstance(got, InputRequiredResult):
            return got
        return [UserMessage(role="user", content=TextContent(type="text", text=f"Use the following context: {elicited(got['user_context'], 'context') or '?'}"))]
