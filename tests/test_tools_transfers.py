"""share_cart and claim_cart through the SDK's in-process client: answers, merge rules, bad input, idempotency."""

from __future__ import annotations

import logging
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from decimal import Decimal
from typing import Any

import pytest
import pytest_asyncio
from mcp import Client

from service.cart_ids import INVALID_CART_ID
from service.carts import CartStore
from service.config import Settings
from service.idempotency import BAD_KEY, CONFLICT
from service.tools import Shop, create_server
from service.transfer_codes import ALPHABET
from tests.test_tools import CATALOG, OATS, TAHINI, UNPRICED
from tests.test_tools_cart_ids import Caller, everything, quantities

WRONG_CODE = "That transfer code is wrong, used or expired; ask for a new one with share_cart."
SELF_CLAIM = "A cart cannot claim itself; use the code or cart_id of another chat's cart."
EMPTY = "An empty cart cannot be shared; add products to it first."
CODE_SHAPE = re.compile(r"^[BCDFGHJKLMNPQRSTVWXZ]{4}-[BCDFGHJKLMNPQRSTVWXZ]{4}$")
PHONE, LAPTOP = {"sessionId": "phone-chat"}, {"sessionId": "laptop-chat"}


@pytest_asyncio.fixture
async def shop() -> AsyncIterator[Shop]:
    settings = Settings(max_quantity=5, max_cart_lines=3, claim_failures_per_caller=3, _env_file=None)
    carts = CartStore.from_settings(settings)
    yield Shop(catalog=CATALOG, carts=carts, settings=settings)
    await carts.aclose()


@asynccontextmanager
async def connected(shop: Shop) -> AsyncIterator[Caller]:
    async with Client(create_server(shop)) as client:
        yield Caller(client)


async def shared_code(caller: Caller, meta: dict[str, Any]) -> str:
    return str((await caller.ok("share_cart", meta))["code"])


async def test_declared_arguments(shop: Shop) -> None:
    async with connected(shop) as caller:
        tools = {tool.name: tool for tool in (await caller.client.list_tools()).tools}
        claim = tools["claim_cart"].input_schema
        assert set(claim["properties"]) == {"code", "from_cart_id", "mode", "cart_id"}
        assert claim["properties"]["mode"]["enum"] == ["merge", "replace"] and not claim.get("required")
        assert set(tools["share_cart"].input_schema["properties"]) == {"cart_id"}
        for name in ("share_cart", "claim_cart"):
            assert "Pass `cart_id`" in (tools[name].description or "")
        assert "10 minutes" in (tools["share_cart"].description or "")


async def test_share_answers_a_code_for_ten_minutes(shop: Shop) -> None:
    async with connected(shop) as caller:
        await caller.ok("add_to_cart", PHONE, product_id=OATS, quantity=2)
        result = await caller.call("share_cart", PHONE)
        shared = dict(result.structured_content)
        assert set(shared) == {"code", "expires_at", "cart_id", "item_count"}
        assert CODE_SHAPE.match(shared["code"]) and set(shared["code"]) - {"-"} <= set(ALPHABET)
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", shared["expires_at"])
        assert shared["item_count"] == 2 and shared["cart_id"].startswith("wc_")
        text = result.content[0].text
        assert shared["code"] in text and "within 10 minutes, once" in text
        assert text.endswith(f"cart_id: {shared['cart_id']} (pass it as cart_id in later calls)")


async def test_claim_by_code_in_another_chat_moves_the_lines(shop: Shop) -> None:
    async with connected(shop) as caller:
        await caller.ok("add_to_cart", PHONE, product_id=OATS, quantity=4)
        await caller.ok("add_to_cart", PHONE, product_id=TAHINI, quantity=1)
        await caller.ok("add_to_cart", LAPTOP, product_id=OATS, quantity=3)
        code = await shared_code(caller, PHONE)
        typed = code.lower().replace("-", " ")  # as a person might type it
        claimed = await caller.ok("claim_cart", LAPTOP, code=typed)
        assert quantities(claimed) == {OATS: 5, TAHINI: 1}  # 4 + 3 capped at 5
        assert claimed["claimed"] == {"lines": 2, "capped": [OATS], "skipped": []}
        assert claimed["cart_id"].startswith("wc_") and "replayed" not in claimed
        assert (await caller.ok("view_cart", PHONE))["items"] == []
        assert await caller.error("claim_cart", {"sessionId": "third"}, code=code) == WRONG_CODE  # used once


