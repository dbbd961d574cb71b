"""Keep the log short when clients misbehave: repeats are rate-limited, a client that leaves is one line.

Both are ``logging.Filter``s on the one root handler (see ``service.logs.configure_logging``), so they
see every record: ours, uvicorn's, the SDK's, and asyncio's loop exception handler, which is where
"socket.accept() out of system resource" (with a traceback) comes from when descriptors run out.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from dataclasses import dataclass

from starlette.requests import ClientDisconnect

REPEAT_WINDOW_SECONDS = 10.0
MAX_TRACKED_KINDS = 256
RATE_LIMITED = "weft_rate_limited"  # extra={RATE_LIMITED: True}: rate-limit this record below ERROR too


@dataclass
class _Seen:
    window_start: float
    suppressed: int = 0


class RepeatedRecordFilter(logging.Filter):
    """The first record of a kind passes; identical ones within ``window`` seconds are dropped and counted,
    and the next one after the window says how many were dropped.

    A kind is (logger, level, first line of the message, exception type). For an ERROR that line is the
    formatted one, so two different errors (two bad store folders) both show, while asyncio's detail
    lines (which socket) do not count; for client noise logged with ``extra={RATE_LIMITED: True}`` it is
    the unformatted one, so a flood is one line per window whatever client address it names.
    """

    def __init__(self, window: float = REPEAT_WINDOW_SECONDS) -> None:
        super().__init__()
        self.window = window
        self._seen: OrderedDict[tuple[object, ...], _Seen] = OrderedDict()

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.ERROR and not getattr(record, RATE_LIMITED, False):
            return True
        exc_type = record.exc_info[0].__name__ if record.exc_info and record.exc_info[0] else None
        text = str(record.msg) if getattr(record, RATE_LIMITED, False) else record.getMessage()
        kind = (record.name, record.levelno, text.partition("\n")[0], exc_type)
        now = time.monotonic()
        seen = self._seen.get(kind)
        if seen is not None and now - seen.window_start < self.window:
            seen.suppressed += 1
            return False
        if seen is not None and seen.suppressed:
            first, newline, rest = record.getMessage().partition("\n")
            note = f" (and {seen.suppressed} more like it in the {self.window:g} s before)"
            record.msg, record.args = first + note + newline + rest, None
        self._seen[kind] = _Seen(window_start=now)
        self._seen.move_to_end(kind)
        while len(self._seen) > MAX_TRACKED_KINDS:
            self._seen.popitem(last=False)
        return True


class ClientDisconnectFilter(logging.Filter):
    """A request whose client left before its body arrived is one short INFO line, not an ERROR traceback.

    The SDK's POST handler logs ``starlette.requests.ClientDisconnect`` with ``logger.exception``; nothing
    went wrong on our side, and a flood of such clients must not flood the log (the line is rate-limited).
    """

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, ClientDisconnect):
            record.msg, record.args = "Client went away before its request body arrived", None
            record.exc_info, record.exc_text, record.stack_info = None, None, None
            record.levelno, record.levelname = logging.INFO, "INFO"
            setattr(record, RATE_LIMITED, True)
        return True
