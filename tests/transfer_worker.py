"""Claims in processes of their own, for the fault tests.

``python -m tests.transfer_worker '<json spec>'`` runs one claim; with ``"stop_after": "take"`` (or
``"apply"``) it prints ``stopped after <step>`` once that step has run and then waits, so the test can
SIGKILL it right there, as a worker dying between steps. ``claim_many`` runs many claims at once in one
process (a ``ProcessPoolExecutor`` target) for the races.
"""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Any

from service.cart_transfers import CartTransfers, Claimed, TransferError
from service.carts import CartStore
from tests.transfer_support import CALLER, SECRET, catalog


class StoppingTransfers(CartTransfers):
    """The real protocol, with a pause (or an exception) after one step: a worker dying there."""

    stop_after: str = ""
    error: BaseException | None = None  # raised after the step instead of waiting (in-process tests)

    async def take(self, *args: Any, **kwargs: Any) -> tuple[str, list[str], str]:
        result = await super().take(*args, **kwargs)
        await self._stop("take")
        return result

    async def apply(self, *args: Any, **kwargs: Any) -> tuple[str, str, list[str]]:
        result = await super().apply(*args, **kwargs)
        await self._stop("apply")
        return result

    async def _stop(self, step: str) -> None:
        if step != self.stop_after:
            return
        if self.error is not None:
            raise self.error
        print(f"stopped after {step}", flush=True)
        await asyncio.sleep(3600)


def open_store(spec: dict[str, Any]) -> CartStore:
    options = {"key_prefix": spec["prefix"], "max_quantity": spec.get("max_quantity", 5), "max_lines": 3}
    return CartStore.connect(spec["url"], cluster=spec.get("cluster", False), **options)


def outcome(claimed: Claimed) -> dict[str, Any]:
    lines = {line.product_id: line.quantity for line in claimed.cart.lines}
    return {"lines": lines, "count": claimed.lines, "replayed": claimed.replayed, "skipped": list(claimed.skipped)}


async def claim_once(store: CartStore, spec: dict[str, Any], caller: str = CALLER) -> dict[str, Any]:
    try:
        claimed = await store.transfers.claim(
            spec["target"],
            secret=SECRET,
            code=spec.get("code"),
            source_key=spec.get("source_key"),
            mode=spec.get("mode", "merge"),
            claim_id=spec["claim_id"],
            refresh=catalog(),
            caller=caller,
        )
    except TransferError as refused:
        return {"refused": type(refused).__name__}
    return outcome(claimed)


def claim_many(spec: dict[str, Any], tasks: int) -> list[dict[str, Any]]:
    """``tasks`` claims at once on one store; ``spec["claim_ids"]`` and ``spec["targets"]`` give each its own
    claim id and target cart (else all make the same claim)."""

    async def run() -> list[dict[str, Any]]:
        store = open_store(spec)
        try:
            ids = spec.get("claim_ids") or [spec["claim_id"]] * tasks
            targets = spec.get("targets") or [spec["target"]] * tasks
            calls = [
                claim_once(store, {**spec, "claim_id": ids[index], "target": targets[index]}, f"caller-{index}")
                for index in range(tasks)
            ]
            return list(await asyncio.gather(*calls))
        finally:
            await store.aclose()

    return asyncio.run(run())


async def main(spec: dict[str, Any]) -> None:
    store = open_store(spec)
    transfers = StoppingTransfers(store)
    transfers.stop_after = spec.get("stop_after", "")
    store.transfers = transfers
    try:
        print(json.dumps(await claim_once(store, spec)), flush=True)
    finally:
        await store.aclose()


if __name__ == "__main__":
    asyncio.run(main(json.loads(sys.argv[1])))
