"""Public text: no URLs, addresses or host names (dotted or single-label with a port), and
no character that reorders or hides what the public reads."""

from __future__ import annotations

import unicodedata

import pytest

from prober.redact import public_text, redact_url, visible_text

RLO, ZWSP, ZWJ = "\u202e", "\u200b", "\u200d"
# Every character the page must not show: bidi embeddings, overrides, isolates and marks,
# zero-width space / non-joiner / joiner, word joiner, BOM, soft hyphen, an invisible
# operator, a stray tag, C0 and C1 controls.
INVISIBLE = (
    "\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u200e\u200f\u061c"
    "\u200b\u200c\u200d\u2060\ufeff\u00ad\u2062\U000e0041\x00\x1b\x7f\x9b"
)


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        (
            "connect: 10.0.3.7:5432 refused (https://db.internal/x)",
            "connect: [address] refused ([url])",
        ),
        ("connect to db.internal.example:5432 failed", "connect to [host] failed"),
        ("backup to db-master:5432 failed", "backup to [host] failed"),
        ("localhost:8080 and [::1]:8080 refused", "[host] and [address] refused"),
        ("Redis cache01:6379 timed out", "Redis [host] timed out"),
        # what is not a host stays
        ("at 05:30 KST, exit code 2: retry", "at 05:30 KST, exit code 2: retry"),
        ("status: saw 503, wanted [200]", "status: saw 503, wanted [200]"),
        ("a:b:5432", "a:b:5432"),
        ("결제 서버 응답 없음", "결제 서버 응답 없음"),
    ],
)
def test_public_text_masks_where(text: str, shown: str) -> None:
    assert public_text(text) == shown


def test_public_text_is_bounded() -> None:
    assert public_text("x" * 500) == "x" * 199 + "…"


def test_public_text_strips_invisible_characters() -> None:
    text = f"disk {RLO}lluf{ZWSP} on db-master:5432"
    assert public_text(text) == "disk lluf on [host]"


def test_every_invisible_character_is_removed() -> None:
    shown = visible_text(f"A{INVISIBLE}B")
    assert shown == "AB"
    assert not any(unicodedata.category(c) in ("Cf", "Cc") for c in shown)


def test_line_separators_become_spaces_and_newlines_stay() -> None:
    assert visible_text("a\u2028b\u2029c") == "a b c"
    assert visible_text("one\ntwo\tthree") == "one\ntwo\tthree"


@pytest.mark.parametrize(
    "text",
    [
        "결제 API (서울)",
        "Zahlungs-API ✅",
        "👩\u200d💻 on call",  # a ZWJ sequence is one picture
        "🏳️\u200d🌈 🧑🏽\u200d💻 👨\u200d👩\u200d👧",  # with VS16 and a skin tone before the ZWJ
        "🏴\U000e0067\U000e0062\U000e0073\U000e0063\U000e0074\U000e007f Scotland",  # tag flag
        "🇰🇷 Seoul",
    ],
)
def test_korean_and_emoji_pass_unchanged(text: str) -> None:
    assert visible_text(text) == text
    assert public_text(text) == text


def test_a_joiner_outside_an_emoji_is_removed() -> None:
    assert visible_text(f"Pay{ZWJ}Pal") == "PayPal"
    assert visible_text(f"👩{ZWJ}x") == "👩x"
    assert visible_text(f"{ZWJ}💻") == "💻"


def test_redact_url_still_masks_credentials() -> None:
    assert redact_url("https://u:pw@h.example/p?token=x&a=1") == (
        "https://u:***@h.example/p?token=***&a=1"
    )
