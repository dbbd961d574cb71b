"""Signed-in and anonymous shoppers through the SDK's in-process client: the account cart, per-conversation carts,
cart_ids bound to the shopper, the sign-in hint of optional mode, and which cart each call uses.

A signed-in caller is the SDK's own auth context (the contextvar its ``AuthContextMiddleware`` sets over
HTTP), set around the in-process client; over HTTP the same is tested in ``test_signin_http``.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Any

import pytest
from mcp import Client
from mcp.server.auth.middleware.auth_context import auth_context_var
from mcp.server.auth.middleware.bearer_auth import AuthenticatedUser
from mcp.server.auth.provider import AccessToken

from service.answers import SIGN_IN_HINT
from service.cart_ids import INVALID_CART_ID, CartIds, account_key, owner_of_key, subject_tag
from service.carts import CartStore
from service.config import Settings
from service.sessions import ACCOUNT_SOURCE, Session, resolve_session, signed_in
from service.tools import Shop, create_server
from tests.test_tools import CATALOG, OATS, TAHINI, UNPRICED
from tests.test_tools_cart_ids import Caller, everything, quantities

ALICE, BOB = "alice@example.com", "bob@example.com"
TOKEN_ENV = {"auth_tokens_file": "/nonexistent/tokens"}  # only for settings: the in-process client has no HTTP


@contextmanager
def as_subject(subject: str | None) -> Iterator[None]:
    """Calls made inside run as ``subject`` (None: anonymous), as the SDK's auth middleware would set it."""
    if subject is None:
        yield
        return
    user = AuthenticatedUser(AccessToken(token="t", client_id="test", scopes=[], subject=subject))
    reset = auth_context_var.set(user)
    try:
        yield
    finally:
        auth_context_var.reset(reset)


@asynccontextmanager
async def shop_for(**options: Any) -> AsyncIterator[Shop]:
    settings = Settings(_env_file=None, **options)
    carts = CartStore.from_settings(settings)
    try:
        yield Shop(catalog=CATALOG, carts=carts, settings=settings)
    finally:
        await carts.aclose()


@asynccontextmanager
async def caller(shop: Shop, subject: str | None) -> AsyncIterator[Caller]:
    with as_subject(subject):
        async with Client(create_server(shop)) as client:
            yield Caller(client)


def chat(conversation: str) -> dict[str, str]:
    return {"sessionId": conversation}


# ---------------------------------------------------------------- settings


def test_auth_mode_defaults_follow_the_token_settings() -> None:
    assert Settings(_env_file=None).auth_mode == "off"
    assert Settings(_env_file=None, **TOKEN_ENV).auth_mode == "required"
    jwt = {"auth_jwks_url": "http://x/jwks", "auth_issuer": "https://i", "auth_audience": "http://x/mcp"}
    assert Settings(_env_file=None, **jwt).auth_mode == "required"
    assert Settings(_env_file=None, auth_mode="optional", **jwt).auth_mode == "optional"
    assert Settings(_env_file=None, auth_mode="off", **TOKEN_ENV).auth_mode == "off"
    assert Settings(_env_file=None).signed_in_carts == "account"


@pytest.mark.parametrize("mode", ["optional", "required"])
def test_sign_in_without_tokens_to_check_is_refused(mode: str) -> None:
    with pytest.raises(ValueError, match="WEFT_AUTH_MODE=" + mode):
        Settings(_env_file=None, auth_mode=mode)


def test_bad_mode_values_are_refused() -> None:
    with pytest.raises(ValueError):
        Settings(_env_file=None, auth_mode="sometimes", **TOKEN_ENV)
    with pytest.raises(ValueError):
        Settings(_env_file=None, signed_in_carts="device")


# ---------------------------------------------------------------- account cart_ids


