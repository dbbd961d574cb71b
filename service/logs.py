"""One log format for the CLI, uvicorn and every worker process."""

from __future__ import annotations

import logging

FORMAT = "%(asctime)s %(levelname)s [%(process)d] %(name)s: %(message)s"


def configure_logging(level: str) -> None:
    """Set the root handler once; the SDK's own ``basicConfig`` then leaves it alone."""
    root = logging.getLogger()
    if not any(getattr(h, "_weft", False) for h in root.handlers):
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter(FORMAT))
        handler._weft = True  # type: ignore[attr-defined]
        root.handlers = [handler]
    root.setLevel(level)
    for name in ("mcp", "uvicorn.access", "httpx"):
        logging.getLogger(name).setLevel(max(logging.getLevelName(level), logging.WARNING))
