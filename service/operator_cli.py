"""The ``weft-mcp sessions`` subcommands: argument parsing, confirmation and output around ``service.operator``.

Kept apart from ``service.cli``, which only wires it in. The Redis-side modules are imported when a
sessions command runs, which only keeps them out of the ``weft-mcp serve`` supervisor; metrics need no
such care: ``service.cli`` imports prometheus-client at once, and the uvicorn workers that record
metrics are fresh processes started after ``serve`` has set ``PROMETHEUS_MULTIPROC_DIR``
(``service.metrics.prepare_multiprocess_dir``; one worker needs no directory).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import Any

from service.config import Settings, settings_error_line

# Exit codes (README, Operating): one meaning each, so a script can tell them apart.
EXIT_DONE = 0
EXIT_NOT_FOUND = 1  # show / purge of an id that has no cart
EXIT_USAGE = 2  # bad arguments or settings (argparse exits 2 too)
EXIT_REDIS_FAILED = 3
EXIT_NOT_CONFIRMED = 4  # a delete nobody confirmed: nothing was deleted

NO_REDIS = (
    "weft-mcp sessions: set WEFT_REDIS_URL (for example redis://127.0.0.1:6379/0) or WEFT_REDIS_SENTINELS: "
    "the embedded store keeps carts inside the serving process, where no other command can reach them."
)


def add_sessions_parser(commands: Any) -> None:
    """``sessions count | list [--limit N] | show ID | purge ID | purge-idle --older-than 7d``."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--json", action="store_true", help="machine-readable output on stdout")
    confirm = argparse.ArgumentParser(add_help=False)
    confirm.add_argument("--yes", "-y", action="store_true", help="delete without asking")

    sessions = commands.add_parser("sessions", help="count, list, show and purge carts in Redis (needs WEFT_REDIS_URL)")
    actions = sessions.add_subparsers(dest="action", required=True)
    actions.add_parser("count", parents=[common], help="how many carts exist (SCAN, never KEYS)")
    listing = actions.add_parser("list", parents=[common], help="carts with line counts and idle ages")
    listing.add_argument("--limit", type=int, default=20, help="most carts to show (default 20)")
    show = actions.add_parser("show", parents=[common], help="one cart, by the conversation id the client sends")
    show.add_argument("session_id", help="the conversation id as the client sent it (hashed ids are found too)")
    purge = actions.add_parser("purge", parents=[common, confirm], help="delete one conversation's cart")
    purge.add_argument("session_id", help="the conversation id as the client sent it")
    idle = actions.add_parser(
        "purge-idle", parents=[common, confirm], help="delete carts not used for a while (by _last_accessed)"
    )
    idle.add_argument("--older-than", required=True, help="idle age: 7d, 12h, 30m, 45s, 2w")
    idle.add_argument("--dry-run", action="store_true", help="only count the carts that would be deleted")


def run_sessions(args: argparse.Namespace) -> int:
    try:
        settings = Settings()
    except ValueError as exc:
        print(f"weft-mcp: {settings_error_line(exc)}", file=sys.stderr)
        return EXIT_USAGE
    if settings.uses_embedded_store:
        print(NO_REDIS, file=sys.stderr)
        return EXIT_USAGE
    if getattr(args, "limit", 1) < 1:
        print("weft-mcp sessions list: --limit must be at least 1", file=sys.stderr)
        return EXIT_USAGE
    older_than = None
    if args.action == "purge-idle":
        from service.operator import parse_age

        try:
            older_than = parse_age(args.older_than)
        except ValueError as exc:
            print(f"weft-mcp sessions purge-idle: {exc}", file=sys.stderr)
            return EXIT_USAGE
    return asyncio.run(_run(args, settings, older_than))


def _confirm(question: str, args: argparse.Namespace) -> bool:
    """``--yes``, or a "y" typed at a terminal; with no terminal to ask, refuse rather than guess."""
    if args.yes:
        return True
    if not sys.stdin.isatty():
        print(f"{question} Not deleting: no terminal to confirm on; pass --yes.", file=sys.stderr)
        return False
    print(f"{question} [y/N] ", end="", file=sys.stderr, flush=True)
    return sys.stdin.readline().strip().lower() in ("y", "yes")


