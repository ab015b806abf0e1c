"""Logging: key=value lines or JSON objects, with every secret value redacted.

Two layers keep secrets out. RedactingFilter cleans each record's message and traceback
before any handler sees them; the formatters then redact the text they write once more,
so nothing that reaches the output (a stack, a field parsed out of the message) has
bypassed the redactor.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import re
import sys
from typing import Literal

from prober.redact import Redactor

LogFormat = Literal["text", "json"]
FORMATS: tuple[LogFormat, ...] = ("text", "json")


class RedactingFilter(logging.Filter):
    def __init__(self, redact: Redactor) -> None:
        super().__init__()
        self._redact = redact

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        clean = self._redact(message)
        if clean != message or record.args:
            record.msg, record.args = clean, None
        if record.exc_info and record.exc_info[1] is not None:
            record.exc_text = self._redact(logging.Formatter().formatException(record.exc_info))
            record.exc_info = None
        return True


class TextFormatter(logging.Formatter):
    """`2026-11-23 12:00:00,123 INFO prober.service: monitor=api outcome=down ...`"""

    def __init__(self, redact: Redactor) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")
        self._redact = redact

    def format(self, record: logging.LogRecord) -> str:
        return self._redact(super().format(record))


class JsonFormatter(logging.Formatter):
    """One object per line: ts (UTC, ms), level, logger, msg, the message's key=value
    pairs as string fields (`monitor=api latency_ms=12` -> "monitor": "api",
    "latency_ms": "12"), and exc / stack when present.

    Pairs are parsed as the code writes them: `key=value` up to the next space, or
    `key="value with spaces"`; a key that would replace ts, level, logger, msg, exc or
    stack stays in msg only. Values are strings, so a field keeps one type across lines.
    """

    def __init__(self, redact: Redactor) -> None:
        super().__init__()
        self._redact = redact

    def format(self, record: logging.LogRecord) -> str:
        message = self._redact(record.getMessage())
        entry: dict[str, str] = {
            "ts": _utc(record.created),
            "level": record.levelname,
            "logger": record.name,
            "msg": message,
        }
        for key, value in pairs(message):
            if key not in _RESERVED:
                entry.setdefault(key, value)
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            entry["exc"] = self._redact(record.exc_text)
        if record.stack_info:
            entry["stack"] = self._redact(self.formatStack(record.stack_info))
        return json.dumps(entry, ensure_ascii=False)


_RESERVED = frozenset({"ts", "level", "logger", "msg", "exc", "stack"})

# key=value, key="quoted value" (a quote inside it ends the value only where the next
# pair or the end follows: messages put error text in quotes without escaping it).
_PAIR = re.compile(
    r"""(?:^|(?<=\s))([A-Za-z_][\w.]*)=(?:"(.*?)"(?=\s+[A-Za-z_][\w.]*=|\s*$)|"([^"]*)"|(\S*))"""
)


def pairs(message: str) -> list[tuple[str, str]]:
    """The key=value pairs of a log message, in order."""
    found = []
    for match in _PAIR.finditer(message):
        key, spanning, quoted, bare = match.groups()
        found.append((key, next(v for v in (spanning, quoted, bare) if v is not None)))
    return found


def _utc(created: float) -> str:
    stamp = dt.datetime.fromtimestamp(created, dt.UTC).isoformat(timespec="milliseconds")
    return stamp.replace("+00:00", "Z")


def setup(redact: Redactor, level: int = logging.INFO, log_format: LogFormat = "text") -> None:
    handler = logging.StreamHandler(sys.stderr)
    formatter = JsonFormatter(redact) if log_format == "json" else TextFormatter(redact)
    handler.setFormatter(formatter)
    handler.addFilter(RedactingFilter(redact))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # APScheduler logs every job run at INFO; at 10,000 monitors that is noise.
    logging.getLogger("apscheduler").setLevel(logging.WARNING)
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