def test_account_cart_id_opens_only_for_its_shopper() -> None:
    ids = CartIds(b"k" * 32)
    alice, bob = subject_tag(ALICE), subject_tag(BOB)
    cart_id = ids.issue(account_key(alice))
    assert cart_id.startswith("wc_A") and len(cart_id) == 26
    assert ids.open(cart_id, alice) == f"u-{alice}"
    for other in (bob, None):
        with pytest.raises(ValueError) as refused:
            ids.open(cart_id, other)
        assert str(refused.value) == INVALID_CART_ID
    for forged in ("wc_a" + cart_id[4:], "wc_AX" + cart_id[4:], cart_id[:-1] + "A", "wc_A"):
        with pytest.raises(ValueError, match="not valid here"):
            ids.open(forged, alice)
    assert owner_of_key(f"u-{alice}") == (alice, True)
    assert owner_of_key(f"u-{alice}.chat") == (alice, False)
    assert owner_of_key("chat") == (None, False)


def test_which_cart_a_signed_in_call_uses() -> None:
    """DESIGN "Which cart a call uses" for a signed-in shopper, both modes; merge sources are the shopper's own
    or anonymous keys, never another shopper's and never the shared fallback cart."""
    ids = CartIds(b"k" * 32)
    tag = subject_tag(ALICE)
    conversation = resolve_session({"sessionId": "chat-1"}, None, "mint")
    account = signed_in(conversation, tag, "account", ids)
    assert (account.key, account.source) == (f"u-{tag}", ACCOUNT_SOURCE)
    assert account.merge_from == (f"u-{tag}.chat-1", "chat-1")
    assert account.cart_id == ids.issue(f"u-{tag}")
    per_chat = signed_in(conversation, tag, "conversation", ids)
    assert (per_chat.key, per_chat.merge_from) == (f"u-{tag}.chat-1", ("chat-1",))

    shared = resolve_session(None, None, "default")
    assert signed_in(shared, tag, "account", ids).merge_from == ()
    assert signed_in(shared, tag, "conversation", ids).merge_from == ()
    assert signed_in(shared, tag, "conversation", ids).key == f"u-{tag}.default"
    minted = resolve_session(None, None, "mint", mints=True)
    assert signed_in(minted, tag, "account", ids).key == f"u-{tag}"
    assert signed_in(minted, tag, "conversation", ids).merge_from == ()
    nothing = resolve_session(None, None, "mint")
    assert signed_in(nothing, tag, "account", ids).key == f"u-{tag}"
    assert signed_in(nothing, tag, "conversation", ids).key is None

    # cart_ids: the account id is the account cart; an anonymous one is merged; the shopper's own bound one
    # is the cart itself in conversation mode and merged into the account cart in account mode.
    by_account = Session("x", "cart_id", f"u-{tag}", "x")
    assert signed_in(by_account, tag, "account", ids).key == f"u-{tag}"
    assert signed_in(by_account, tag, "conversation", ids).key == f"u-{tag}"
    guest = Session("x", "cart_id", "c-" + "a" * 32, "x")
    assert signed_in(guest, tag, "account", ids).merge_from == (f"u-{tag}.c-{'a' * 32}", "c-" + "a" * 32)
    bound = signed_in(guest, tag, "conversation", ids)
    assert (bound.key, bound.merge_from) == (f"u-{tag}.c-{'a' * 32}", ("c-" + "a" * 32,))
    assert bound.cart_id is not None and bound.cart_id.startswith("wc_C")
    own = Session("x", "cart_id", f"u-{tag}.chat-1", "x")
    assert signed_in(own, tag, "conversation", ids).key == f"u-{tag}.chat-1"
    assert signed_in(own, tag, "account", ids).merge_from == (f"u-{tag}.chat-1",)
    with pytest.raises(ValueError):
        signed_in(Session("x", "cart_id", f"u-{subject_tag(BOB)}", "x"), tag, "account", ids)


# ---------------------------------------------------------------- through the tools


