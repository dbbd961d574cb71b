"""Which conversation is calling: DESIGN.md's order, validation and key derivation."""

from __future__ import annotations

import re

import pytest

from service.sessions import SessionError, resolve_session, session_key, shorten


def test_order_of_sources() -> None:
    meta = {"sessionId": "s", "conversationId": "c", "openai/session": "o"}
    envelope = {"sessionId": "e", "conversationId": "ec"}
    assert resolve_session(meta, envelope, "default").source == "sessionId"
    del meta["sessionId"]
    assert resolve_session(meta, envelope, "default").id == "c"
    del meta["conversationId"]
    found = resolve_session(meta, envelope, "default")
    assert (found.id, found.source) == ("o", "openai/session")
    found = resolve_session({}, envelope, "default")
    assert (found.id, found.source) == ("e", "envelope:sessionId")
    found = resolve_session(None, {"conversationId": "ec"}, "default")
    assert (found.id, found.source) == ("ec", "envelope:conversationId")


def test_fallback_modes() -> None:
    shared = resolve_session({"progressToken": 1}, None, "default")
    assert (shared.id, shared.source, shared.key, shared.is_fallback) == ("default", "fallback", "default", True)
    with pytest.raises(SessionError, match="conversation id"):
        resolve_session({}, {}, "reject")


@pytest.mark.parametrize("bad", ["", " ", "a b", "x" * 257, "tab\there", "ünïcode", 42, ["list"], {"d": 1}])
def test_invalid_ids_are_rejected_not_guessed(bad: object) -> None:
    with pytest.raises(SessionError, match="sessionId"):
        resolve_session({"sessionId": bad}, {"sessionId": "other"}, "default")


@pytest.mark.parametrize(
    "unsafe", ["default", "a*", "a?b", "[ab]", "{tag}", "back\\slash", "h-0123", "c-0123", "u-1", "x" * 101, "y" * 256]
)
def test_unsafe_ids_are_hashed(unsafe: str) -> None:
    key = session_key(unsafe)
    assert re.fullmatch(r"h-[0-9a-f]{32}", key)
    assert key == session_key(unsafe)  # stable
    assert resolve_session({"sessionId": unsafe}, None, "default").key == key


def test_an_explicit_default_id_is_not_the_fallback_cart() -> None:
    assert resolve_session({"sessionId": "default"}, None, "default").key != resolve_session({}, None, "default").key


def test_safe_ids_stay_readable() -> None:
    for safe in ("conv-123", "v1/abc:def", "x" * 100, "a.b_c@d"):
        assert session_key(safe) == safe
    assert re.fullmatch(r"h-[0-9a-f]{32}", session_key("x" * 101))  # 101..128 characters: hashed since cart_ids
    assert session_key("a*") != session_key("a?")


def test_shorten_hides_most_of_a_long_id() -> None:
    assert shorten("short-id") == "short-id"
    long_id = "abcdefghijklmnopqrstuvwxyz"
    assert shorten(long_id) == "abcdefgh…(26)"
    assert long_id not in shorten(long_id)
