"""Raw JSON-RPC to a running ``weft-mcp serve`` (``harness.processes.ServeProcess``), as a plain script would."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from typing import Any

import httpx

JSON_HEADERS = {"Content-Type": "application/json", "Accept": "application/json, text/event-stream"}


def tool_call_message(
    name: str,
    arguments: Mapping[str, Any] | None = None,
    *,
    meta: Mapping[str, Any] | None = None,
    envelope_meta: Mapping[str, Any] | None = None,
    request_id: int = 1,
) -> dict[str, Any]:
    params: dict[str, Any] = {"name": name, "arguments": dict(arguments or {})}
    if meta is not None:
        params["_meta"] = dict(meta)
    message: dict[str, Any] = {"jsonrpc": "2.0", "id": request_id, "method": "tools/call", "params": params}
    if envelope_meta is not None:
        message["_meta"] = dict(envelope_meta)
    return message


async def _burst(urls: Sequence[str], session_id: str, product_id: str, count: int, offset: int) -> list[bool]:
    async with httpx.AsyncClient(timeout=20.0) as client:

        async def one(index: int) -> bool:
            url = urls[(index + offset) % len(urls)]
            message = tool_call_message(
                "add_to_cart",
                {"product_id": product_id, "quantity": 1},
                meta={"sessionId": session_id},
                request_id=index,
            )
            response = await client.post(url, json=message, headers=JSON_HEADERS)
            if response.status_code != 200:
                return False
            return not response.json()["result"].get("isError", False)

        return list(await asyncio.gather(*(one(i) for i in range(count))))


def add_burst(urls: Sequence[str], session_id: str, product_id: str, count: int, offset: int = 0) -> list[bool]:
    """``count`` concurrent ``add_to_cart`` quantity 1 calls, alternating over ``urls``; for a client OS process."""
    return asyncio.run(_burst(urls, session_id, product_id, count, offset))


# ---------------------------------------------------------------- many adds, with what each one got back

AddCall = tuple[str, str]  # (session id, product id); each call adds quantity 1


async def _add_calls(urls: Sequence[str], calls: Sequence[AddCall], tasks: int, offset: int) -> list[bool | None]:
    """``tasks`` concurrent tasks share ``calls``; each outcome is True (acknowledged: the answer showed
    the add), False (an ``isError`` answer) or None (no answer: dropped connection, 5xx, timeout)."""
    outcomes: list[bool | None] = [None] * len(calls)
    queue = list(enumerate(calls))
    queue.reverse()
    async with httpx.AsyncClient(timeout=10.0) as client:

        async def task() -> None:
            while queue:
                index, (session_id, product_id) = queue.pop()
                message = tool_call_message(
                    "add_to_cart",
                    {"product_id": product_id, "quantity": 1},
                    meta={"sessionId": session_id},
                    request_id=index,
                )
                try:
                    response = await client.post(urls[(index + offset) % len(urls)], json=message, headers=JSON_HEADERS)
                except httpx.HTTPError:
                    continue
                if response.status_code == 200:
                    outcomes[index] = not response.json()["result"].get("isError", False)

        await asyncio.gather(*(task() for _ in range(tasks)))
    return outcomes


def add_calls(urls: Sequence[str], calls: Sequence[AddCall], tasks: int, offset: int = 0) -> list[bool | None]:
    """Run ``calls`` (one ``add_to_cart`` quantity 1 each) on ``tasks`` concurrent tasks, alternating over
    ``urls``; callable in a client OS process. See ``_add_calls`` for the outcomes."""
    return asyncio.run(_add_calls(urls, calls, tasks, offset))


def call_tool(
    url: str, name: str, arguments: Mapping[str, Any] | None = None, *, session: str, timeout: float = 10.0
) -> dict[str, Any]:
    """One raw JSON-RPC ``tools/call`` to ``url`` (an ``/mcp`` URL) for conversation ``session``; the result."""
    message = tool_call_message(name, arguments, meta={"sessionId": session})
    response = httpx.post(url, json=message, headers=JSON_HEADERS, timeout=timeout)
    response.raise_for_status()
    return response.json()["result"]
