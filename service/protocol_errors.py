"""Errors the SDK would word with the caller's input or pydantic's internals, put in one plain sentence.

The SDK answers a tool call with a missing argument with pydantic's multi-line report (the
arguments echoed as ``input_value``, a link to errors.pydantic.dev), an unknown tool with its
name, and an unknown method or resource with the method or URI in the error's ``data``.
Whatever reaches a client names the rule that was broken, never what the client sent.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError, UnexpectedToolError
from mcp.shared.exceptions import MCPError
from pydantic import ValidationError

METHOD_NOT_FOUND = -32601
INVALID_PARAMS = -32602
UNKNOWN_PROMPT = "There is no prompt by that name; prompts/list names the prompts this server has."
UNKNOWN_TOOL = "There is no tool by that name; tools/list names the tools this server has."


def argument_error_text(tool: str, error: ValidationError) -> str:
    """``add_to_cart needs the argument product_id.``: the argument names only, never their values."""
    missing = sorted({str(e["loc"][0]) for e in error.errors() if e["type"] == "missing" and e["loc"]})
    if missing:
        return f"{tool} needs the argument{'s' if len(missing) > 1 else ''} {', '.join(missing)}; see tools/list."
    invalid = sorted({str(e["loc"][0]) for e in error.errors() if e["loc"]})
    names = ", ".join(invalid) or "its arguments"
    return f"{tool} cannot use the value given for {names}; see the tool's input schema in tools/list."


class PlainToolErrors(MCPServer):
    """``MCPServer`` whose tool-call failures are one sentence without the caller's input (see module doc)."""

    async def call_tool(self, name: str, arguments: dict[str, Any], context: Any = None) -> Any:
        try:
            return await super().call_tool(name, arguments, context)
        except UnexpectedToolError:
            raise  # already says only "Error executing tool <name>", for a tool that exists
        except ToolError as exc:
            if isinstance(exc.__cause__, ValidationError):
                raise ToolError(argument_error_text(name, exc.__cause__)) from exc.__cause__
            if self._tool_manager.get_tool(name) is None:
                raise ToolError(UNKNOWN_TOOL) from exc
            raise


class PlainMethodErrors:
    """SDK server middleware: method errors keep their code, not the input.

    "Method not found" loses the method name, an unknown resource its URI, an unknown prompt its
    name (the SDK raises a bare ``ValueError`` for that, answered with its text and, in the stateless
    era, logged as an internal error with a traceback).
    """

    async def __call__(self, ctx: Any, call_next: Callable[[Any], Awaitable[Any]]) -> Any:
        try:
            return await call_next(ctx)
        except MCPError as exc:
            if exc.error.code == METHOD_NOT_FOUND:
                raise MCPError(code=METHOD_NOT_FOUND, message="Method not found") from None
            if exc.error.code == INVALID_PARAMS and ctx.method.startswith("resources/"):
                raise MCPError(code=INVALID_PARAMS, message="There is no resource at that URI.") from None
            raise
        except ValueError as exc:
            if ctx.method == "prompts/get" and not isinstance(exc, ValidationError):
                raise MCPError(code=INVALID_PARAMS, message=UNKNOWN_PROMPT) from None
            raise  # pydantic's ValidationError is the SDK's own -32602, without the input
