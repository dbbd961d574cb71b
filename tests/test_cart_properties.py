"""The cart store against a plain dict model (hypothesis ``RuleBasedStateMachine``), on fakeredis and on a
real Redis; and concurrent adds to one cart from 2 client processes x 16 tasks through 2 server processes."""

from __future__ import annotations

import asyncio
import multiprocessing
import uuid
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from decimal import Decimal
from typing import Any

import fakeredis
import httpx
import pytest
import redis
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule, run_state_machine_as_test

from harness.processes import ServeProcess
from service.carts import CartRejected, CartStore
from service.idempotency import keyed_change
from tests.jsonrpc import JSON_HEADERS, add_calls, tool_call_message

MAX_QUANTITY = 5
MAX_LINES = 3
SESSIONS = ("s1", "s2")
PRODUCTS = ("p:a", "p:b", "p:c", "p:d")
PRICES = {product: Decimal(f"{index + 1}.25") for index, product in enumerate(PRODUCTS)}
MACHINE_SETTINGS = settings(
    max_examples=40, stateful_step_count=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)

sessions = st.sampled_from(SESSIONS)
products = st.sampled_from(PRODUCTS)
idempotency_keys = st.sampled_from(("key-1", "key-2", "key-3"))


def cart_machine(connect: Callable[[str], CartStore]) -> type[RuleBasedStateMachine]:
    """A machine class whose every run gets a fresh store (``connect(prefix)``) on its own event loop."""

    class CartMachine(RuleBasedStateMachine):
        def __init__(self) -> None:
            super().__init__()
            self.runner = asyncio.Runner()
            self.prefix = f"weft-prop-{uuid.uuid4().hex[:12]}"
            self.store = connect(self.prefix)
            self.model: dict[str, dict[str, int]] = {session: {} for session in SESSIONS}
            self.keys: dict[tuple[str, str], str] = {}  # (session, idempotency key) -> fingerprint it was used for

        def run(self, coroutine: Any) -> Any:
            return self.runner.run(coroutine)

        def expect(self, session: str, change: Any, rejected: bool) -> None:
            """Run ``change``; it must be refused exactly when the model says so, and then change nothing."""
            try:
                cart = self.run(change)
            except CartRejected:
                assert rejected, f"refused, but the model allows it: {self.model[session]}"
                return
            assert not rejected, f"accepted, but the model refuses it: {self.model[session]}"
            assert {line.product_id: line.quantity for line in cart.lines} == self.model[session]

        @rule(session=sessions, product=products, quantity=st.integers(1, MAX_QUANTITY + 2))
        def add(self, session: str, product: str, quantity: int) -> None:
            cart = self.model[session]
            current = cart.get(product, 0)
            if product in cart:
                rejected = current + quantity > MAX_QUANTITY
            else:
                rejected = len(cart) >= MAX_LINES or quantity > MAX_QUANTITY
            change = self.store.add(session, product, quantity, product.upper(), PRICES[product])
            if not rejected:
                cart[product] = current + quantity
            self.expect(session, change, rejected)

        @rule(session=sessions, key=idempotency_keys, product=products, quantity=st.integers(1, MAX_QUANTITY + 2))
        def keyed_add(self, session: str, key: str, product: str, quantity: int) -> None:
            """An add with an idempotency key: a retry (same key, same add) changes nothing and answers
            ``replayed``; the key with another add is refused; a refused add records nothing."""
            change = keyed_change(key, "add_to_cart", {"cart": session, "product_id": product, "quantity": quantity})
            assert change is not None
            used = self.keys.get((session, key))
            call = self.store.add(session, product, quantity, product.upper(), PRICES[product], change=change)
            if used is not None:
                if used == change.fingerprint:
                    cart = self.run(call)
                    assert cart.replayed
                    assert {line.product_id: line.quantity for line in cart.lines} == self.model[session]
                else:
                    with pytest.raises(CartRejected, match="idempotency_conflict"):
                        self.run(call)
                return
            cart_model = self.model[session]
            current = cart_model.get(product, 0)
            if product in cart_model:
                rejected = current + quantity > MAX_QUANTITY
            else:
                rejected = len(cart_model) >= MAX_LINES or quantity > MAX_QUANTITY
            if not rejected:
                cart_model[product] = current + quantity
                self.keys[(session, key)] = change.fingerprint
            self.expect(session, call, rejected)

        @rule(session=sessions, product=products, quantity=st.integers(0, MAX_QUANTITY + 1))
        def update(self, session: str, product: str, quantity: int) -> None:
            cart = self.model[session]
            rejected = quantity > MAX_QUANTITY or product not in cart
            if not rejected:
                cart[product] = quantity
                if quantity == 0:
                    del cart[product]
            self.expect(session, self.store.set_quantity(session, product, quantity), rejected)

        @rule(session=sessions, product=products)
        def remove(self, session: str, product: str) -> None:
            cart = self.model[session]
            rejected = product not in cart
            cart.pop(product, None)
            self.expect(session, self.store.remove(session, product), rejected)

        @rule(session=sessions)
        def clear(self, session: str) -> None:
            self.model[session].clear()
            self.expect(session, self.store.clear(session), rejected=False)

        @rule(session=sessions)
        def view(self, session: str) -> None:
            self.expect(session, self.store.view(session), rejected=False)

        @invariant()
        def store_matches_model(self) -> None:
            for session in SESSIONS:
                cart = self.run(self.store.view(session))
                assert {line.product_id: line.quantity for line in cart.lines} == self.model[session]
                assert all(line.name == line.product_id.upper() for line in cart.lines)
                assert all(line.price == PRICES[line.product_id] for line in cart.lines)
                exists = self.run(self.store.client.exists(self.store.cart_key(session)))
                assert exists == (1 if self.model[session] else 0), "an empty cart must have no key"
            assert self.run(self.store.count_carts()) == sum(1 for cart in self.model.values() if cart)

        async def _records(self) -> list[str]:
            return [key async for key in self.store.client.scan_iter(match=f"{self.prefix}:idem:*")]

        def teardown(self) -> None:
            try:
                for session in SESSIONS:
                    self.run(self.store.clear(session))
                for record in self.run(self._records()):  # idempotency records outlive their carts (by TTL)
                    self.run(self.store.client.delete(record))
                self.run(self.store.aclose())
            finally:
                self.runner.close()

    return CartMachine


