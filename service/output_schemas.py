"""The JSON Schema of every tool's ``structuredContent`` (the shapes ``service.answers`` builds), published as
each tool's ``outputSchema`` so assistants and hosts know what comes back.

The schemas are written out by hand (not derived) so they stay short in ``tools/list`` and say exactly what
DESIGN.md promises. They leave objects open (no ``additionalProperties: false``): a field added later must not
break a client that validates. The property test (tests/test_output_schemas.py) closes them to prove they
name every field the service sends. Error results (``isError``) carry no ``structuredContent`` and no schema
applies to them: the SDK validates only successful results.
"""

from __future__ import annotations

import copy
from typing import Any

from pydantic import GetJsonSchemaHandler, RootModel
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema

MONEY = {"type": "string", "pattern": r"^-?[0-9]+\.[0-9]{2}$"}  # exact money: a decimal string, two places
NULLABLE_STRING = {"type": ["string", "null"]}
COUNT = {"type": "integer", "minimum": 0}
CART_ID = {
    "type": ["string", "null"],
    "description": "Pass as cart_id in later calls.",
}
NAMES = {"type": "array", "items": {"type": "string"}}


def obj(properties: dict[str, Any], *optional: str) -> dict[str, Any]:
    """An object with ``properties``, all required but ``optional``."""
    return {
        "type": "object",
        "properties": properties,
        "required": [name for name in properties if name not in optional],
    }


CLAIMED = obj(
    {"lines": COUNT, "capped": NAMES, "skipped": NAMES},
)

STORES = obj(
    {
        "stores": {
            "type": "array",
            "items": obj(
                {
                    "id": {"type": "string"},
                    "name": {"type": "string"},
                    "currency": {"type": "string"},
                    "product_count": COUNT,
                }
            ),
        }
    }
)

SEARCH = obj(
    {
        "cart_id": CART_ID,
        "products": {
            "type": "array",
            "items": obj(
                {
                    "id": {"type": "string"},
                    "name": {"type": "string"},
                    "price": MONEY | {"type": ["string", "null"]},
                    "category": {"type": "string"},
                    "image": NULLABLE_STRING,
                    "url": NULLABLE_STRING,
                    "is_purchasable": {"type": "boolean"},
                    "currency": {"type": "string"},  # the store's, for formatting price
                }
            ),
        },
        "pagination": obj(
            {
                "currentPage": {"type": "integer", "minimum": 1},
                "totalPages": COUNT,
                "pageSize": {"type": "integer", "minimum": 1},
                "totalProducts": COUNT,
                "hasNext": {"type": "boolean"},
                "hasPrev": {"type": "boolean"},
            }
        ),
        "filters": obj({"search": {"type": "string"}, "category": NULLABLE_STRING, "store": NULLABLE_STRING}),
    }
)

CART = obj(
    {
        "cart_id": CART_ID,
        "session": obj(
            {
                "id": NULLABLE_STRING,
                "source": {"type": "string"},
                "shared": {"type": "boolean"},
            }
        ),
        "items": {
            "type": "array",
            "items": obj(
                {
                    "id": {"type": "string"},
                    "name": {"type": "string"},
                    "price": MONEY,
                    "quantity": {"type": "integer", "minimum": 1},
                    "line_total": MONEY,
                    "currency": {"type": "string"},  # the store's, for formatting price and line_total
                    "image": NULLABLE_STRING,
                    "url": NULLABLE_STRING,
                }
            ),
        },
        "item_count": COUNT,
        "total": MONEY | {"type": ["string", "null"]},  # null: several currencies, see totals
        "currency": NULLABLE_STRING,
        "damaged_lines": COUNT,
        "totals": {"type": "object", "additionalProperties": MONEY},
        "replayed": {"type": "boolean"},
        "claimed": CLAIMED,
    },
    "totals",
    "replayed",
    "claimed",
)

SHARE = obj(
    {
        "code": {"type": "string"},
        "expires_at": {"type": "string", "format": "date-time"},
        "cart_id": CART_ID,
        "item_count": COUNT,
        "claimed": CLAIMED,
    },
    "claimed",
)

CHECKOUT = obj(
    {
        "cart_id": CART_ID,
        "links": {
            "type": "array",
            "items": obj(
                {
                    "store": {"type": "string"},
                    "url": NULLABLE_STRING,
                    "items": {
                        "type": "array",
                        "items": obj(
                            {
                                "id": {"type": "string"},
                                "quantity": {"type": "integer", "minimum": 1},
                                "url": NULLABLE_STRING,
                            },
                            "url",
                        ),
                    },
                }
            ),
        },
        "note": {"type": "string"},
        "claimed": CLAIMED,
    },
    "claimed",
)

DEBUG = obj(
    {
        "session_id": NULLABLE_STRING,
        "session_source": {"type": "string"},
        "cart_id": CART_ID,
        "items_in_cart": COUNT,
        "active_sessions": COUNT,
        "counted_at": {"type": "string", "format": "date-time"},
        "counted_seconds_ago": {"type": "number", "minimum": 0},
        "storage": {"type": "string"},
        "shared_fallback_cart": {"type": "boolean"},
    }
)

# The structuredContent schema of each tool, by tool name.
OUTPUT_SCHEMAS: dict[str, dict[str, Any]] = {
    "list_stores": STORES,
    "search_products": SEARCH,
    "add_to_cart": CART,
    "update_cart_item": CART,
    "remove_from_cart": CART,
    "view_cart": CART,
    "clear_cart": CART,
    "share_cart": SHARE,
    "claim_cart": CART | {"required": [*CART["required"], "claimed"]},
    "checkout_link": CHECKOUT,
    "debug_session": DEBUG,
}


def output_type(tool: str) -> type[RootModel[dict[str, Any]]]:
    """A type to put in ``Annotated[CallToolResult, output_type(tool)]``: the SDK publishes its JSON schema (ours,
    as written) as the tool's ``outputSchema`` and checks that a successful result's structuredContent is an
    object; error results pass through unchecked."""
    schema = OUTPUT_SCHEMAS[tool]

    class Output(RootModel[dict[str, Any]]):
        @classmethod
        def __get_pydantic_json_schema__(
            cls, core_schema: CoreSchema, handler: GetJsonSchemaHandler
        ) -> JsonSchemaValue:
            return copy.deepcopy(schema)

    Output.__name__ = Output.__qualname__ = f"{tool}_output"
    return Output
