"""Secret values and URL credentials out of every string that leaves the process."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

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


def public_text(text: str, limit: int = 200) -> str:
    """An error as the public may read it: what went wrong, not where.

    "connect: 10.0.3.7:5432 refused (https://db.internal/x)" -> "connect: [address]
    refused ([url])". Used for incident causes on the status page, feeds and reports.
    """
    text = _URL.sub("[url]", text)
    text = _ADDRESS.sub(_address, text)
    text = _HOST.sub("[host]", text)
    return text if len(text) <= limit else text[: limit - 1] + "…"
