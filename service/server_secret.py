"""The server secret behind cart_ids (``WEFT_SECRET_KEY``), one per worker, found once.

Set: that secret (and ``WEFT_SECRET_KEY_PREVIOUS`` for opening older cart_ids). Unset with the embedded
store: random per process (its cart_ids die with its carts anyway). Unset with Redis: one generated once
and kept in Redis (``<prefix>:secret``, SET NX, ``CartStore.shared_secret``) so every worker and restart
agrees, with a WARNING: anyone who can read Redis can read it.
"""

from __future__ import annotations

import logging
import secrets

import anyio

from service.cart_ids import CartIds
from service.carts import CartStore
from service.config import Settings

logger = logging.getLogger(__name__)


class ServerSecret:
    """The worker's ``CartIds``: loaded at worker start, or on the first call that needs it when Redis did not
    answer then (one extra round trip, once)."""

    def __init__(self, settings: Settings, carts: CartStore) -> None:
        self.settings = settings
        self.carts = carts
        self._cart_ids: CartIds | None = None
        self._lock = anyio.Lock()
        previous = [secret.get_secret_value().encode() for secret in settings.secret_key_previous]
        if settings.secret_key is not None:
            self._cart_ids = CartIds(settings.secret_key.get_secret_value().encode(), previous)
        elif carts.backend == "embedded":
            self._cart_ids = CartIds(secrets.token_bytes(32), previous)
        self._previous = previous

    async def cart_ids(self) -> CartIds:
        """The signer; raises ``CartStorageError`` when the generated secret must come from a Redis that fails."""
        if self._cart_ids is not None:
            return self._cart_ids
        async with self._lock:
            if self._cart_ids is None:
                shared = await self.carts.shared_secret()
                logger.warning(
                    "WEFT_SECRET_KEY is unset: using a secret generated and kept in Redis (%s), readable by anyone "
                    "with access to that Redis; set WEFT_SECRET_KEY (see docs/operating.md)",
                    self.carts.secret_key,
                )
                self._cart_ids = CartIds(shared.encode(), self._previous)
        return self._cart_ids