async def test_account_cart_follows_the_shopper_into_every_conversation() -> None:
    async with shop_for(**TOKEN_ENV) as shop:
        async with caller(shop, ALICE) as alice:
            added = await alice.ok("add_to_cart", chat("phone"), product_id=OATS, quantity=2)
            assert added["cart_id"].startswith("wc_A") and added["session"]["source"] == "account"
            elsewhere = await alice.ok("view_cart", chat("laptop"))
            assert quantities(elsewhere) == {OATS: 2} and elsewhere["cart_id"] == added["cart_id"]
            no_chat = await alice.ok("add_to_cart", None, product_id=TAHINI)
            assert quantities(no_chat) == {OATS: 2, TAHINI: 1} and no_chat["cart_id"] == added["cart_id"]
            by_id = await alice.ok("view_cart", chat("tablet"), cart_id=added["cart_id"])
            assert quantities(by_id) == {OATS: 2, TAHINI: 1}
            searched = await alice.ok("search_products", None, search="oats")
            assert searched["cart_id"] == added["cart_id"]
        async with caller(shop, BOB) as bob:
            assert (await bob.ok("view_cart", chat("phone")))["items"] == []
            before = await everything(shop)
            for tool in ("view_cart", "add_to_cart", "clear_cart"):
                args = {"product_id": OATS} if tool == "add_to_cart" else {}
                assert await bob.error(tool, None, cart_id=added["cart_id"], **args) == INVALID_CART_ID
            assert await bob.error("search_products", None, search="", cart_id=added["cart_id"]) == INVALID_CART_ID
            assert await everything(shop) == before
        async with caller(shop, None) as anonymous:  # auth off in-process: the anonymous caller of any mode
            assert await anonymous.error("view_cart", None, cart_id=added["cart_id"]) == INVALID_CART_ID
        assert set(await everything(shop)) == {f"weft:cart:{{u-{subject_tag(ALICE)}}}"}  # bob only looked


async def test_conversation_mode_keeps_one_cart_per_conversation() -> None:
    async with shop_for(signed_in_carts="conversation", **TOKEN_ENV) as shop:
        async with caller(shop, ALICE) as alice:
            phone = await alice.ok("add_to_cart", chat("phone"), product_id=OATS)
            laptop = await alice.ok("view_cart", chat("laptop"))
            assert laptop["items"] == [] and phone["cart_id"] != laptop["cart_id"]
            assert phone["cart_id"].startswith("wc_R") and phone["session"]["source"] == "sessionId"
            assert quantities(await alice.ok("view_cart", chat("laptop"), cart_id=phone["cart_id"])) == {OATS: 1}
            minted = await alice.ok("add_to_cart", None, product_id=TAHINI)
            assert minted["cart_id"].startswith("wc_C") and quantities(minted) == {TAHINI: 1}
        async with caller(shop, BOB) as bob:
            assert await bob.error("view_cart", None, cart_id=phone["cart_id"]) == INVALID_CART_ID
            assert await bob.error("view_cart", None, cart_id=minted["cart_id"]) == INVALID_CART_ID
        tag = subject_tag(ALICE)
        keys = sorted(await everything(shop))
        assert keys[1] == f"weft:cart:{{u-{tag}.phone}}" and len(keys) == 2
        assert re.fullmatch(rf"weft:cart:\{{u-{tag}\.c-[0-9a-f]{{32}}\}}", keys[0]), keys


async def test_optional_mode_tells_anonymous_shoppers_once_per_answer() -> None:
    async with shop_for(auth_mode="optional", **TOKEN_ENV) as shop:
        async with caller(shop, None) as anonymous:
            await anonymous.ok("add_to_cart", chat("guest"), product_id=OATS)
            text = await anonymous.text("add_to_cart", chat("guest"), product_id=TAHINI)
            assert text.count(SIGN_IN_HINT) == 1 and text.endswith(SIGN_IN_HINT)
            assert (await anonymous.text("view_cart", chat("guest"))).count(SIGN_IN_HINT) == 1
            assert SIGN_IN_HINT not in await anonymous.text("search_products", chat("guest"), search="oats")
        async with caller(shop, ALICE) as alice:
            assert SIGN_IN_HINT not in await alice.text("view_cart", chat("guest"))
    for options in ({}, TOKEN_ENV):  # off, and required: nobody to tell
        async with shop_for(**options) as shop, caller(shop, None) as anonymous:
            assert SIGN_IN_HINT not in await anonymous.text("add_to_cart", chat("guest"), product_id=OATS)