def store_options(prefix: str) -> dict[str, Any]:
    return {"key_prefix": prefix, "max_quantity": MAX_QUANTITY, "max_lines": MAX_LINES}


def test_cart_store_matches_a_dict_model_on_fakeredis() -> None:
    server = fakeredis.FakeServer()
    machine = cart_machine(
        lambda prefix: CartStore(
            fakeredis.FakeAsyncRedis(server=server, decode_responses=True), backend="fakeredis", **store_options(prefix)
        )
    )
    run_state_machine_as_test(machine, settings=MACHINE_SETTINGS)


@pytest.mark.redis
def test_cart_store_matches_a_dict_model_on_real_redis(redis_url: str) -> None:
    machine = cart_machine(lambda prefix: CartStore.connect(redis_url, **store_options(prefix)))
    run_state_machine_as_test(machine, settings=MACHINE_SETTINGS)


# ---------------------------------------------------------------- 2 client processes x 16 tasks, 2 servers


@pytest.mark.e2e
@pytest.mark.redis
def test_two_processes_of_sixteen_tasks_through_two_servers(redis_url: str) -> None:
    """Every task adds one unit at a time to the same cart line, through either server: the total is exact."""
    prefix = f"weft-prop-{uuid.uuid4().hex[:12]}"
    env = {"WEFT_REDIS_URL": redis_url, "WEFT_KEY_PREFIX": prefix, "WEFT_MAX_QUANTITY": "10000"}
    chat, product, per_process = f"race-{uuid.uuid4().hex[:8]}", "demo-market:i1702", 16 * 8
    with ServeProcess(env=env) as first, ServeProcess(env=env) as second:
        urls = [first.mcp_url, second.mcp_url]
        calls = [(chat, product)] * per_process
        with ProcessPoolExecutor(max_workers=2, mp_context=multiprocessing.get_context("spawn")) as pool:
            futures = [pool.submit(add_calls, urls, calls, 16, offset) for offset in (0, 1)]
            outcomes = [outcome for future in futures for outcome in future.result(timeout=90)]
        assert outcomes == [True] * (2 * per_process), outcomes.count(True)
        message = tool_call_message("view_cart", meta={"sessionId": chat})
        for shop in (first, second):
            cart = httpx.post(shop.mcp_url, json=message, headers=JSON_HEADERS, timeout=10).json()["result"]
            assert [(i["id"], i["quantity"]) for i in cart["structuredContent"]["items"]] == [
                (product, 2 * per_process)
            ]
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    try:
        keys = set(client.scan_iter(match=f"{prefix}:*")) - {f"{prefix}:secret"}  # the generated secret
        assert keys == {f"{prefix}:cart:{{{chat}}}"}
    finally:
        client.close()
