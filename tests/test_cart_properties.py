"""The cart store against a plain dict model (hypothesis ``RuleBasedStateMachine``), on fakeredis and on a real
Redis (redis-server and the testcontainers Redis), with shares and claims (by code and by cart key, merge and
replace: lines move, capped at the maximum, skipped when gone from the catalog or past the line limit; codes
live until used or replaced); and concurrent adds to one cart from 2 client processes x 16 tasks through 2
server processes."""

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
from hypothesis import HealthCheck, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule, run_state_machine_as_test

from harness.processes import ServeProcess
from service.cart_transfers import EmptyCartError, SelfClaimError, TransferCodeError, new_claim_id
from service.carts import CartRejected, CartStore
from service.claim_limits import ClaimLimits
from service.idempotency import keyed_change
from tests.jsonrpc import JSON_HEADERS, add_calls, tool_call_message
from tests.redis_backends import REAL_REDIS, real_redis_url

MAX_QUANTITY = 5
MAX_LINES = 3
SESSIONS = ("s1", "s2", "s3")
PRODUCTS = ("p:a", "p:b", "p:c", "p:d")
PRICES = {product: Decimal(f"{index + 1}.25") for index, product in enumerate(PRODUCTS)}
GONE = "p:d"  # no longer in the catalog when a claim refreshes its lines: skipped
SECRET = b"a-test-secret-of-32-bytes-at-least!"


def refresh(product_id: str) -> tuple[str, Decimal] | None:
    return None if product_id == GONE else (product_id.upper(), PRICES[product_id])