# ---------------------------------------------------------------- signing in keeps the cart (merges)


def key_of(session_key: str) -> str:
    return f"weft:cart:{{{session_key}}}"


async def test_guest_cart_merges_once_on_sign_in_in_account_mode() -> None:
    async with shop_for(max_quantity=5, **TOKEN_ENV) as shop:
        tag = subject_tag(ALICE)
        async with caller(shop, ALICE) as alice:
            await alice.ok("add_to_cart", chat("phone"), product_id=OATS, quantity=4)
        async with caller(shop, None) as guest:
            before = await guest.ok("add_to_cart", chat("laptop"), product_id=OATS, quantity=3)
            await guest.ok("add_to_cart", chat("laptop"), product_id=TAHINI, quantity=1)
        async with caller(shop, ALICE) as alice:
            merged = await alice.call("view_cart", chat("laptop"))
            data = merged.structured_content
            assert data["claimed"] == {"lines": 2, "capped": [OATS], "skipped": []}
            assert quantities(data) == {OATS: 5, TAHINI: 1}
            assert merged.content[0].text.startswith("Signed in: 2 line(s)")
            again = await alice.ok("view_cart", chat("laptop"))
            assert "claimed" not in again and quantities(again) == {OATS: 5, TAHINI: 1}  # once
        assert set(await everything(shop)) >= {key_of(f"u-{tag}")}
        assert key_of("laptop") not in await everything(shop)  # the guest key is gone
        async with caller(shop, None) as guest:  # the conversation, signed out, sees an empty anonymous cart
            assert (await guest.ok("view_cart", chat("laptop")))["items"] == []
            assert (await guest.ok("view_cart", None, cart_id=before["cart_id"]))["items"] == []


async def test_guest_cart_id_merges_and_conversation_mode_merges_into_that_conversation() -> None:
    async with shop_for(signed_in_carts="conversation", **TOKEN_ENV) as shop:
        tag = subject_tag(ALICE)
        async with caller(shop, None) as guest:
            minted = await guest.ok("add_to_cart", None, product_id=OATS, quantity=2)
            await guest.ok("add_to_cart", chat("chat-1"), product_id=TAHINI)
        async with caller(shop, ALICE) as alice:
            by_chat = await alice.ok("view_cart", chat("chat-1"))
            assert by_chat["claimed"]["lines"] == 1 and by_chat["cart_id"].startswith("wc_R")
            by_id = await alice.ok("view_cart", None, cart_id=minted["cart_id"])
            assert by_id["claimed"]["lines"] == 1 and quantities(by_id) == {OATS: 2}
            assert by_id["cart_id"].startswith("wc_C") and by_id["cart_id"] != minted["cart_id"]
            assert quantities(await alice.ok("view_cart", None, cart_id=by_id["cart_id"])) == {OATS: 2}
        keys = set(await everything(shop))
        assert key_of(f"u-{tag}.chat-1") in keys and key_of("chat-1") not in keys
        async with caller(shop, BOB) as bob:  # the bound cart never goes back: bob and anonymous are refused
            assert await bob.error("view_cart", None, cart_id=by_id["cart_id"]) == INVALID_CART_ID
        async with caller(shop, None) as guest:
            assert await guest.error("view_cart", None, cart_id=by_id["cart_id"]) == INVALID_CART_ID
            assert (await guest.ok("view_cart", None, cart_id=minted["cart_id"]))["items"] == []


