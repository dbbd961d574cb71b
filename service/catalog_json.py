"""Reading a scraped JSON file so that one bad record costs that record, never the file.

Two things a plain ``json.loads`` gets wrong for scraped catalogs:

* Numbers: a float loses the text (``19.999999999999999`` becomes 20.0) and an int of more than
  4,300 digits raises. Here every JSON number stays its literal text (``JSONNumber``), so a price is
  read from exactly what the shop wrote (``service.prices``), and nothing about a number can fail.
* Records: one record nested 100,000 deep raises ``RecursionError`` for the whole file. The file is
  parsed in one call when it can be (fast); when not, the records list is parsed element by element
  and an element that cannot be parsed is skipped (its end found by a string-aware bracket scan)
  and handed on as ``UNREADABLE``, so it is counted and keeps its position.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

RECORDS_KEY = "products"


class JSONNumber:
    """A JSON number's literal text. Not a ``str`` (a numeric ``name`` is no name) and not a number."""

    __slots__ = ("text",)

    def __init__(self, text: str) -> None:
        self.text = text

    def __repr__(self) -> str:
        return f"JSONNumber({self.text!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, JSONNumber) and other.text == self.text

    def __hash__(self) -> int:
        return hash(self.text)


class Unreadable:
    """Stands in for a record that could not be parsed, so that it is counted and positions stay right."""

    def __repr__(self) -> str:
        return "UNREADABLE"


UNREADABLE = Unreadable()

_DECODER = json.JSONDecoder(parse_float=JSONNumber, parse_int=JSONNumber, parse_constant=JSONNumber)
_WHITESPACE = re.compile(r"[ \t\n\r]*")
# Inside a value: a whole string, or one bracket or comma (anything else is skipped over).
_STRUCTURE = re.compile(r'"(?:[^"\\]|\\.)*"|[\[\]{},]', re.DOTALL)


class DocumentError(ValueError):
    """The file's own structure (not one record) is broken; the message says where."""


def read_document(path: Path) -> Any:
    """The whole JSON file (a leading BOM allowed) with numbers as ``JSONNumber``; ``ValueError`` or ``OSError``.

    Bytes that are not UTF-8 cost the records holding them (``UNREADABLE``), not the file: the text is
    decoded with U+FFFD in their place, and a record with U+FFFD in it is taken for one of those.
    """
    raw = path.read_bytes()
    try:
        return loads(raw.decode("utf-8-sig"))
    except UnicodeDecodeError:
        pass
    document = loads(raw.decode("utf-8-sig", errors="replace"))
    records = document.get(RECORDS_KEY) if isinstance(document, dict) else document
    if isinstance(records, list):
        records[:] = [UNREADABLE if _holds_replacement(record) else record for record in records]
    return document


def _holds_replacement(value: Any) -> bool:
    """Whether any text in ``value`` (walked without recursion: records may be deep) holds U+FFFD."""
    pending = [value]
    while pending:
        item = pending.pop()
        if isinstance(item, str):
            if "\ufffd" in item:
                return True
        elif isinstance(item, dict):
            pending.extend(item.keys())
            pending.extend(item.values())
        elif isinstance(item, list):
            pending.extend(item)
    return False


def loads(text: str) -> Any:
    """``text`` parsed in one call, or, when a record in it cannot be, its records one by one.

    Only the records list (the top-level list or the top-level object's ``"products"``) is parsed
    element by element; any other part that cannot be parsed makes the document unreadable.
    """
    try:
        return _DECODER.decode(text)
    except (ValueError, RecursionError) as exc:
        whole_error: BaseException = exc
    try:
        return _Scanner(text).document()
    except DocumentError:
        raise
    except (ValueError, RecursionError):
        raise DocumentError(_one_line(whole_error)) from whole_error


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:300] or type(exc).__name__


class _Scanner:
    """The document's top level by hand, so the records list can be read element by element."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0

    def document(self) -> Any:
        self.skip_space()
        if self.peek() == "[":
            found: Any = self.records()
        elif self.peek() == "{":
            found = self.top_object()
        else:
            found = self.value()
        self.skip_space()
        if self.pos != len(self.text):
            raise self.error("extra data after the document")
        return found

    def top_object(self) -> dict[str, Any]:
        found: dict[str, Any] = {}
        self.pos += 1  # "{"
        self.skip_space()
        if self.peek() == "}":
            self.pos += 1
            return found
        while True:
            self.skip_space()
            if self.peek() != '"':
                raise self.error("expected a key")
            key = self.value()
            self.skip_space()
            self.expect(":")
            self.skip_space()
            found[key] = self.records() if key == RECORDS_KEY and self.peek() == "[" else self.value()
            self.skip_space()
            if self.take() == "}":
                return found
            self.pos -= 1
            self.expect(",")

    def records(self) -> list[Any]:
        """The list at ``pos``, one element at a time; an element that cannot be parsed becomes ``UNREADABLE``."""
        found: list[Any] = []
        self.pos += 1  # "["
        self.skip_space()
        if self.peek() == "]":
            self.pos += 1
            return found
        while True:
            self.skip_space()
            start = self.pos
            try:
                found.append(self.value())
            except (ValueError, RecursionError):
                self.pos = start
                self.skip_element()
                found.append(UNREADABLE)
            self.skip_space()
            if self.take() == "]":
                return found
            self.pos -= 1
            self.expect(",")

    def value(self) -> Any:
        value, self.pos = _DECODER.raw_decode(self.text, self.pos)
        return value

    def skip_element(self) -> None:
        """Move to the end of the list element at ``pos``: the first ``,`` or ``]`` outside brackets and strings."""
        depth = 0
        for match in _STRUCTURE.finditer(self.text, self.pos):
            token = match.group()
            if token in "[{":
                depth += 1
            elif token in "]}":
                if depth == 0:
                    self.pos = match.start()
                    return
                depth -= 1
            elif token == "," and depth == 0:
                self.pos = match.start()
                return
        raise self.error("a record never ends")

    def skip_space(self) -> None:
        match = _WHITESPACE.match(self.text, self.pos)
        assert match is not None  # the pattern matches the empty string
        self.pos = match.end()

    def peek(self) -> str:
        return self.text[self.pos : self.pos + 1]

    def take(self) -> str:
        self.pos += 1
        return self.text[self.pos - 1 : self.pos]

    def expect(self, char: str) -> None:
        if self.take() != char:
            raise self.error(f"expected {char!r}")

    def error(self, what: str) -> DocumentError:
        line = self.text.count("\n", 0, self.pos) + 1
        return DocumentError(f"{what} at line {line} (char {self.pos})")
