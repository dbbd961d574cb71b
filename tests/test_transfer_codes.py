"""Transfer codes (``service.transfer_codes``): drawn with ``secrets``, shown BCDF-GHJK, typed any way, hashed
with the server secret; and the guessing odds README states, computed from the limits."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections import Counter

import pytest

from service.claim_limits import ClaimLimits
from service.transfer_codes import (
    ALPHABET,
    CODE_LENGTH,
    CodeShapeError,
    code_hash,
    display,
    guess_odds,
    new_code,
    normalize,
)

SECRET = b"a-test-secret-of-32-bytes-at-least!"


def test_alphabet_is_the_twenty_consonants_without_vowels() -> None:
    assert ALPHABET == "BCDFGHJKLMNPQRSTVWXZ"
    assert len(set(ALPHABET)) == 20 and not set(ALPHABET) & set("AEIOUY0123456789")


def test_new_codes_are_eight_letters_of_the_alphabet_drawn_with_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    codes = [new_code() for _ in range(2000)]
    assert all(len(code) == CODE_LENGTH and set(code) <= set(ALPHABET) for code in codes)
    assert len(set(codes)) == len(codes)
    letters = Counter("".join(codes))
    assert set(letters) == set(ALPHABET)  # 16,000 draws: every letter appears, none dominates
    assert max(letters.values()) < 2 * min(letters.values())

    drawn: list[str] = []

    def choice(sequence: str) -> str:
        drawn.append(sequence)
        return sequence[0]

    monkeypatch.setattr(secrets, "choice", choice)
    assert new_code() == "BBBBBBBB"
    assert drawn == [ALPHABET] * CODE_LENGTH


def test_display_groups_four_and_four() -> None:
    assert display("BCDFGHJK") == "BCDF-GHJK"
    assert normalize(display("BCDFGHJK")) == "BCDFGHJK"


@pytest.mark.parametrize(
    "typed",
    [
        "BCDF-GHJK",
        "bcdf-ghjk",
        "bcdfghjk",
        " Bcdf ghjk ",
        "b c d f g h j k",
        "BCDF--GHJK",
        "bcdf\tghjk\n",
        "BCDF\u2013GHJK",  # en dash, as a phone's keyboard writes it
        "BCDF\u00a0GHJK",  # no-break space
        "-BCDF-GHJK-",
    ],
)
def test_normalize_ignores_case_spaces_dashes_and_whitespace(typed: str) -> None:
    assert normalize(typed) == "BCDFGHJK"


@pytest.mark.parametrize(
    "typed",
    [
        "",
        "BCDF-GHJ",  # 7
        "BCDF-GHJKL",  # 9
        "BCDA-GHJK",  # a vowel
        "BCD1-GHJK",  # a digit
        "BCDF_GHJK",  # an underscore is not a dash
        "BCDF.GHJK",
        "BCDFGHJ\u00df",  # "ß".upper() is "SS": never upper-cased into the alphabet
        "\uff22CDFGHJK",  # a full-width B
        "B" * 65,
        "BCDF-GHJK" + " " * 60,  # over the input limit even though it would normalize
    ],
)
def test_normalize_refuses_anything_else_with_one_sentence(typed: str) -> None:
    with pytest.raises(CodeShapeError) as refused:
        normalize(typed)
    sentence = str(refused.value)
    assert sentence.count(".") == 1 and sentence.endswith(".") and "BCDF-GHJK" in sentence


@pytest.mark.parametrize("value", [None, 12345678, ["BCDFGHJK"], b"BCDFGHJK"])
def test_normalize_refuses_what_is_not_text(value: object) -> None:
    with pytest.raises(CodeShapeError):
        normalize(value)


def test_code_hash_is_the_hmac_of_the_normalized_code_with_the_secret() -> None:
    code = normalize("bcdf-ghjk")
    hashed = code_hash(SECRET, code)
    assert hashed == hmac.new(SECRET, b"code:BCDFGHJK", hashlib.sha256).hexdigest()[:32]
    assert len(hashed) == 32 and int(hashed, 16) >= 0
    assert code_hash(SECRET, normalize("BCDF GHJK")) == hashed  # every way of typing it hashes alike
    assert code_hash(SECRET + b"!", code) != hashed  # another secret, another hash
    assert code_hash(SECRET, "BCDFGHJL") != hashed
    assert hashlib.sha256(b"BCDFGHJK").hexdigest()[:32] != hashed  # not a plain hash anyone could reverse
    assert "BCDFGHJK" not in hashed
    with pytest.raises(ValueError):
        code_hash(b"", code)


def test_guessing_odds_at_the_default_limits() -> None:
    """README's figure: any of 1,000 live codes guessed within a day, at the deployment-wide failure limit."""
    limits = ClaimLimits("weft")
    guesses_per_day = limits.total * 86400 // limits.window_seconds
    per_guess = 1000 / len(ALPHABET) ** CODE_LENGTH
    per_day = guess_odds(1000, guesses_per_day)
    print(
        f"\ncode space 20^8 = {len(ALPHABET) ** CODE_LENGTH:,}; 1,000 live codes: {per_guess:.2e} per guess; "
        f"{limits.total} failures/{limits.window_seconds} s = {guesses_per_day:,} guesses/day "
        f"-> {per_day:.2e} per day (1 in {1 / per_day:,.0f})"
    )
    assert guesses_per_day == 2400
    assert per_guess == pytest.approx(3.9e-8, rel=0.01)
    assert per_day == pytest.approx(9.4e-5, rel=0.01)
    assert round(1 / per_day, -2) == 10700
    # A single caller at its own limit gets a tenth of that.
    assert guess_odds(1000, limits.per_caller * 24) == pytest.approx(per_day / 10, rel=0.01)