async def test_switching_conversation_to_account_keeps_every_cart() -> None:
    """An operator's switch: each per-conversation cart is merged into the account cart on first use."""
    async with shop_for(signed_in_carts="conversation", **TOKEN_ENV) as before:
        async with caller(before, ALICE) as alice:
            await alice.ok("add_to_cart", chat("chat-1"), product_id=OATS, quantity=2)
            second = await alice.ok("add_to_cart", chat("chat-2"), product_id=TAHINI, quantity=1)
        async with caller(before, BOB) as bob:
            await bob.ok("add_to_cart", chat("chat-1"), product_id=OATS, quantity=1)
        settings = Settings(_env_file=None, signed_in_carts="account", **TOKEN_ENV)
        after = Shop(catalog=CATALOG, carts=before.carts, settings=settings, secret=before.secret)  # same store
        tag = subject_tag(ALICE)
        async with caller(after, ALICE) as alice:
            first = await alice.ok("view_cart", chat("chat-1"))
            assert first["claimed"]["lines"] == 1 and quantities(first) == {OATS: 2}
            assert key_of(f"u-{tag}.chat-2") in await everything(after)  # not named yet: left as it is
            by_old_id = await alice.ok("view_cart", chat("chat-9"), cart_id=second["cart_id"])
            assert by_old_id["claimed"]["lines"] == 1 and quantities(by_old_id) == {OATS: 2, TAHINI: 1}
            assert by_old_id["cart_id"] == first["cart_id"] and first["cart_id"].startswith("wc_A")
        carts = {key for key in await everything(after) if key.startswith("weft:cart:")}
        assert carts == {key_of(f"u-{tag}"), key_of(f"u-{subject_tag(BOB)}.chat-1")}  # bob's cart untouched


async def test_a_merge_never_takes_another_shoppers_cart() -> None:
    async with shop_for(signed_in_carts="conversation", **TOKEN_ENV) as shop:
        async with caller(shop, ALICE) as alice:
            mine = await alice.ok("add_to_cart", chat("shared-chat"), product_id=OATS, quantity=3)
        async with caller(shop, BOB) as bob:
            seen = await bob.ok("view_cart", chat("shared-chat"))
            assert seen["items"] == [] and "claimed" not in seen
            assert await bob.error("claim_cart", None, from_cart_id=mine["cart_id"]) == INVALID_CART_ID
        async with caller(shop, ALICE) as alice:
            assert quantities(await alice.ok("view_cart", chat("shared-chat"))) == {OATS: 3}
        # The shared fallback cart is everyone's: signing in never takes it.
    async with shop_for(session_fallback="default", signed_in_carts="conversation", **TOKEN_ENV) as shop:
        async with caller(shop, None) as guest:
            await guest.ok("add_to_cart", None, product_id=OATS)
        async with caller(shop, ALICE) as alice:
            assert "claimed" not in await alice.ok("view_cart", None)
        assert key_of("default") in await everything(shop)


async def test_two_tabs_signing_in_at_once_merge_exactly_once() -> None:
    """Many calls of one shopper at once, each naming the guest conversation: the guest lines arrive once."""
    tabs = 12
    for round_ in range(10):
        async with shop_for(**TOKEN_ENV) as shop:
            async with caller(shop, None) as guest:
                await guest.ok("add_to_cart", chat("guest"), product_id=OATS, quantity=2)
                await guest.ok("add_to_cart", chat("guest"), product_id=TAHINI, quantity=3)
            async with caller(shop, ALICE) as alice:
                await alice.ok("add_to_cart", chat("other"), product_id=OATS, quantity=1)
                answers = await asyncio.gather(*(alice.ok("view_cart", chat("guest")) for _ in range(tabs)))
                final = await alice.ok("view_cart", chat("guest"))
            reported = sum(answer.get("claimed", {}).get("lines", 0) for answer in answers)
            assert reported == 2, round_
            assert quantities(final) == {OATS: 3, TAHINI: 3}, round_
            assert key_of("guest") not in await everything(shop)


