"""Durations ("500ms", "30s", "5m", "1h30m", "1d") and sizes ("1MiB", "64KB")."""

from __future__ import annotations

import re

_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")
_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}

_SIZE = re.compile(r"(\d+)\s*(B|KB|KiB|MB|MiB|GB|GiB)?", re.IGNORECASE)
_SIZE_UNITS = {
    "b": 1,
    "kb": 1000,
    "kib": 1024,
    "mb": 1000**2,
    "mib": 1024**2,
    "gb": 1000**3,
    "gib": 1024**3,
}


def parse_duration(value: object) -> float:
    """Seconds in a duration string. Bare numbers are refused: "60" could mean anything."""
    if isinstance(value, bool) or not isinstance(value, str):
        raise ValueError(f'a duration needs a unit, such as "30s", "5m" or "1h"; got {value!r}')
    text = value.strip().replace(" ", "")
    pos, total = 0, 0.0
    for match in _DURATION_PART.finditer(text):
        if match.start() != pos:
            break
        total += float(match.group(1)) * _DURATION_UNITS[match.group(2)]
        pos = match.end()
    if not text or pos != len(text):
        raise ValueError(
            f'{value!r} is not a duration; use forms such as "500ms", "30s", "5m", "1h30m"'
        )
    return total


def format_duration(seconds: float) -> str:
    """The shortest readable form: 90 -> "1m30s", 0.5 -> "500ms", 1.5 -> "1.5s" (to the ms)."""
    millis = round(seconds * 1000)
    if millis < 1000:
        return f"{millis}ms"
    rest, fraction = divmod(millis, 1000)
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if rest >= size:
            parts.append(f"{rest // size}{unit}")
            rest %= size
    if fraction:
        parts.append(f"{rest}.{fraction:03d}".rstrip("0") + "s")
    elif rest:
        parts.append(f"{rest}s")
    return "".join(parts)


def parse_size(value: object) -> int:
    """Bytes in an int or a size string such as "1MiB"."""
    if isinstance(value, bool):
        raise ValueError(f'expected a size such as 1048576 or "1MiB"; got {value!r}')
    if isinstance(value, int):
        if value <= 0:
            raise ValueError("must be more than 0 bytes")
        return value
    if isinstance(value, str):
        match = _SIZE.fullmatch(value.strip())
        if match:
            size = int(match.group(1)) * _SIZE_UNITS[(match.group(2) or "b").lower()]
            if size > 0:
                return size
    raise ValueError(f'{value!r} is not a size; use bytes (1048576) or "64KiB", "1MiB"')