def merged(target: dict[str, int], source: dict[str, int], mode: str) -> tuple[dict[str, int], int, set[str], set[str]]:
    """The merge rules on the model: the target after the claim, lines moved, capped and skipped product ids."""
    result = {} if mode == "replace" else dict(target)
    moved, capped, skipped = 0, set(), set()
    for product in sorted(source):
        if product == GONE or (product not in result and len(result) >= MAX_LINES):
            skipped.add(product)
            continue
        total = result.get(product, 0) + source[product]
        if total > MAX_QUANTITY:
            total = MAX_QUANTITY
            capped.add(product)
        result[product] = total
        moved += 1
    return result, moved, capped, skipped


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
            self.live_codes: dict[str, str] = {}  # session -> its current transfer code
            self.codes: list[tuple[str, str]] = []  # every code issued: (code, session)

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

        @initialize(first=st.integers(1, MAX_QUANTITY), second=st.integers(1, MAX_QUANTITY))
        def carts_with_lines(self, first: int, second: int) -> None:
            """Two carts sharing a product (their sum may pass the maximum) and one with a product gone from
            the catalog: what claims cap and skip, from the first step on."""
            for session, product, quantity in (("s1", "p:a", first), ("s2", "p:a", second), ("s2", GONE, 1)):
                self.run(self.store.add(session, product, quantity, product.upper(), PRICES[product]))
                self.model[session][product] = quantity

        @rule(pick=st.integers(0, 1000), empty=st.integers(0, 5))
        def share(self, pick: int, empty: int) -> None:
            """Mostly a cart with lines (an empty one now and then)."""
            full = [name for name in SESSIONS if self.model[name]]
            session = SESSIONS[pick % len(SESSIONS)] if empty == 0 or not full else full[pick % len(full)]
            try:
                shared = self.run(self.store.transfers.share(session, SECRET))
            except EmptyCartError:
                assert not self.model[session], "refused, but the cart has lines"
                return  # the previous code, if any, still works
            assert self.model[session], "an empty cart was shared"
            self.live_codes[session] = shared.code
            self.codes.append((shared.code, session))

        @rule(
            into=sessions,
            pick=st.integers(0, 1000),
            stale=st.booleans(),
            mode=st.sampled_from(["merge", "replace"]),
            typed=st.sampled_from(["as shown", "lower, no dash"]),
        )
        def claim_by_code(self, into: str, pick: int, stale: bool, mode: str, typed: str) -> None:
            """A live code (when one exists and ``stale`` is false), else any code ever issued, used or not."""
            target = into  # hypothesis reserves the name "target" for bundles
            live_ones = [(code, session) for session, code in sorted(self.live_codes.items())]
            issued = self.codes if stale or not live_ones else live_ones
            if not issued:
                return
            code, source = issued[pick % len(issued)]
            live = self.live_codes.get(source) == code
            sent = code if typed == "as shown" else code.lower().replace("-", "")
            if live and source == target:
                self.expect_refusal(SelfClaimError, code=sent, target=target, mode=mode)
            elif not live:
                self.expect_refusal(TransferCodeError, code=sent, target=target, mode=mode)
            else:
                self.expect_claim(source, target, mode, code=sent)

        @rule(
            into=sessions,
            pick=st.integers(0, 1000),
            itself=st.integers(0, 5),
            mode=st.sampled_from(["merge", "replace"]),
        )
        def claim_by_cart(self, into: str, pick: int, itself: int, mode: str) -> None:
            """Mostly from a cart with lines (empty ones and the cart itself now and then)."""
            target = into
            others = [session for session in SESSIONS if session != target]
            full = [session for session in others if self.model[session]]
            source = target if itself == 0 else (full or others)[pick % len(full or others)]
            if source == target:
                self.expect_refusal(SelfClaimError, source_key=source, target=target, mode=mode)
            else:
                self.expect_claim(source, target, mode, source_key=source)

        def claim(self, target: str, mode: str, **source: Any) -> Any:
            return self.store.transfers.claim(
                target, secret=SECRET, mode=mode, claim_id=new_claim_id(), refresh=refresh, caller="prop", **source
            )

        def expect_refusal(self, error: type[Exception], *, target: str, mode: str, **source: Any) -> None:
            try:
                self.run(self.claim(target, mode, **source))
            except error:
                event(f"claim refused: {error.__name__}")
                return
            raise AssertionError(f"claim {source} into {target} was not refused with {error.__name__}")

        def expect_claim(self, source: str, target: str, mode: str, **named: Any) -> None:
            expected, moved, capped, skipped = merged(self.model[target], self.model[source], mode)
            claimed = self.run(self.claim(target, mode, **named))
            self.model[target], self.model[source] = expected, {}
            self.live_codes.pop(source, None)  # claimed: its code is used (by code) or dead (by cart key)
            assert {line.product_id: line.quantity for line in claimed.cart.lines} == expected
            assert (claimed.lines, set(claimed.capped), set(claimed.skipped)) == (moved, capped, skipped)
            assert not claimed.replayed
            by = "code" if "code" in named else "cart"
            event(f"claim by {by} ({mode}), capped={bool(capped)}, skipped={bool(skipped)}")

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
            outboxes = self.run(self.store.client.keys(f"{self.prefix}:xfer:*"))
            assert outboxes == [], "a finished claim left its outbox"

        def teardown(self) -> None:
            try:
                for key in self.run(self.store.client.keys(f"{self.prefix}:*")):
                    self.run(self.store.client.delete(key))
                self.run(self.store.aclose())
            finally:
                self.runner.close()

    return CartMachine


def store_options(prefix: str) -> dict[str, Any]:
    limits = ClaimLimits(prefix, per_caller=10**6, total=10**6)  # wrong codes are the machine's own: never limited
    return {"key_prefix": prefix, "max_quantity": MAX_QUANTITY, "max_lines": MAX_LINES, "claim_limits": limits}


def test_cart_store_matches_a_dict_model_on_fakeredis() -> None:
    server = fakeredis.FakeServer()
    machine = cart_machine(
        lambda prefix: CartStore(
            fakeredis.FakeAsyncRedis(server=server, decode_responses=True), backend="fakeredis", **store_options(prefix)
        )
    )
    run_state_machine_as_test(machine, settings=MACHINE_SETTINGS)


@pytest.mark.parametrize("backend", REAL_REDIS)
def test_cart_store_matches_a_dict_model_on_real_redis(backend: str, request: pytest.FixtureRequest) -> None:
    redis_url = real_redis_url(request, backend)
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
        keys = set(client.scan_iter(match=f"{prefix}:*")) - {
            f"{prefix}:secret",
            f"{prefix}:xfer-sweep",
        }  # secret, sweep lease
        assert keys == {f"{prefix}:cart:{{{chat}}}"}
    finally:
        client.close()
