"""The sign-in merge on every backend: the embedded store, a real Redis (redis-server and
the testcontainers Redis), and a 3-primary cluster (where the guest
cart and the shopper's cart sit on different primaries), with many tabs of one shopper signing in at once."""

from __future__ import annotations

import asyncio

from service.cart_ids import subject_tag
from service.config import Settings
from service.tools import Shop
from tests.test_cart_transfers import Factory, backend, make_store  # noqa: F401 (the backend fixtures)
from tests.test_signin import ALICE, TOKEN_ENV, caller, chat
from tests.test_tools import CATALOG, OATS, TAHINI
from tests.test_tools_cart_ids import quantities

TABS = 16
ROUNDS = 5


async def test_tabs_signing_in_at_once_merge_exactly_once_on_every_backend(make_store: Factory) -> None:  # noqa: F811
    store = make_store(max_quantity=99, max_lines=100)
    settings = Settings(_env_file=None, **TOKEN_ENV)
    shop = Shop(catalog=CATALOG, carts=store, settings=settings)
    tag = subject_tag(ALICE)
    if store.backend == "redis-cluster":  # the two carts of a merge on two primaries: the claim's own guarantee
        slots = {store.client.keyslot(store.cart_key(key)) for key in (f"u-{tag}", "guest-0")}
        assert len(slots) == 2
    for round_ in range(ROUNDS):
        guest_chat = f"guest-{round_}"
        async with caller(shop, None) as guest:
            await guest.ok("add_to_cart", chat(guest_chat), product_id=OATS, quantity=2)
            await guest.ok("add_to_cart", chat(guest_chat), product_id=TAHINI, quantity=1)
        async with caller(shop, ALICE) as alice:
            answers = await asyncio.gather(*(alice.ok("view_cart", chat(guest_chat)) for _ in range(TABS)))
            final = await alice.ok("view_cart", None)
        assert sum(answer.get("claimed", {}).get("lines", 0) for answer in answers) == 2, round_
        assert quantities(final) == {OATS: 2 * (round_ + 1), TAHINI: round_ + 1}, round_
        assert not await store.client.exists(store.cart_key(guest_chat))
        assert not await store.client.exists(store.transfers.outbox_key(guest_chat))
