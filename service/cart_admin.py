"""``weft-mcp sessions ...``: the operator's view of the carts in Redis (count, list, show, purge), as text or JSON.

``CartStore`` does every read and delete (its key layout, its one SCAN loop, its scripts), so the
operator sees exactly the keys the service writes and reading never counts as an access. This module
only asks before deleting, and prints: results on stdout, progress and skipped damaged keys on stderr.
Each action returns its exit code (README, Operating): one meaning each, so a script can tell them apart.
"""

from __future__ import annotations

import json
import re
import sys
import time
from dataclasses import asdict, is_dataclass
from typing import TYPE_CHECKING, Any, TextIO

from service.cart_ids import account_key, owner_of_key, subject_tag
from service.cart_reports import CartDetail, DamageReport, PurgeReport
from service.catalog_text import clean_text
from service.sessions import session_key

if TYPE_CHECKING:
    from service.carts import CartStore

EXIT_DONE = 0
EXIT_NOT_FOUND = 1  # show / purge of an id that has no cart
EXIT_USAGE = 2  # bad arguments or settings (argparse exits 2 too)
EXIT_REDIS_FAILED = 3
EXIT_NOT_CONFIRMED = 4  # a delete nobody confirmed: nothing was deleted

_AGE = re.compile(r"^\s*(\d+)\s*([smhdw]?)\s*$")
_UNIT_SECONDS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_age(text: str) -> int:
    """``7d``, ``12h``, ``30m``, ``45s``, ``2w`` or plain seconds -> seconds."""
    match = _AGE.match(text)
    if not match or int(match[1]) <= 0:
        raise ValueError(f"not an age: {text!r}; write a positive number with s, m, h, d or w (for example 7d)")
    return int(match[1]) * _UNIT_SECONDS[match[2]]


def format_age(seconds: int | None) -> str:
    if seconds is None:
        return "?"
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


class Progress:
    """Progress of a long sweep on stderr: a redrawn line on a terminal, else a line every ``every`` keys."""

    def __init__(self, label: str, *, stream: TextIO | None = None, every: int = 100_000) -> None:
        self.label = label
        self.stream = stream if stream is not None else sys.stderr
        self.tty = self.stream.isatty()
        self.every = every
        self.started = time.monotonic()
        self._last_draw = 0.0
        self._next_line = every
        self.scanned = 0  # the last count shown

    def update(self, scanned: int, done: int | None = None, *, final: bool = False) -> None:
        self.scanned = scanned
        elapsed = time.monotonic() - self.started
        extra = "" if done is None else f", {done} deleted"
        text = f"{self.label}: {scanned} keys scanned{extra} ({elapsed:.1f} s)"
        if self.tty:
            if final or elapsed - self._last_draw >= 0.2:
                self._last_draw = elapsed
                self.stream.write("\r" + text + ("\n" if final else ""))
                self.stream.flush()
        elif final or scanned >= self._next_line:
            while self._next_line <= scanned:
                self._next_line += self.every
            self.stream.write(text + "\n")
            self.stream.flush()


def as_json(value: Any) -> str:
    """A report as the command prints it; a ``damage`` record becomes ``damaged`` and ``damaged_keys``."""
    if isinstance(value, list):
        return json.dumps([_plain(item) for item in value], ensure_ascii=False, indent=2)
    return json.dumps(_plain(value), ensure_ascii=False, indent=2)


def _plain(value: Any) -> Any:
    if not is_dataclass(value) or isinstance(value, type):
        return value
    data = asdict(value)
    damage = data.pop("damage", None)
    if damage is not None:
        data["damaged"], data["damaged_keys"] = damage["damaged"], damage["damaged_keys"]
    return data


