"""``weft-mcp serve``: run the service with uvicorn (one process, or N worker processes); ``weft-mcp sessions``.

How uvicorn is run (deadlines, connection cap, SIGHUP) lives in ``service.http_server``.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING

from service.reloading import install_sighup_handler

if TYPE_CHECKING:
    from service.config import Settings


def main(argv: Sequence[str] | None = None) -> int:
    # First of all: a SIGHUP during start-up (imports, a long catalog load) must end nothing. The
    # other modules are imported only after this, so the window before it is the interpreter's own.
    install_sighup_handler()
    from service.operator_cli import add_sessions_parser, run_sessions

    parser = argparse.ArgumentParser(prog="weft-mcp", description="Weft: an MCP shopping-cart server.")
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="serve MCP over HTTP at /mcp")
    serve.add_argument("--host", help="address to bind (env WEFT_HOST, default 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port to bind (env WEFT_PORT, default 8000)")
    serve.add_argument(
        "--workers", type=int, help="worker processes (env WEFT_WORKERS, default 1); >1 needs WEFT_REDIS_URL"
    )
    add_sessions_parser(commands)
    args = parser.parse_args(argv)
    if args.command == "sessions":
        return run_sessions(args)
    return _serve(args)


def _serve(args: argparse.Namespace) -> int:
    from service import widget_views
    from service.auth import TokensFileError, build_auth
    from service.catalog import CatalogError
    from service.catalog_check import check_catalog
    from service.config import Settings, settings_error_line
    from service.http_server import serve
    from service.logs import configure_logging
    from service.metrics import prepare_multiprocess_dir
    from service.widget_views import WidgetViewError, served_pages

    # Flags win over the environment; workers read their settings from the environment.
    for name in ("host", "port", "workers"):
        value = getattr(args, name)
        if value is not None:
            os.environ[f"WEFT_{name.upper()}"] = str(value)
    try:
        settings = Settings()
    except ValueError as exc:
        print(f"weft-mcp: {settings_error_line(exc)}", file=sys.stderr)
        return 2
    if settings.workers > 1 and settings.uses_embedded_store:
        print(
            f"weft-mcp: --workers {settings.workers} needs a shared cart store: the embedded store keeps carts "
            "inside one process. Set WEFT_REDIS_URL (for example redis://127.0.0.1:6379/0) or use --workers 1.",
            file=sys.stderr,
        )
        return 2
    configure_logging(settings.log_level, settings.log_format)
    prepare_multiprocess_dir(settings.workers)  # before workers start: /metrics sums every worker's samples
    try:  # fail here, with one line, rather than in every worker with a traceback
        check_catalog(settings.stores_dir, settings.workers, settings.log_level, settings.log_format)
        build_auth(settings)  # an unreadable or malformed WEFT_AUTH_TOKENS_FILE
        served_pages(widget_views.WIDGETS_DIR)  # a half-installed widget view
    except (CatalogError, TokensFileError, WidgetViewError) as exc:
        print(f"weft-mcp: {exc}", file=sys.stderr)
        return 2
    # After a graceful stop uvicorn re-raises the SIGTERM it caught; exiting 0 then is the answer to a stop request.
    signal.signal(signal.SIGTERM, _stopped)
    serve(settings, **proxy_options(settings))
    return 0


def proxy_options(settings: Settings) -> dict[str, object]:
    """uvicorn believes ``X-Forwarded-For``/``-Proto`` only from ``WEFT_TRUSTED_PROXIES`` (default: from nobody).

    uvicorn's own default trusts 127.0.0.1; ours trusts no one until told, so a service that is
    reachable directly never takes a client's word for its address.
    """
    if not settings.trusted_proxies:
        return {"proxy_headers": False}
    return {"proxy_headers": True, "forwarded_allow_ips": ",".join(settings.trusted_proxies)}


def _stopped(signum: int, frame: object) -> None:
    raise SystemExit(0)


if __name__ == "__main__":
    raise SystemExit(main())
