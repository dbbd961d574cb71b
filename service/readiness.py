"""``/readyz``: whether this worker can serve the cart tools, checked through the tools' own path.

A PING proves little: a wrong password, an ACL user without rights on the cart keys, or a full
Redis all answer PING. The probe (``CartStore.probe``) runs a registered script (EVALSHA) on a key of
the cart shape no session can use: it asks the ACL whether the user may run each command the cart
scripts run there, writes and removes one field (so a full Redis shows), and leaves nothing behind
whatever the ACL denies. With the debug tool on, one ``SCAN ... COUNT 1`` checks what its count needs.

A full Redis (``maxmemory`` with ``noeviction``) answers 200 ``degraded``, not 503: every worker
shares the one Redis, so 503 would take every worker out of the load balancer and turn "adds are
refused" into "nothing is served", though search, cart views and removals still work. For the same
reason a user denied only a command that one tool needs (``DEL``: clear_cart; ``SCAN``: debug_session)
is 200 ``degraded`` with ``missing`` and the tool named. Authentication, a denied script command,
timeout and unreachable answer 503: the cart tools cannot work, and a rollout with a wrong password
or ACL stops at its first worker. The condition is also in ``/metrics`` (``weft_cart_storage_condition``).
"""

from __future__ import annotations

from typing import Any

import anyio

from service.carts import CartStorageError, CartStore
from service.metrics import note_storage_condition
from service.storage_faults import Fault

READY_TIMEOUT_SECONDS = 1.0
# The commands only one tool needs: without them the rest of the shop works (200 degraded).
TOOL_OF_COMMAND = {
    "DEL": "clear_cart",
    "SCAN": "debug_session",
    "EXPIRE": "cart expiry (WEFT_CART_TTL_SECONDS: carts are kept without a TTL)",
    "PERSIST": "cart expiry (carts written under an earlier TTL keep it)",
}


async def storage_readiness(carts: CartStore, *, debug_tool: bool = True) -> tuple[int, dict[str, Any]]:
    """The HTTP status and body of ``/readyz`` for the cart store; also updates the condition gauge.

    ``debug_tool``: whether debug_session is served, so whether its count's SCAN is checked."""
    try:
        with anyio.fail_after(READY_TIMEOUT_SECONDS):
            denied = await carts.probe(scan=debug_tool)
    except TimeoutError:
        note_storage_condition(Fault.TIMEOUT)
        reason = f"cart storage ({carts.backend}) did not answer within {READY_TIMEOUT_SECONDS:g} s (timeout)"
        return 503, {
            "status": "unavailable",
            "condition": Fault.TIMEOUT.value,
            "reason": reason,
            "storage": carts.backend,
        }
    except CartStorageError as exc:
        reason = f"cart storage ({carts.backend}): {exc}"
        body: dict[str, Any] = {"condition": exc.kind.value, "reason": reason, "storage": carts.backend}
        if exc.missing:
            body["missing"] = list(exc.missing)
        if exc.kind is Fault.FULL:
            return 200, {"status": "degraded", **body}
        return 503, {"status": "unavailable", **body}
    if denied:
        tools = [TOOL_OF_COMMAND[command] for command in denied]
        reason = (
            f"cart storage ({carts.backend}): Redis' ACL denies this user {', '.join(denied)}, so "
            f"{', '.join(tools)} cannot work; the other tools do (permission)"
        )
        return 200, {
            "status": "degraded",
            "condition": Fault.PERMISSION.value,
            "missing": list(denied),
            "tools_affected": tools,
            "reason": reason,
            "storage": carts.backend,
        }
    return 200, {"status": "ready", "storage": carts.backend}
