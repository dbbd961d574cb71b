"""Every answer matches the outputSchema its tool publishes: generated calls (good and bad arguments, sessions,
cart_ids, transfer codes, idempotency keys) through the SDK's in-process client, each structuredContent checked
with jsonschema (Draft 2020-12) against tools/list, closed so an undeclared field fails too."""

from __future__ import annotations

import asyncio
import copy
import json
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator, FormatChecker
from mcp import Client

from service.carts import CartStore
from service.catalog import load_catalog
from service.config import Settings
from service.output_schemas import OUTPUT_SCHEMAS
from service.tools import Shop, create_server

CATALOG = load_catalog(None)
PRODUCTS = [p.id for p in CATALOG.stores["demo-market"].products]
PRICED = [p.id for p in CATALOG.stores["demo-market"].products if p.is_purchasable][:3]  # as many as a cart holds lines
UNPRICED = next(p.id for p in CATALOG.stores["demo-market"].products if not p.is_purchasable)
# replaced by what earlier answers gave: the latest cart_id, transfer code, and product added
LATEST_CART, LATEST_CODE, LATEST_ADDED = "<latest cart_id>", "<latest code>", "<latest added>"
VALIDATED: dict[str, int] = {}  # successful answers validated, per tool, over every example
CALLS = {"sent": 0, "errors": 0}


def closed(schema: Any) -> Any:
    """``schema`` with every object that lists its properties closed to others."""
    if isinstance(schema, dict):
        out = {key: closed(value) for key, value in schema.items()}
        if "properties" in out and "additionalProperties" not in out:
            out["additionalProperties"] = False
        return out
    if isinstance(schema, list):
        return [closed(value) for value in schema]
    return schema


anything = st.one_of(st.none(), st.booleans(), st.integers(-3, 200), st.floats(allow_nan=False), st.text(max_size=8))
bad_product = st.sampled_from([UNPRICED, "demo-market:i0", "nope", "x:" + "y" * 250])
bad_cart_id = st.sampled_from(["wc_bogus", "", "x" * 300])


class Arg:
    """One argument: values a careful caller sends, and everything else; ``required`` ones are always sent on a
    careful call."""

    def __init__(self, good: st.SearchStrategy[Any], bad: st.SearchStrategy[Any], required: bool = False) -> None:
        self.good, self.any, self.required = good, st.one_of(good, bad, anything), required


IN_CART = Arg(st.sampled_from([LATEST_ADDED, LATEST_ADDED, *PRICED]), bad_product, required=True)
CART_ID = Arg(st.sampled_from([None, LATEST_CART]), bad_cart_id)
ARGUMENTS: dict[str, dict[str, Arg]] = {
    "list_stores": {},
    "search_products": {
        "search": Arg(
            st.sampled_from(["", "oats", "milk tahini", "zzz"]), st.sampled_from(["a" * 201, "a b c d e f g h i j k"])
        ),
        "category": Arg(
            st.sampled_from([None, CATALOG.stores["demo-market"].products[0].category, "nothing"]), st.just("c" * 201)
        ),
        "store": Arg(st.sampled_from([None, "demo-market"]), st.just("nope")),
        "page": Arg(st.integers(1, 3), st.sampled_from([0, 12, 2.5])),
        "page_size": Arg(st.integers(1, 50), st.sampled_from([0, 51, "many"])),
        "cart_id": CART_ID,
    },
    "add_to_cart": {
        "product_id": Arg(st.sampled_from(PRICED), bad_product, required=True),
        "quantity": Arg(st.integers(1, 5), st.sampled_from([0, 6, 2.5, "3", True])),
        "cart_id": CART_ID,
    },
    "update_cart_item": {
        "product_id": IN_CART,
        "quantity": Arg(st.integers(0, 5), st.sampled_from([-1, 6, 2.5, True]), required=True),
        "cart_id": CART_ID,
    },
    "remove_from_cart": {"product_id": IN_CART, "cart_id": CART_ID},
    "view_cart": {"cart_id": CART_ID},
    "clear_cart": {"cart_id": CART_ID},
    "share_cart": {"cart_id": CART_ID},
    "claim_cart": {
        "code": Arg(st.sampled_from([LATEST_CODE, "BCDF-GHJK"]), st.sampled_from(["!!", "bc df", "x" * 100])),
        "from_cart_id": Arg(st.just(LATEST_CART), bad_cart_id),
        "mode": Arg(st.sampled_from(["merge", "replace"]), st.just("other")),
        "cart_id": CART_ID,
    },
    "checkout_link": {"cart_id": CART_ID},
    "debug_session": {"cart_id": CART_ID},
}
assert set(ARGUMENTS) == set(OUTPUT_SCHEMAS)


