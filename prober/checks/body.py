"""Read a response body within max_body (counted after decompression) and judge it."""

from __future__ import annotations

import json

import aiohttp
import regex

from prober.config.monitors import HttpMonitor
from prober.results import AssertionResult

CHUNK = 64 * 1024
_SNIPPET = 60


async def read_capped(response: aiohttp.ClientResponse, limit: int) -> tuple[bytes, bool]:
    """At most `limit` decoded bytes, and whether the body had more (a gzip bomb stops here)."""
    buffer = bytearray()
    while True:
        chunk = await response.content.read(min(CHUNK, limit + 1 - len(buffer)))
        if not chunk:
            return bytes(buffer), False
        buffer += chunk
        if len(buffer) > limit:
            return bytes(buffer[:limit]), True


def judge_response(
    spec: HttpMonitor, status: int, content: bytes, charset: str | None, time_left: float
) -> list[AssertionResult]:
    results = [
        AssertionResult(
            "status", status in spec.expect_status, str(status), spec.expect_status.text
        )
    ]
    if not spec.needs_body:
        return results
    text = content.decode(charset or "utf-8", errors="replace")
    for needle in spec.contains:
        found = needle in text
        results.append(
            AssertionResult(
                f"contains {needle!r}", found, "present" if found else "absent", "present"
            )
        )
    for needle in spec.not_contains:
        found = needle in text
        saw = f"present ({_around(text, needle)})" if found else "absent"
        results.append(AssertionResult(f"not_contains {needle!r}", not found, saw, "absent"))
    for pattern in spec.regex:
        results.append(_regex(pattern, text, time_left))
    if spec.json_:
        results.extend(_json(spec, content))
    return results


def _around(text: str, needle: str) -> str:
    at = text.find(needle)
    start = max(0, at - 20)
    snippet = text[start : at + len(needle) + 20].replace("\n", " ")
    return repr(snippet[:_SNIPPET])


def _regex(pattern: regex.Pattern[str], text: str, time_left: float) -> AssertionResult:
    name = f"regex {pattern.pattern!r}"
    try:
        found = pattern.search(text, timeout=max(0.01, time_left)) is not None
    except TimeoutError:
        return AssertionResult(name, False, "no verdict (the regex ran out of time)", "a match")
    return AssertionResult(name, found, "a match" if found else "no match", "a match")


def _json(spec: HttpMonitor, content: bytes) -> list[AssertionResult]:
    try:
        document = json.loads(content)
    except RecursionError:
        return [AssertionResult("json", False, "JSON nested too deeply", "a JSON document")]
    except ValueError as exc:
        saw = f"not JSON ({type(exc).__name__} at char {getattr(exc, 'pos', '?')})"
        return [AssertionResult("json", False, saw, "a JSON document")]
    return [assertion.judge(document) for assertion in spec.json_]