async def test_claim_replace_by_cart_id_and_skips_what_cannot_be_bought(shop: Shop) -> None:
    async with connected(shop) as caller:
        source = await caller.ok("add_to_cart", PHONE, product_id=OATS, quantity=1)
        await shop.carts.add("phone-chat", UNPRICED, 1, "Gone now", Decimal("3.00"))  # its price is gone since
        await caller.ok("add_to_cart", LAPTOP, product_id=TAHINI, quantity=2)
        result = await caller.call("claim_cart", LAPTOP, from_cart_id=source["cart_id"], mode="replace")
        claimed = dict(result.structured_content)
        assert quantities(claimed) == {OATS: 1}
        assert claimed["claimed"] == {"lines": 1, "capped": [], "skipped": [UNPRICED]}
        assert result.content[0].text.startswith(
            f"Claimed 1 line(s) into this cart. Left out (no longer sold, no price, or no room): {UNPRICED}."
        )
        assert (await caller.ok("view_cart", PHONE))["items"] == []  # the source is left empty


async def test_claim_without_a_cart_mints_one(shop: Shop) -> None:
    async with connected(shop) as caller:
        await caller.ok("add_to_cart", PHONE, product_id=OATS, quantity=2)
        code = await shared_code(caller, PHONE)
        result = await caller.call("claim_cart", None, code=code)
        claimed = dict(result.structured_content)
        assert claimed["session"]["source"] == "minted" and quantities(claimed) == {OATS: 2}
        assert result.content[0].text.endswith(f"cart_id: {claimed['cart_id']} (pass it as cart_id in later calls)")
        assert quantities(await caller.ok("view_cart", None, cart_id=claimed["cart_id"])) == {OATS: 2}


@pytest.mark.parametrize(
    ("arguments", "sentence"),
    [
        ({"code": "BCDF-GHJK", "mode": "swap"}, 'mode must be "merge"'),
        ({"code": "BCDF-GHJK", "mode": 1}, 'mode must be "merge"'),
        ({"code": "BCDF-GHJK", "from_cart_id": "wc_x"}, "Send either code"),
        ({}, "Send either code"),
        ({"mode": "merge"}, "Send either code"),
        ({"code": "BCDA-EIOU"}, "A transfer code is 8 letters like BCDF-GHJK"),
        ({"code": "12345678"}, "A transfer code is 8 letters like BCDF-GHJK"),
        ({"code": ["BCDFGHJK"]}, "A transfer code is 8 letters like BCDF-GHJK"),
        ({"from_cart_id": "wc_rnot-a-real-cart-id-at-all-xxxxxxxxxxxxxxx"}, INVALID_CART_ID),
        ({"from_cart_id": 42}, INVALID_CART_ID),
    ],
)
async def test_bad_claims_are_one_sentence_and_change_nothing(
    shop: Shop, arguments: dict[str, Any], sentence: str
) -> None:
    async with connected(shop) as caller:
        await caller.ok("add_to_cart", PHONE, product_id=OATS, quantity=1)
        await shared_code(caller, PHONE)
        before = await everything(shop)
        text = await caller.error("claim_cart", LAPTOP, **arguments)
        assert text.startswith(sentence) and text.count(". ") == 0 and "\n" not in text
        assert await everything(shop) == before  # not even a failure counted