async def test_signed_in_shoppers_codes_are_claimable_by_whoever_holds_them() -> None:
    """Sharing is the owner's act: a code works for anyone; the cart_id stays bound (from_cart_id is refused)."""
    async with shop_for(**TOKEN_ENV) as shop:
        async with caller(shop, ALICE) as alice:
            await alice.ok("add_to_cart", None, product_id=OATS, quantity=2)
            shared = await alice.ok("share_cart", None)
        async with caller(shop, BOB) as bob:
            assert await bob.error("claim_cart", None, from_cart_id=shared["cart_id"]) == INVALID_CART_ID
            got = await bob.ok("claim_cart", None, code=shared["code"])
            assert got["claimed"]["lines"] == 1 and quantities(got) == {OATS: 2}
        async with caller(shop, ALICE) as alice:
            assert (await alice.ok("view_cart", None))["items"] == []
            await alice.ok("add_to_cart", None, product_id=TAHINI)
            second = await alice.ok("share_cart", None)
        async with caller(shop, None) as guest:
            assert await guest.error("claim_cart", None, from_cart_id=second["cart_id"]) == INVALID_CART_ID
            taken = await guest.ok("claim_cart", chat("g"), code=second["code"])
            assert quantities(taken) == {TAHINI: 1}


async def test_a_signed_in_call_with_bad_arguments_leaves_the_guest_cart_where_it_is() -> None:
    """A rejected call changes nothing, also when it names a guest cart: the sign-in merge waits for a call
    that is answered with the cart (and says ``claimed``), so no lines move under an error sentence."""
    async with shop_for(**TOKEN_ENV) as shop:
        async with caller(shop, ALICE) as alice:
            account = await alice.ok("add_to_cart", None, product_id=TAHINI, quantity=1)
        async with caller(shop, None) as guest:
            minted = await guest.ok("add_to_cart", None, product_id=OATS, quantity=2)
            await guest.ok("add_to_cart", chat("laptop"), product_id=OATS, quantity=3)
        before = await everything(shop)
        by_id = {"cart_id": minted["cart_id"]}
        rejected = [
            ("add_to_cart", None, {"product_id": "demo-market:i999999", **by_id}),
            ("add_to_cart", chat("laptop"), {"product_id": UNPRICED}),
            ("add_to_cart", None, {"product_id": OATS, "quantity": 0, **by_id}),
            ("update_cart_item", chat("laptop"), {"product_id": OATS, "quantity": 100}),
            ("update_cart_item", None, {"product_id": ["not", "an", "id"], "quantity": 1, **by_id}),
            ("remove_from_cart", chat("laptop"), {"product_id": 12}),
            ("claim_cart", None, {"from_cart_id": account["cart_id"], **by_id}),  # the account claiming itself
        ]
        async with caller(shop, ALICE) as alice:
            for tool, meta, arguments in rejected:
                sentence = await alice.error(tool, meta, **arguments)
                assert sentence.count(". ") == 0 and sentence.endswith("."), sentence
                assert await everything(shop) == before, (tool, arguments)
            merged = await alice.ok("view_cart", None, **by_id)  # an answered call merges, and says so
            assert merged["claimed"]["lines"] == 1 and quantities(merged) == {TAHINI: 1, OATS: 2}


async def test_every_answer_that_merges_a_guest_cart_says_so() -> None:
    """The sign-in merge is reported as ``claimed`` whichever tool named the guest cart; debug_session writes
    nothing."""
    async with shop_for(**TOKEN_ENV) as shop:
        for tool in ("checkout_link", "share_cart", "claim_cart"):
            guest_chat = chat(f"guest-{tool}")
            async with caller(shop, None) as guest:
                await guest.ok("add_to_cart", guest_chat, product_id=OATS, quantity=1)
                other = await guest.ok("add_to_cart", None, product_id=TAHINI, quantity=1)
            arguments = {"from_cart_id": other["cart_id"]} if tool == "claim_cart" else {}
            async with caller(shop, ALICE) as alice:
                result = await alice.call(tool, guest_chat, **arguments)
            assert not result.is_error, result.content[0].text
            expected = 2 if tool == "claim_cart" else 1  # the claimed cart's line and the guest cart's
            assert result.structured_content["claimed"]["lines"] == expected, tool
            assert result.content[0].text.startswith("Signed in: 1 line(s)"), tool
        async with caller(shop, None) as guest:
            await guest.ok("add_to_cart", chat("guest-debug"), product_id=OATS, quantity=1)
        before = await everything(shop)
        async with caller(shop, ALICE) as alice:
            await alice.ok("debug_session", chat("guest-debug"))
        assert await everything(shop) == before
