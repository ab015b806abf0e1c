"""Secret values and URL credentials out of every string that leaves the process, and
what the public may read of any text (`public_text`, `visible_text`)."""

from __future__ import annotations

import functools
import ipaddress
import re
from collections.abc import Iterable
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import regex

MASK = "***"
_SECRET_QUERY_KEYS = re.compile(
    r"token|key|secret|pass|auth|sig|signature|credential|session|code", re.IGNORECASE
)


def redact_url(url: str) -> str:
    """`https://u:pw@host/p?token=x&a=1` -> `https://u:***@host/p?token=***&a=1`."""
    try:
        parts = urlsplit(url)
        netloc = parts.netloc
        if parts.password is not None:
            userinfo, _, hostport = netloc.rpartition("@")
            user = userinfo.partition(":")[0]
            netloc = f"{user}:{MASK}@{hostport}"
        query = parts.query
        if query:
            pairs = parse_qsl(query, keep_blank_values=True)
            query = urlencode(
                [(k, MASK if _SECRET_QUERY_KEYS.search(k) else v) for k, v in pairs], safe="*"
            )
        return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))
    except ValueError:
        return MASK


class Redactor:
    """Replaces every configured secret value (and URL passwords) in a text with ***."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self._pattern: re.Pattern[str] | None = None
        self.update(secrets)

    def update(self, secrets: Iterable[str]) -> None:
        """The secrets of a reloaded config (the old ones are kept: they may still be in
        texts made before the reload)."""
        known = self._pattern.pattern.split("|") if self._pattern else []
        values = sorted({*(re.escape(s) for s in secrets if s), *known}, key=len, reverse=True)
        self._pattern = re.compile("|".join(values)) if values else None

    def __call__(self, text: str) -> str:
        if self._pattern is not None:
            text = self._pattern.sub(MASK, text)
        return _URL_PASSWORD.sub(rf"\1{MASK}@", text)


_URL_PASSWORD = re.compile(r"(\b[a-z][a-z0-9+.-]*://[^\s/:@]*:)[^\s/@]+@", re.IGNORECASE)


_URL = re.compile(r"\b[a-z][a-z0-9+.-]*://[^\s)\]>\"']+", re.IGNORECASE)
_ADDRESS = re.compile(r"\[?[0-9a-f]*[:.][0-9a-f:.]*[0-9a-f]\]?(?::\d+)?", re.IGNORECASE)
_HOST = re.compile(
    r"(?<![\w.-])(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}(?::\d+)?(?![\w-]|\.\w)",
    re.IGNORECASE,
)


def _address(match: re.Match[str]) -> str:
    token = match.group(0)
    bare = token.strip("[]") if token.startswith("[") else token
    if "]:" in token:
        bare = token[1 : token.index("]")]
    elif bare.count(":") == 1 and "." in bare:
        bare = bare.partition(":")[0]  # 10.0.0.1:5432
    try:
        ipaddress.ip_address(bare)
    except ValueError:
        return token
    return "[address]"


_SINGLE_LABEL = re.compile(
    r"(?<![\w.:/@\[-])[a-z](?:[a-z0-9-]{0,61}[a-z0-9])?:\d{1,5}(?![\w.:-])", re.IGNORECASE
)

# Invisible characters that can reorder or hide text: every format character (Unicode Cf:
# bidi embeddings, overrides and isolates, LRM/RLM/ALM, zero-width space and joiners, word
# joiner, BOM, soft hyphen, invisible operators, tags, ...), C0/C1 controls but tab and
# newlines, and the Unicode line/paragraph separators. Emoji keep what makes them one
# picture: a ZWJ between two pictographs (woman + ZWJ + laptop, rainbow flag) and the tags
# of a subdivision flag (black flag + tag letters + cancel tag: Scotland, Wales).
_CONTROLS = r"\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u2028\u2029"
_ANY_INVISIBLE = regex.compile(rf"[\p{{Cf}}{_CONTROLS}]")
_INVISIBLE = regex.compile(
    r"(?P<keep>\U0001F3F4[\U000E0020-\U000E007E]+\U000E007F"
    r"|(?<=\p{Extended_Pictographic}[\uFE0F\U0001F3FB-\U0001F3FF]?)\u200D"
    r"(?=\p{Extended_Pictographic}))"
    rf"|[\p{{Cf}}{_CONTROLS}]"
)


def _shown(match: regex.Match[str]) -> str:
    if match.group("keep") is not None:
        return match.group(0)
    return " " if match.group(0) in "\u2028\u2029" else ""


@functools.lru_cache(maxsize=4096)  # names and titles, at every snapshot: 0.1 us, not 1.3
def visible_text(text: str) -> str:
    """Text the operator wrote (a name, a group, a title), as the public may read it: with
    no character that reorders or hides what is shown ("Pay" U+202E "gnp.exe" reads
    "Payexe.png"; shown: "Paygnp.exe"). Korean, emoji and every other visible character
    pass unchanged."""
    if _ANY_INVISIBLE.search(text) is None:
        return text
    return _INVISIBLE.sub(_shown, text)


def public_text(text: str, limit: int = 200) -> str:
    """Free text as the public may read it: what went wrong, not where.

    "connect: 10.0.3.7:5432 refused (https://db.internal/x)" -> "connect: [address]
    refused ([url])"; "db.internal.example:5432" and "db-master:5432" -> "[host]";
    invisible characters removed (`visible_text`). Used for a push job's own message.
    """
    text = visible_text(text)
    text = _URL.sub("[url]", text)
    text = _ADDRESS.sub(_address, text)
    text = _HOST.sub("[host]", text)
    text = _SINGLE_LABEL.sub("[host]", text)
    return text if len(text) <= limit else text[: limit - 1] + "…"
