"""Where in the TOML text a key path lives, so errors can say `monitors.toml:12:`.

tomllib gives values without positions, so this scans the text once: table headers,
array-of-table indexes and `key =` lines, skipping the insides of multi-line strings,
arrays and inline tables (their errors point at the line of the key that holds them).
"""

from __future__ import annotations

import datetime as dt
import re
import tomllib

Path = tuple[str | int, ...]

_BARE = r"[A-Za-z0-9_-]+"
_QUOTED = r'"(?:[^"\\]|\\.)*"|\'[^\']*\''
_KEY_PART = rf"(?:{_BARE}|{_QUOTED})"
_DOTTED = rf"{_KEY_PART}(?:\s*\.\s*{_KEY_PART})*"
_HEADER = re.compile(rf"^\s*(\[\[|\[)\s*({_DOTTED})\s*\]\]?")
_KEY_LINE = re.compile(rf"^\s*({_DOTTED})\s*=")
_PART = re.compile(_KEY_PART)


def _split_key(dotted: str) -> list[str]:
    parts = []
    for match in _PART.finditer(dotted):
        part = match.group(0)
        if part[0] in "\"'":
            part = part[1:-1]
        parts.append(part)
    return parts


class _ValueScanner:
    """Tracks whether a value continues on the next line (open brackets or strings)."""

    def __init__(self) -> None:
        self.depth = 0
        self.multiline: str | None = None  # '"""' or "'''" while inside one

    @property
    def open(self) -> bool:
        return self.depth > 0 or self.multiline is not None

    def feed(self, text: str) -> None:
        i = 0
        while i < len(text):
            if self.multiline:
                end = text.find(self.multiline, i)
                if end < 0:
                    return
                i = end + 3
                self.multiline = None
                continue
            ch = text[i]
            if text.startswith(('"""', "'''"), i):
                self.multiline = text[i : i + 3]
                i += 3
            elif ch == '"':
                i = _skip_basic_string(text, i + 1)
            elif ch == "'":
                end = text.find("'", i + 1)
                i = len(text) if end < 0 else end + 1
            elif ch == "#":
                return
            else:
                if ch in "[{":
                    self.depth += 1
                elif ch in "]}":
                    self.depth = max(0, self.depth - 1)
                i += 1


def _skip_basic_string(text: str, i: int) -> int:
    while i < len(text):
        if text[i] == "\\":
            i += 2
        elif text[i] == '"':
            return i + 1
        else:
            i += 1
    return i


def format_path(path: Path) -> str:
    """("monitors", 3, "url") -> "monitors[3].url", as messages name keys."""
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top level)"


class KeyLines:
    def __init__(self, text: str) -> None:
        self._lines: dict[Path, int] = {}
        self._scan(text)

    def _scan(self, text: str) -> None:
        table: Path = ()
        array_counts: dict[Path, int] = {}
        scanner = _ValueScanner()
        for number, line in enumerate(text.splitlines(), start=1):
            if scanner.open:
                scanner.feed(line)
                continue
            header = _HEADER.match(line)
            if header:
                parts = _split_key(header.group(2))
                if header.group(1) == "[[":
                    table = (*self._resolve(parts[:-1], array_counts), parts[-1])
                    index = array_counts.get(table, 0)
                    array_counts[table] = index + 1
                    table = (*table, index)
                else:
                    table = self._resolve(parts, array_counts)
                self._lines.setdefault(table, number)
                continue
            key = _KEY_LINE.match(line)
            if key:
                path = (*table, *_split_key(key.group(1)))
                for end in range(len(table) + 1, len(path) + 1):  # `a.b = 1` also places `a`
                    self._lines.setdefault(path[:end], number)
                scanner.feed(line[key.end() :])

    @staticmethod
    def _resolve(parts: list[str], array_counts: dict[Path, int]) -> Path:
        """`[monitors.headers]` after `[[monitors]]` means the last monitor's headers."""
        path: Path = ()
        for part in parts:
            path = (*path, part)
            if path in array_counts:
                path = (*path, array_counts[path] - 1)
        return path

    def line_of(self, path: Path) -> int:
        """The line of the key, else of the nearest enclosing key or table; 1 if none."""
        for end in range(len(path), 0, -1):
            line = self._lines.get(path[:end])
            if line is not None:
                return line
        return 1


def syntax_error(filename: str, exc: tomllib.TOMLDecodeError) -> str:
    """tomllib's complaint as `FILE:LINE: syntax: what (column N)`."""
    message = str(exc)
    match = re.search(r"\(at line (\d+), column (\d+)\)", message)
    if match:
        message = message[: match.start()].strip()
        return f"{filename}:{match.group(1)}: syntax: {message} (column {match.group(2)})"
    return f"{filename}:1: syntax: {message}"


def toml_kind(value: object) -> str:
    """What a TOML value is, in words, for errors: "an integer", "a table", ..."""
    names = {
        bool: "a boolean",
        int: "an integer",
        float: "a float",
        str: "a string",
        list: "an array",
        dict: "a table",
        dt.datetime: "a date-time",
        dt.date: "a date",
        dt.time: "a time",
    }
    return next((n for t, n in names.items() if type(value) is t), type(value).__name__)
