"""The size of ``tools/list``: every assistant reads it (often on every turn), so its bytes are tokens paid."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from pathlib import Path

from mcp import Client

from service.carts import CartStore
from service.catalog import load_catalog
from service.config import Settings
from service.tools import Shop, create_server
from service.widget_views import WIDGETS_DIR, load_widget_views

BYTES_PER_TOKEN = 4  # the usual estimate for English and JSON; no tokenizer is installed here


@dataclass(frozen=True)
class ToolListSize:
    tools: int
    total_bytes: int  # the tools/list result as compact JSON, as it goes on the wire
    output_schema_bytes: int  # of which the outputSchemas
    widget_meta_bytes: int  # of which the tools' _meta (the widgets; 0 when no views are installed)
    instructions_bytes: int  # the server's instructions (sent once, in initialize)

    @property
    def tokens(self) -> int:
        return round(self.total_bytes / BYTES_PER_TOKEN)


def compact(value: object) -> int:
    return len(json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode())


async def measure(widgets_dir: Path = WIDGETS_DIR) -> ToolListSize:
    """As deployed by default: the debug tool registered, and the widgets' ``_meta`` when the views are installed."""
    settings = Settings(_env_file=None)
    catalog = load_catalog(None)
    views = load_widget_views(widgets_dir, catalog)
    carts = CartStore.from_settings(settings)
    try:
        async with Client(create_server(Shop(catalog=catalog, carts=carts, settings=settings), views=views)) as client:
            listed = await client.list_tools()
            instructions = client.instructions or ""
    finally:
        await carts.aclose()
    wire = listed.model_dump(mode="json", by_alias=True, exclude_none=True)
    schemas = sum(compact(tool["outputSchema"]) for tool in wire["tools"] if "outputSchema" in tool)
    metas = sum(compact(tool["_meta"]) for tool in wire["tools"] if tool.get("_meta"))
    return ToolListSize(len(wire["tools"]), compact(wire), schemas, metas, len(instructions.encode()))


def run_tool_list() -> ToolListSize:
    return asyncio.run(measure())