async def _run(args: argparse.Namespace, settings: Settings, older_than: int | None) -> int:
    from redis.exceptions import RedisError

    from service.carts import CartStorageError, CartStore
    from service.operator import Progress, SessionsAdmin, as_json, format_age
    from service.storage_faults import diagnose

    store = CartStore.from_settings(settings)
    admin = SessionsAdmin(store)
    out = sys.stdout

    def emit(data: Any, text: str) -> None:
        out.write((as_json(data) if args.json else text) + "\n")

    def report_damaged() -> str:
        """Each damaged key the sweep skipped, on stderr; returns a note for the summary line."""
        damage = admin.last_damage
        for key in damage.damaged_keys:
            print(f"weft-mcp sessions: skipped damaged key {key}: {damage.reasons[key]}", file=sys.stderr)
        if damage.damaged > len(damage.damaged_keys):
            print(f"weft-mcp sessions: ... and {damage.damaged - len(damage.damaged_keys)} more", file=sys.stderr)
        if not damage.damaged:
            return ""
        return f"; {damage.damaged} damaged key(s) skipped (weft-mcp sessions purge <id> removes one)"

    try:
        if args.action == "count":
            counted = await admin.count(Progress("counting"))
            note = report_damaged()
            emit(counted, f"{counted.carts} cart(s) under {store.cart_pattern}{note}")
        elif args.action == "list":
            carts = await admin.list(args.limit)
            note = report_damaged()
            if args.json:
                out.write(as_json(carts) + "\n")
            else:
                out.write(f"{'session key':<40} {'lines':>5} {'idle':>6}\n")
                for cart in carts:
                    out.write(f"{cart.session_key:<40} {cart.lines:>5} {format_age(cart.idle_seconds):>6}\n")
                out.write(f"{len(carts)} cart(s) shown (SCAN order; --limit {args.limit}){note}\n")
        elif args.action == "show":
            detail = await admin.show(args.session_id)
            if args.json:
                out.write(as_json(detail) + "\n")
            elif not detail.exists:
                out.write(f"no cart for that id (key {detail.key})\n")
            else:
                ttl = "no expiry" if detail.ttl_seconds is None else f"expires in {detail.ttl_seconds} s"
                damaged = f", DAMAGED: {detail.damaged} (purge removes it)" if detail.damaged else ""
                out.write(f"{detail.key}: {len(detail.lines)} line(s), idle {format_age(detail.idle_seconds)}, "
                          f"{ttl}{damaged}\n")  # fmt: skip
                for line in detail.lines:
                    out.write(f"- {line.get('quantity', '?')} x {line.get('name', '?')} [{line['product_id']}] "
                              f"@ {line.get('price', '?')}\n")  # fmt: skip
            return EXIT_DONE if detail.exists else EXIT_NOT_FOUND
        elif args.action == "purge":
            detail = await admin.show(args.session_id)
            if not detail.exists:
                emit({"key": detail.key, "deleted": False}, f"no cart to delete (key {detail.key})")
                return EXIT_NOT_FOUND
            what = f"damaged: {detail.damaged}" if detail.damaged else f"{len(detail.lines)} line(s)"
            if not _confirm(f"Delete {detail.key} ({what})?", args):
                return EXIT_NOT_CONFIRMED
            key, deleted = await admin.purge(args.session_id)
            emit({"key": key, "deleted": deleted}, f"deleted {key}")
        elif args.action == "purge-idle":
            assert older_than is not None
            if args.dry_run or not args.yes:
                report = await admin.purge_idle(older_than, dry_run=True, progress=Progress("checking"))
                if args.dry_run or report.idle == 0:
                    note = report_damaged()
                    idle = f"{report.idle} of {report.scanned} cart(s) idle for more than {args.older_than}"
                    emit(report, idle + note)
                    return EXIT_DONE
                question = f"Delete {report.idle} cart(s) idle for more than {args.older_than}?"
                if not _confirm(question, args):
                    return EXIT_NOT_CONFIRMED
            report = await admin.purge_idle(older_than, progress=Progress("purging"))
            note = report_damaged()
            emit(report, f"deleted {report.deleted} of {report.scanned} cart(s) idle for more than "
                         f"{args.older_than}{note}")  # fmt: skip
    except (CartStorageError, RedisError) as exc:  # neither the URL nor redis-py's words: they may hold a password
        reason = str(exc) if isinstance(exc, CartStorageError) else diagnose(exc).reason
        print(f"weft-mcp sessions: Redis (WEFT_REDIS_URL) failed: {reason}", file=sys.stderr)
        return EXIT_REDIS_FAILED
    finally:
        await store.aclose()
    return EXIT_DONE
