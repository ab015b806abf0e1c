"""Conditions compiled once at load and judged per check: status sets and JSON assertions.

Pure: no I/O, no clock. Each judgement is an AssertionResult that reads as
"saw X, wanted Y".
"""

from __future__ import annotations

import dataclasses
import json
import operator
import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # imported in judge(): prober.checks imports this package at load
    from prober.results import AssertionResult

_RANGE = re.compile(r"([1-5])xx|(\d{3})\s*-\s*(\d{3})|(\d{3})", re.IGNORECASE)


@dataclasses.dataclass(frozen=True, slots=True)
class StatusSet:
    ranges: tuple[tuple[int, int], ...]
    text: str

    def __contains__(self, status: int) -> bool:
        return any(lo <= status <= hi for lo, hi in self.ranges)


def parse_status_set(items: object) -> StatusSet:
    if not isinstance(items, list) or not items:
        items = [items]
    ranges: list[tuple[int, int]] = []
    texts: list[str] = []
    for item in items:
        if isinstance(item, bool):
            raise ValueError(f"{item!r} is not a status code")
        if isinstance(item, int):
            if not 100 <= item <= 599:
                raise ValueError(f"{item} is not an HTTP status code (100-599)")
            ranges.append((item, item))
            texts.append(str(item))
            continue
        match = _RANGE.fullmatch(item.strip()) if isinstance(item, str) else None
        if not match:
            raise ValueError(f'{item!r} is not a status: use 200, "2xx" or "200-299"')
        if match.group(1):
            base = int(match.group(1)) * 100
            ranges.append((base, base + 99))
        elif match.group(2):
            lo, hi = int(match.group(2)), int(match.group(3))
            if lo > hi:
                raise ValueError(f"{item!r}: the range is backwards")
            ranges.append((lo, hi))
        else:
            ranges.append((int(match.group(4)),) * 2)
        texts.append(str(item).strip())
    return StatusSet(tuple(ranges), "[" + ", ".join(texts) + "]")


# --- JSON assertions: `services.database.response_time_ms < 500`, `items[0].id exists` ---

_OPS: dict[str, Callable[[Any, Any], bool]] = {
    "==": operator.eq,
    "!=": operator.ne,
    "<=": operator.le,
    ">=": operator.ge,
    "<": operator.lt,
    ">": operator.gt,
}
_ASSERTION = re.compile(
    r"^\s*(?P<path>[^\s=!<>]+)\s*(?:(?P<op>==|!=|<=|>=|<|>)\s*(?P<lit>.+?)|(?P<exists>not\s+exists|exists))\s*$"
)
_SEGMENT = re.compile(r"([^.\[\]]+)|\[(\d+)\]")
_MISSING = object()


@dataclasses.dataclass(frozen=True, slots=True)
class JsonAssertion:
    text: str
    path: tuple[str | int, ...]
    op: str  # one of _OPS, "exists" or "not exists"
    expected: Any = None

    def judge(self, document: Any) -> AssertionResult:
        from prober.results import AssertionResult

        actual = _walk(document, self.path)
        name = f"json {self.text}"
        if self.op in ("exists", "not exists"):
            present = actual is not _MISSING
            ok = present if self.op == "exists" else not present
            saw = "present" if present else "missing"
            return AssertionResult(name, ok, saw, "present" if self.op == "exists" else "missing")
        wanted = f"{self.op} {_show(self.expected)}"
        if actual is _MISSING:
            return AssertionResult(name, False, f"{_path_text(self.path)} missing", wanted)
        return AssertionResult(
            name, _compare(actual, self.op, self.expected), _show(actual), wanted
        )


def _compare(actual: Any, op: str, expected: Any) -> bool:
    # bool is an int in Python; in JSON `true == 1` must be false.
    if isinstance(actual, bool) != isinstance(expected, bool):
        return op == "!="
    if op in ("==", "!="):
        return bool(_OPS[op](actual, expected))
    numbers = (int, float)
    comparable = (isinstance(actual, numbers) and isinstance(expected, numbers)) or (
        isinstance(actual, str) and isinstance(expected, str)
    )
    return comparable and bool(_OPS[op](actual, expected))


def _walk(document: Any, path: tuple[str | int, ...]) -> Any:
    node = document
    for key in path:
        if isinstance(key, int) and isinstance(node, list) and -len(node) <= key < len(node):
            node = node[key]
        elif isinstance(key, str) and isinstance(node, dict) and key in node:
            node = node[key]
        elif isinstance(key, str) and key.isdigit() and isinstance(node, list):
            index = int(key)
            if index >= len(node):
                return _MISSING
            node = node[index]
        else:
            return _MISSING
    return node


def _show(value: Any, limit: int = 80) -> str:
    text = json.dumps(value, ensure_ascii=False)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _path_text(path: tuple[str | int, ...]) -> str:
    out = ""
    for key in path:
        out += f"[{key}]" if isinstance(key, int) else (f".{key}" if out else key)
    return out or "$"


def parse_json_assertion(text: str) -> JsonAssertion:
    match = _ASSERTION.match(text)
    if not match:
        raise ValueError(
            f"{text!r} is not an assertion; write `path op value` (ops == != < <= > >=) "
            "or `path exists`, e.g. 'status == \"ok\"'"
        )
    path_text = match.group("path")
    if path_text in ("$", "."):
        path: tuple[str | int, ...] = ()
    else:
        path_text = path_text.removeprefix("$.").removeprefix("$")
        path = tuple(_parse_path(path_text, text))
    if match.group("exists"):
        return JsonAssertion(text, path, " ".join(match.group("exists").split()))
    literal = match.group("lit")
    try:
        expected = json.loads(literal)
    except ValueError:
        raise ValueError(
            f"{text!r}: {literal} is not a JSON value (strings need double quotes)"
        ) from None
    op = match.group("op")
    if op not in ("==", "!=") and (
        isinstance(expected, bool) or not isinstance(expected, int | float | str)
    ):
        raise ValueError(f"{text!r}: {op} compares numbers or strings, not {literal}")
    return JsonAssertion(text, path, op, expected)


def _parse_path(path_text: str, text: str) -> list[str | int]:
    parts: list[str | int] = []
    pos = 0
    for match in _SEGMENT.finditer(path_text):
        gap = path_text[pos : match.start()]
        if gap not in ("", ".") or (gap == "." and pos == 0):
            raise ValueError(f"{text!r}: cannot read the path {path_text!r}")
        parts.append(match.group(1) if match.group(1) is not None else int(match.group(2)))
        pos = match.end()
    if pos != len(path_text) or not parts:
        raise ValueError(f"{text!r}: cannot read the path {path_text!r}")
    return parts