@st.composite
def calls(draw: st.DrawFn) -> tuple[str, dict[str, Any], dict[str, Any] | None]:
    """One call: a tool, its arguments (a careful call sends good values and every required one; a careless one
    may leave any out or send any JSON value), and its _meta (a conversation id, an idempotency key)."""
    tool = draw(st.sampled_from(sorted(ARGUMENTS)))
    careful = draw(st.integers(0, 2)) > 0
    arguments = {}
    for name, arg in ARGUMENTS[tool].items():
        if (careful and arg.required) or draw(st.booleans()):
            arguments[name] = draw(arg.good if careful else arg.any)
    if tool == "claim_cart" and careful and ("code" in arguments) == ("from_cart_id" in arguments):
        arguments.pop("from_cart_id", None)
        arguments["code"] = LATEST_CODE
    meta: dict[str, Any] = {}
    session = draw(st.sampled_from([None, "chat-a", "chat-b"]))
    if session is not None:
        meta["sessionId"] = session
    if draw(st.integers(0, 3)) == 0:
        meta["idempotency-key"] = draw(st.sampled_from(["k1", "k2"]))
    return tool, arguments, meta or None


async def run_calls(script: list[tuple[str, dict[str, Any], dict[str, Any] | None]]) -> None:
    settings_ = Settings(max_quantity=5, max_cart_lines=3, _env_file=None)
    carts = CartStore.from_settings(settings_)
    shop = Shop(catalog=CATALOG, carts=carts, settings=settings_)
    latest: dict[str, Any] = {LATEST_CART: "wc_none", LATEST_CODE: "BCDF-GHJK", LATEST_ADDED: PRICED[0]}
    try:
        async with Client(create_server(shop)) as client:
            listed = {tool.name: tool for tool in (await client.list_tools()).tools}
            validators = {
                name: Draft202012Validator(closed(tool.output_schema), format_checker=FormatChecker())
                for name, tool in listed.items()
            }
            assert set(validators) == set(OUTPUT_SCHEMAS)
            # every script starts from a cart holding a line, so changes and shares can succeed
            seed = ("add_to_cart", {"product_id": PRICED[0]}, {"sessionId": "chat-a"})
            for step, (tool, arguments, meta) in enumerate([seed, *script]):
                sent = {
                    name: latest.get(value, value) if isinstance(value, str) else value
                    for name, value in arguments.items()
                }
                result = await client.call_tool(tool, sent, meta=meta)
                counted = step > 0  # the seed is not a generated call
                CALLS["sent"] += counted
                text = result.content[0].text
                if result.is_error:
                    CALLS["errors"] += counted
                    assert result.structured_content is None, text
                    assert text and "\n" not in text and "Traceback" not in text, text
                    continue
                errors = sorted(validators[tool].iter_errors(result.structured_content), key=str)
                assert not errors, f"{tool}({json.dumps(sent, default=str)}): {errors[0]}"
                VALIDATED[tool] = VALIDATED.get(tool, 0) + counted
                data = result.structured_content
                if isinstance(data.get("cart_id"), str):
                    latest[LATEST_CART] = data["cart_id"]
                if tool == "add_to_cart":
                    latest[LATEST_ADDED] = sent["product_id"]
                if tool == "share_cart":
                    latest[LATEST_CODE] = data["code"]
    finally:
        await carts.aclose()


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(calls(), min_size=1, max_size=25))
def test_every_answer_matches_its_output_schema(
    script: list[tuple[str, dict[str, Any], dict[str, Any] | None]],
) -> None:
    asyncio.run(run_calls(script))


HAPPY = [
    ("list_stores", {}, None),
    ("search_products", {"search": "oats"}, None),
    ("add_to_cart", {"product_id": PRICED[0], "quantity": 2}, None),
    ("update_cart_item", {"product_id": LATEST_ADDED, "quantity": 3, "cart_id": LATEST_CART}, None),
    ("add_to_cart", {"product_id": PRICED[1], "cart_id": LATEST_CART}, None),
    ("remove_from_cart", {"product_id": PRICED[1], "cart_id": LATEST_CART}, None),
    ("view_cart", {"cart_id": LATEST_CART}, None),
    ("checkout_link", {"cart_id": LATEST_CART}, None),
    ("share_cart", {"cart_id": LATEST_CART}, None),
    ("claim_cart", {"code": LATEST_CODE}, {"sessionId": "chat-b"}),
    ("clear_cart", {}, {"sessionId": "chat-b"}),
    ("debug_session", {}, {"sessionId": "chat-b"}),
]


def test_every_tool_answers_within_its_schema() -> None:
    """One successful answer of every tool (so no schema goes unexercised), then the count of answers validated in
    this run, generated ones included, printed for the record."""
    before = dict(VALIDATED)
    asyncio.run(run_calls(HAPPY))
    assert {tool for tool in VALIDATED if VALIDATED[tool] > before.get(tool, 0)} == set(OUTPUT_SCHEMAS)
    print(
        f"\nvalidated {sum(VALIDATED.values())} successful answers against their outputSchema of {CALLS['sent']} calls "
        f"({CALLS['errors']} isError, no structuredContent): {VALIDATED}"
    )


def test_published_schemas_are_valid_2020_12() -> None:
    for name, schema in OUTPUT_SCHEMAS.items():
        Draft202012Validator.check_schema(schema)
        assert schema["type"] == "object", name
        assert copy.deepcopy(schema) == schema