async def test_self_claims_and_empty_shares_are_refused_and_change_nothing(shop: Shop) -> None:
    async with connected(shop) as caller:
        assert await caller.error("share_cart", PHONE) == EMPTY
        assert await caller.error("share_cart", None) == EMPTY  # fallback mint, no cart named
        mine = await caller.ok("add_to_cart", PHONE, product_id=OATS, quantity=1)
        code = await shared_code(caller, PHONE)
        before = await everything(shop)
        assert await caller.error("claim_cart", PHONE, code=code) == SELF_CLAIM
        assert (
            await caller.error("claim_cart", None, from_cart_id=mine["cart_id"], cart_id=mine["cart_id"]) == SELF_CLAIM
        )
        assert await everything(shop) == before
        assert quantities(await caller.ok("claim_cart", LAPTOP, code=code)) == {OATS: 1}  # the code still works


async def test_wrong_codes_are_counted_then_refused(shop: Shop) -> None:
    async with connected(shop) as caller:
        await caller.ok("add_to_cart", PHONE, product_id=OATS, quantity=1)
        code = await shared_code(caller, PHONE)
        for _ in range(3):  # claim_failures_per_caller=3
            assert await caller.error("claim_cart", LAPTOP, code="BCDF-GHJK") == WRONG_CODE
        refused = await caller.error("claim_cart", LAPTOP, code=code)
        assert refused == "Too many failed transfer-code claims; try again in 60 minutes."
        assert quantities(await caller.ok("view_cart", PHONE)) == {OATS: 1}
        assert quantities(
            await caller.ok("claim_cart", LAPTOP, from_cart_id=(await caller.ok("view_cart", PHONE))["cart_id"])
        ) == {OATS: 1}


async def test_a_claim_with_an_idempotency_key_is_replayed_and_a_reused_key_refused(shop: Shop) -> None:
    async with connected(shop) as caller:
        await caller.ok("add_to_cart", PHONE, product_id=OATS, quantity=2)
        code = await shared_code(caller, PHONE)
        keyed = {**LAPTOP, "idempotency-key": "claim-1"}
        first = await caller.ok("claim_cart", keyed, code=code)
        await caller.ok("add_to_cart", PHONE, product_id=TAHINI, quantity=1)
        again = await caller.ok("claim_cart", keyed, code=code)
        assert again["replayed"] is True and again["claimed"] == first["claimed"] and quantities(again) == {OATS: 2}
        assert (
            await caller.text("claim_cart", keyed, code=code.lower()) != ""
        )  # the same code, typed otherwise: a retry
        assert await caller.error("claim_cart", keyed, code=code, mode="replace") == CONFLICT
        assert await caller.error("claim_cart", {**LAPTOP, "idempotency-key": " "}, code=code) == BAD_KEY
        assert quantities(await caller.ok("view_cart", PHONE)) == {TAHINI: 1}


async def test_a_reused_key_with_another_code_leaves_that_code_live(shop: Shop) -> None:
    """The refusal of a reused key changes nothing: the other cart's fresh code still works afterwards."""
    tablet = {"sessionId": "tablet-chat"}
    async with connected(shop) as caller:
        await caller.ok("add_to_cart", PHONE, product_id=OATS, quantity=2)
        keyed = {**LAPTOP, "idempotency-key": "claim-once"}
        await caller.ok("claim_cart", keyed, code=await shared_code(caller, PHONE))
        await caller.ok("add_to_cart", tablet, product_id=TAHINI, quantity=1)
        code = await shared_code(caller, tablet)
        before = await everything(shop)
        assert await caller.error("claim_cart", keyed, code=code) == CONFLICT
        assert await everything(shop) == before
        claimed = await caller.ok("claim_cart", LAPTOP, code=code)
        assert claimed["claimed"]["lines"] == 1 and quantities(claimed) == {OATS: 2, TAHINI: 1}


async def test_codes_never_reach_the_logs(shop: Shop, caplog: pytest.LogCaptureFixture) -> None:
    async with connected(shop) as caller:
        caplog.set_level(logging.DEBUG)
        await caller.ok("add_to_cart", PHONE, product_id=OATS, quantity=1)
        code = await shared_code(caller, PHONE)
        await caller.error("claim_cart", LAPTOP, code="BCDF-GHJK")
        await caller.ok("claim_cart", LAPTOP, code=code)
        logged = "\n".join(record.getMessage() for record in caplog.records)
        assert logged and code not in logged and code.replace("-", "") not in logged and "BCDF" not in logged
