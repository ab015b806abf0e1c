"""Fitting escaped text into a channel's length limits, for the channels with markup."""

from __future__ import annotations

from collections.abc import Callable

MORE_RESERVE = 20  # room kept for "\n…and N more"


def fit(text: str, limit: int, escape: Callable[[str], str]) -> str:
    """`text` escaped, cut to `limit` characters with an ellipsis, never inside an escape
    (an entity such as `&lt;`, a backslash pair)."""
    escaped = escape(text)
    if len(escaped) <= limit:
        return escaped
    out: list[str] = []
    size = 0
    for char in text:
        piece = escape(char)
        if size + len(piece) > limit - 1:
            break
        out.append(piece)
        size += len(piece)
    return "".join(out) + "…"


def join_within(entries: list[str], limit: int) -> str:
    """A line per entry while they fit in `limit` characters, then `…and N more`."""
    out: list[str] = []
    size = -1
    for index, entry in enumerate(entries):
        room = limit if index == len(entries) - 1 else limit - MORE_RESERVE
        if size + 1 + len(entry) > room:
            out.append(f"…and {len(entries) - index} more")
            break
        out.append(entry)
        size += 1 + len(entry)
    return "\n".join(out)
