"""cart_ids: issue/open round trips, one sentence for every failure, owner binding, rotation, length."""

from __future__ import annotations

import base64
import re
import secrets

import pytest
from hypothesis import given
from hypothesis import strategies as st

from service.cart_ids import INVALID_CART_ID, MAX_CART_ID_LENGTH, CartIdError, CartIds, subject_tag
from service.sessions import MAX_RAW_KEY_LENGTH, mint_key, session_key

SECRET = b"s" * 32
IDS = CartIds(SECRET)
ALICE, BOB = subject_tag("alice@example.com"), subject_tag("bob@example.com")
CART_ID = re.compile(r"^wc_[chrCHR][\x21-\x7e]+$")


def refused(cart_id: object, caller_tag: str | None = None, ids: CartIds = IDS) -> str:
    with pytest.raises(CartIdError) as caught:
        ids.open(cart_id, caller_tag)
    return str(caught.value)


@pytest.mark.parametrize("key", [mint_key(), session_key("x" * 200), "conv-123", "default", "a.b_c@d:e/f"])
def test_round_trip_for_each_kind(key: str) -> None:
    cart_id = IDS.issue(key)
    assert CART_ID.match(cart_id) and len(cart_id) <= MAX_CART_ID_LENGTH
    assert cart_id[3] == {"c": "c", "h": "h"}.get(key[0] if key[1:2] == "-" else "", "r")
    assert IDS.open(cart_id, None) == key
    assert key not in cart_id or cart_id[3] == "r"  # digest kinds carry the 16 bytes, not the hex


def test_longest_raw_key_fits_128_characters() -> None:
    longest = "~" * MAX_RAW_KEY_LENGTH
    assert session_key(longest) == longest
    scoped = f"u-{ALICE}.{longest}"
    for key in (longest, scoped):
        assert len(IDS.issue(key)) == 3 + 1 + MAX_RAW_KEY_LENGTH + 22 <= MAX_CART_ID_LENGTH
    assert IDS.open(IDS.issue(scoped), ALICE) == scoped


def test_every_failure_is_the_same_sentence() -> None:
    good = IDS.issue("conv-123")
    mac_flipped = good[:-1] + ("A" if good[-1] != "A" else "B")
    body_changed = IDS.issue("conv-124")[:-22] + good[-22:]
    forged_other_secret = CartIds(b"o" * 32).issue("conv-123")
    bad = [
        mac_flipped,
        body_changed,
        forged_other_secret,
        good[:-1],  # truncated
        good[:10],
        "wc_",
        "",
        "wc_x" + good[4:],  # unknown kind
        "xx_" + good[3:],  # wrong prefix
        "wc_h" + good[4:],  # wrong kind for the body
        good + "A",
        "wc_r" + "a" * 130,
        "wc_r{tag}" + "A" * 22,
        "wc_c" + "!" * 22 + "A" * 22,
        "wc_cé" + "A" * 22,
        42,
        None,
        ["wc_"],
    ]
    assert {refused(value) for value in bad} == {INVALID_CART_ID}


def test_forged_mac_for_a_digest_kind() -> None:
    minted = IDS.issue(mint_key())
    other = IDS.issue(mint_key())
    assert refused(minted[:-22] + other[-22:]) == INVALID_CART_ID
    body = base64.urlsafe_b64encode(secrets.token_bytes(16)).rstrip(b"=").decode()
    assert refused("wc_c" + body + minted[-22:]) == INVALID_CART_ID


def test_bound_to_the_signed_in_shopper() -> None:
    alices = IDS.issue(f"u-{ALICE}.conv-1")
    assert alices[3] == "R"
    assert IDS.open(alices, ALICE) == f"u-{ALICE}.conv-1"
    assert refused(alices, BOB) == INVALID_CART_ID  # another shopper's id
    assert refused(alices, None) == INVALID_CART_ID  # an anonymous caller
    lowered = alices[:3] + "r" + alices[4:]  # the same id claiming to be anonymous
    assert refused(lowered, None) == INVALID_CART_ID and refused(lowered, ALICE) == INVALID_CART_ID
    minted = f"u-{ALICE}.{mint_key()}"
    assert IDS.open(IDS.issue(minted), ALICE) == minted


def test_an_anonymous_cart_id_opens_for_anyone_as_the_anonymous_cart() -> None:
    anonymous = IDS.issue("conv-1")
    assert IDS.open(anonymous, None) == "conv-1"
    assert IDS.open(anonymous, ALICE) == "conv-1"  # a signed-in caller reaches that same anonymous cart


def test_rotation_accepts_previous_secrets_only_when_listed() -> None:
    old = CartIds(b"o" * 32).issue("conv-1")
    rotated = CartIds(SECRET, [b"o" * 32, b"p" * 32])
    assert rotated.open(old, None) == "conv-1"
    assert rotated.issue("conv-1") != old  # new ids are issued with the current secret
    assert refused(old, ids=CartIds(SECRET)) == INVALID_CART_ID
    assert refused(old, ids=CartIds(b"q" * 32, [b"p" * 32])) == INVALID_CART_ID


def test_issue_refuses_keys_no_cart_id_can_name() -> None:
    for key in ("", "x" * (MAX_RAW_KEY_LENGTH + 1), "a{b}", "has space"):
        with pytest.raises(ValueError):
            IDS.issue(key)


@given(
    st.one_of(
        st.text(alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=1, max_size=300),
        st.builds(lambda: mint_key()),
    ),
    st.one_of(st.none(), st.text(min_size=1, max_size=40)),
)
def test_open_of_issue_is_the_key(conversation_id: str, subject: str | None) -> None:
    key = (
        conversation_id
        if conversation_id.startswith("c-") and len(conversation_id) == 34
        else session_key(conversation_id)
    )
    tag = None if subject is None else subject_tag(subject)
    if tag:
        key = f"u-{tag}.{key}"
    cart_id = IDS.issue(key)
    assert len(cart_id) <= MAX_CART_ID_LENGTH
    assert IDS.open(cart_id, tag) == key