class CartAdmin:
    """The ``weft-mcp sessions`` actions over one ``CartStore``; each returns the command's exit code."""

    def __init__(self, store: CartStore, *, json_output: bool = False, assume_yes: bool = False) -> None:
        self.store = store
        self.json_output = json_output
        self.assume_yes = assume_yes
        self.out: TextIO = sys.stdout

    async def count(self) -> int:
        progress = Progress("counting")
        report = await self.store.count_with_damage(progress.update)
        progress.update(progress.scanned, final=True)
        note = report_damaged(report.damage)
        self.emit(report, f"{report.carts} cart(s) under {self.store.cart_pattern}{note}")
        return EXIT_DONE

    async def list(self, limit: int) -> int:
        listing = await self.store.list_carts(limit)
        note = report_damaged(listing.damage)
        rows = [f"{'session key':<40} {'lines':>5} {'idle':>6}  whose"]
        rows += [
            f"{cart.session_key:<40} {cart.lines:>5} {format_age(cart.idle_seconds):>6}  {whose(cart.session_key)}"
            for cart in listing.carts
        ]
        rows.append(f"{len(listing.carts)} cart(s) shown (SCAN order; --limit {limit}){note}")
        self.emit([{**_plain(cart), **ownership(cart.session_key)} for cart in listing.carts], "\n".join(rows))
        return EXIT_DONE

    async def show(self, session_id: str | None, *, subject: str | None = None) -> int:
        detail = await self.store.cart_detail(wanted_key(session_id, subject))
        data = {"session_id": session_id, **_plain(detail), **ownership(detail.session_key)}
        self.emit(data, describe(detail))
        return EXIT_DONE if detail.exists else EXIT_NOT_FOUND

    async def purge(self, session_id: str | None, *, subject: str | None = None) -> int:
        detail = await self.store.cart_detail(wanted_key(session_id, subject))
        if not detail.exists:
            self.emit({"key": detail.key, "deleted": False}, f"no cart to delete (key {detail.key})")
            return EXIT_NOT_FOUND
        what = f"damaged: {detail.damaged}" if detail.damaged else f"{len(detail.lines)} line(s)"
        if not self.confirm(f"Delete {detail.key} ({what})?"):
            return EXIT_NOT_CONFIRMED
        deleted = await self.store.delete_cart(detail.session_key)
        self.emit({"key": detail.key, "deleted": deleted}, f"deleted {detail.key}")
        return EXIT_DONE

    async def purge_idle(self, older_than: int, age_text: str, *, dry_run: bool) -> int:
        """Count first (unless ``--yes``), then ask; ``--dry-run`` or nothing idle stops after the count."""
        if dry_run or not self.assume_yes:
            report = await self._purge_idle(older_than, "checking", dry_run=True)
            if dry_run or report.idle == 0:
                note = report_damaged(report.damage)
                self.emit(report, f"{report.idle} of {report.scanned} cart(s) idle for more than {age_text}{note}")
                return EXIT_DONE
            if not self.confirm(f"Delete {report.idle} cart(s) idle for more than {age_text}?"):
                return EXIT_NOT_CONFIRMED
        report = await self._purge_idle(older_than, "purging", dry_run=False)
        note = report_damaged(report.damage)
        self.emit(report, f"deleted {report.deleted} of {report.scanned} cart(s) idle for more than {age_text}{note}")
        return EXIT_DONE

    async def _purge_idle(self, older_than: int, label: str, *, dry_run: bool) -> PurgeReport:
        progress = Progress(label)
        report = await self.store.purge_idle(older_than, dry_run=dry_run, on_batch=progress.update)
        progress.update(report.scanned, None if dry_run else report.deleted, final=True)
        return report

    def emit(self, data: Any, text: str) -> None:
        self.out.write((as_json(data) if self.json_output else text) + "\n")

    def confirm(self, question: str) -> bool:
        """``--yes``, or a "y" typed at a terminal; with no terminal to ask, refuse rather than guess."""
        if self.assume_yes:
            return True
        if not sys.stdin.isatty():
            print(f"{question} Not deleting: no terminal to confirm on; pass --yes.", file=sys.stderr)
            return False
        print(f"{question} [y/N] ", end="", file=sys.stderr, flush=True)
        return sys.stdin.readline().strip().lower() in ("y", "yes")


def wanted_key(session_id: str | None, subject: str | None) -> str:
    """The session key an operator names: a conversation id (hashed as the service hashes it), a shopper's
    subject (its account cart ``u-<tag>``), or both (that shopper's cart of that conversation)."""
    if subject is None:
        assert session_id is not None  # the parser asks for one of them
        return session_key(session_id)
    tag = subject_tag(subject)
    return account_key(tag) if session_id is None else f"{account_key(tag)}.{session_key(session_id)}"


def ownership(key: str) -> dict[str, Any]:
    """Whose a cart is, as operators see it: ``account`` (a signed-in shopper's one cart), ``shopper`` (a
    signed-in shopper's cart of one conversation or cart_id) or ``anonymous``, and the shopper's subject tag
    (16 hex of SHA-256; never the subject itself, which the service never stores)."""
    tag, is_account = owner_of_key(key)
    return {"kind": "account" if is_account else ("shopper" if tag else "anonymous"), "subject_tag": tag}


def whose(key: str) -> str:
    owner = ownership(key)
    return owner["kind"] if owner["subject_tag"] is None else f"{owner['kind']} {owner['subject_tag']}"


def report_damaged(damage: DamageReport) -> str:
    """Each damaged key the sweep skipped, on stderr; returns a note for the summary line."""
    for key in damage.damaged_keys:
        print(f"weft-mcp sessions: skipped damaged key {key}: {damage.reasons[key]}", file=sys.stderr)
    if damage.damaged > len(damage.damaged_keys):
        print(f"weft-mcp sessions: ... and {damage.damaged - len(damage.damaged_keys)} more", file=sys.stderr)
    if not damage.damaged:
        return ""
    return f"; {damage.damaged} damaged key(s) skipped (weft-mcp sessions purge <id> removes one)"


def describe(detail: CartDetail) -> str:
    """``show`` as text: a summary line, then one line per cart line (unreadable ones as ``?``, marked)."""
    if not detail.exists:
        return f"no cart for that id (key {detail.key})"
    ttl = "no expiry" if detail.ttl_seconds is None else f"expires in {detail.ttl_seconds} s"
    damaged = f", DAMAGED: {detail.damaged} (purge removes it)" if detail.damaged else ""
    idle = format_age(detail.idle_seconds)
    rows = [f"{detail.key} ({whose(detail.session_key)}): {len(detail.lines)} line(s), idle {idle}, {ttl}{damaged}"]
    for line in detail.lines:
        quantity, name, price = (line.get(part, "?") for part in ("quantity", "name", "price"))
        mark = " (damaged: unreadable line, left out of the cart)" if line.get("damaged") else ""
        rows.append(f"- {quantity} x {name} [{clean_text(line['product_id'])}] @ {price}{mark}")
    return "\n".join(rows)
