"""The ``weft-mcp sessions`` subcommands: argument parsing and settings around ``service.cart_admin``.

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

from service.cart_admin import EXIT_REDIS_FAILED, EXIT_USAGE, CartAdmin, parse_age
from service.config import Settings, settings_error_line

NO_REDIS = (
    "weft-mcp sessions: set WEFT_REDIS_URL (for example redis://127.0.0.1:6379/0) or WEFT_REDIS_SENTINELS: "
    "the embedded store keeps carts inside the serving process, where no other command can reach them."
)


SUBJECT_HELP = (
    "a signed-in shopper's subject (as the token names it): alone, the shopper's account cart; with an id, "
    "the shopper's cart of that conversation. It is hashed as the service hashes it and never printed."
)


def add_sessions_parser(commands: Any) -> None:
    """``sessions count | list [--limit N] | show [ID] [--subject S] | purge [ID] [--subject S] |
    purge-idle --older-than 7d``."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--json", action="store_true", help="machine-readable output on stdout")
    confirm = argparse.ArgumentParser(add_help=False)
    confirm.add_argument("--yes", "-y", action="store_true", help="delete without asking")

    sessions = commands.add_parser("sessions", help="count, list, show and purge carts in Redis (needs WEFT_REDIS_URL)")
    actions = sessions.add_subparsers(dest="action", required=True)
    actions.add_parser("count", parents=[common], help="how many carts exist (SCAN, never KEYS)")
    listing = actions.add_parser("list", parents=[common], help="carts with line counts and idle ages")
    listing.add_argument("--limit", type=int, default=20, help="most carts to show (default 20)")
    show = actions.add_parser(
        "show", parents=[common], help="one cart, by the conversation id the client sends and/or the shopper"
    )
    show.add_argument(
        "session_id", nargs="?", help="the conversation id as the client sent it (hashed ids are found too)"
    )
    show.add_argument("--subject", help=SUBJECT_HELP)
    purge = actions.add_parser("purge", parents=[common, confirm], help="delete one conversation's or shopper's cart")
    purge.add_argument("session_id", nargs="?", help="the conversation id as the client sent it")
    purge.add_argument("--subject", help=SUBJECT_HELP)
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
    if args.action in ("show", "purge") and args.session_id is None and args.subject is None:
        print(f"weft-mcp sessions {args.action}: give a conversation id, --subject, or both", file=sys.stderr)
        return EXIT_USAGE
    older_than = None
    if args.action == "purge-idle":
        try:
            older_than = parse_age(args.older_than)
        except ValueError as exc:
            print(f"weft-mcp sessions purge-idle: {exc}", file=sys.stderr)
            return EXIT_USAGE
    return asyncio.run(_run(args, settings, older_than))


async def _run(args: argparse.Namespace, settings: Settings, older_than: int | None) -> int:
    from redis.exceptions import RedisError

    from service.carts import CartStorageError, CartStore
    from service.storage_faults import diagnose

    store = CartStore.from_settings(settings)
    admin = CartAdmin(store, json_output=args.json, assume_yes=getattr(args, "yes", False))
    try:
        if args.action == "count":
            return await admin.count()
        if args.action == "list":
            return await admin.list(args.limit)
        if args.action == "show":
            return await admin.show(args.session_id, subject=args.subject)
        if args.action == "purge":
            return await admin.purge(args.session_id, subject=args.subject)
        assert older_than is not None  # purge-idle: parsed before any connection
        return await admin.purge_idle(older_than, args.older_than, dry_run=args.dry_run)
    except (CartStorageError, RedisError) as exc:  # neither the URL nor redis-py's words: they may hold a password
        reason = str(exc) if isinstance(exc, CartStorageError) else diagnose(exc).reason
        print(f"weft-mcp sessions: Redis (WEFT_REDIS_URL) failed: {reason}", file=sys.stderr)
        return EXIT_REDIS_FAILED
    finally:
        await store.aclose()
