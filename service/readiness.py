"""``/readyz``: whether this worker can serve the cart tools, checked through the tools' own path.

A PING proves little: a wrong password, an ACL user without rights on the cart keys, or a full
Redis all answer PING. The probe runs a registered script (EVALSHA) that writes and deletes a key
of the cart shape no session can use, so it proves authentication, the ACL's command and key
rights, and that writes are accepted, and leaves nothing behind.

A full Redis (``maxmemory`` with ``noeviction``) answers 200 ``degraded``, not 503: every worker
shares the one Redis, so 503 would take every worker out of the load balancer and turn "adds are
refused" into "nothing is served", though search, cart views and removals still work. The
condition is reported here and in ``/metrics`` (``weft_cart_storage_condition``) for alerting.
Authentication, permission, timeout and unreachable answer 503: no cart tool can work, and a
rollout with a wrong password or ACL stops at its first worker.
"""

from __future__ import annotations

from typing import Any

import anyio

from service.carts import CartStorageError, CartStore
from service.metrics import note_storage_condition
from service.storage_faults import Fault

READY_TIMEOUT_SECONDS = 1.0


async def storage_readiness(carts: CartStore) -> tuple[int, dict[str, Any]]:
    """The HTTP status and body of ``/readyz`` for the cart store; also updates the condition gauge."""
    try:
        with anyio.fail_after(READY_TIMEOUT_SECONDS):
            await carts.probe()
    except TimeoutError:
        note_storage_condition(Fault.TIMEOUT)
        reason = f"cart storage ({carts.backend}) did not answer within {READY_TIMEOUT_SECONDS:g} s (timeout)"
        return 503, {"status": "unavailable", "condition": Fault.TIMEOUT.value, "reason": reason,
                     "storage": carts.backend}  # fmt: skip
    except CartStorageError as exc:
        reason = f"cart storage ({carts.backend}): {exc}"
        body = {"condition": exc.kind.value, "reason": reason, "storage": carts.backend}
        if exc.kind is Fault.FULL:
            return 200, {"status": "degraded", **body}
        return 503, {"status": "unavailable", **body}
    return 200, {"status": "ready", "storage": carts.backend}
