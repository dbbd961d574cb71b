"""Signing in keeps the cart: a signed-in shopper's earlier carts are merged into the shopper's cart, once.

``service.sessions.signed_in`` names the sources (``Session.merge_from``): the anonymous (guest) cart of the
conversation or cart_id the call named, and, in ``account`` mode, the shopper's own per-conversation cart left
from ``conversation`` mode. Each is moved by the store's claim machinery (``CartTransfers.claim`` by session
key), so the merge rules, crash safety and exactly-once are the claims' own: TAKE moves a source's lines into
its outbox atomically, so two tabs signing in at once (two claims with different ids) cannot both take them;
the second finds the first's outbox, finishes it (APPLY is once per claim id) and then finds nothing left.
The source key is gone afterwards, so its conversation then sees an empty anonymous cart, and the shopper's
cart, being ``u-``-keyed, never becomes anonymous.

A merge never fails the call for its own sake (a sign-in must not break on a merge, as in Spree#5976): what
cannot be moved now (another claim keeps taking the source, an outbox damaged by hand) is logged and left where
it is, for the next call or the transfer sweep. Storage being down fails the call as any cart call would.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from service.cart_transfers import CartTransfers, Refresh, TransferError, new_claim_id
from service.carts import CartStorageError
from service.sessions import shorten
from service.storage_faults import Fault

logger = logging.getLogger(__name__)


@dataclass(slots=True)
class MergeReport:
    """What the merges of one call moved: DESIGN's ``claimed`` shape, summed over the sources."""

    lines: int = 0
    capped: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)

    @property
    def moved_anything(self) -> bool:
        return bool(self.lines or self.capped or self.skipped)

    def as_claimed(self) -> dict[str, object]:
        return {"lines": self.lines, "capped": list(self.capped), "skipped": list(self.skipped)}


async def merge_earlier_carts(
    transfers: CartTransfers,
    target: str,
    sources: tuple[str, ...],
    *,
    subject: str,
    secret: bytes,
    refresh: Refresh,
) -> MergeReport:
    """Move every source cart that holds something into ``target`` by the merge rules; one pipelined EXISTS when
    there is nothing to move, a claim (4 round trips) per source that has lines."""
    report = MergeReport()
    if not sources:
        return report
    for source in await transfers.movable(sources):
        try:
            claimed = await transfers.claim(
                target,
                secret=secret,
                source_key=source,
                mode="merge",
                claim_id=new_claim_id(),
                refresh=refresh,
                caller=f"subject:{subject}",  # as claim_cart counts a shopper (a claim by key counts no failure)
            )
        except TransferError as exc:
            logger.warning("Sign-in merge of cart %s postponed: %s", shorten(source), exc)
            continue
        except CartStorageError as exc:
            if exc.kind != Fault.DAMAGED:
                raise
            logger.error("Sign-in merge of cart %s skipped: its stored transfer is damaged: %s", shorten(source), exc)
            continue
        report.lines += claimed.lines
        report.capped += claimed.capped
        report.skipped += claimed.skipped
        logger.info("Signed in: merged %d line(s) from cart %s", claimed.lines, shorten(source))
    return report
