"""Incidents written by people: the files in `settings.incidents_dir`, as read.

Detected incidents (prober.incidents) say what failed and when; a notice says why and what
next, in the operator's words, with the Statuspage lifecycle (investigating -> identified
-> monitoring -> resolved). One file per notice; its stem is its id in the APIs. Loading
and validation: `load_notices` (file:line errors); writing: prober.notice_files, for the
`prober incident` command.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import difflib
import itertools
import pathlib
import re
import tomllib
from collections.abc import Collection, Iterable
from enum import StrEnum
from typing import Any, TypeVar

from prober.config.tomlpos import KeyLines, Path, format_path, syntax_error, toml_kind


class Impact(StrEnum):
    NONE = "none"
    MINOR = "minor"
    MAJOR = "major"
    CRITICAL = "critical"


class Progress(StrEnum):
    """An update's status, in Statuspage's words."""

    INVESTIGATING = "investigating"
    IDENTIFIED = "identified"
    MONITORING = "monitoring"
    RESOLVED = "resolved"


class ComponentStatus(StrEnum):
    """A component's status as a person declares it (Statuspage's vocabulary), mildest first."""

    OPERATIONAL = "operational"
    UNDER_MAINTENANCE = "under_maintenance"
    DEGRADED_PERFORMANCE = "degraded_performance"
    PARTIAL_OUTAGE = "partial_outage"
    MAJOR_OUTAGE = "major_outage"

    @property
    def severity(self) -> int:
        return _COMPONENT_ORDER.index(self)


_COMPONENT_ORDER = tuple(ComponentStatus)


@dataclasses.dataclass(frozen=True, slots=True)
class Update:
    at: dt.datetime  # aware, as written
    status: Progress
    body: str  # Markdown source, as written
    notify: bool = True  # tell subscribers


@dataclasses.dataclass(frozen=True, slots=True)
class Notice:
    id: str  # the file's stem
    title: str
    impact: Impact
    components: tuple[tuple[str, ComponentStatus], ...]  # monitor id -> status, file order
    detected: str | None  # a monitor id: attach to its incident at the first update's time
    updates: tuple[Update, ...]  # oldest first (files append)

    @property
    def status(self) -> Progress:
        return self.updates[-1].status

    @property
    def resolved(self) -> bool:
        return self.status is Progress.RESOLVED

    @property
    def created_at(self) -> dt.datetime:
        return self.updates[0].at

    @property
    def updated_at(self) -> dt.datetime:
        return self.updates[-1].at

    @property
    def resolved_at(self) -> dt.datetime | None:
        return self.updates[-1].at if self.resolved else None


# ---- reading: every file in settings.incidents_dir, validated with file:line errors ----

MAX_TITLE = 200  # characters
MAX_BODY = 20_000  # characters of Markdown in one update
KEYS = ("title", "impact", "components", "detected", "updates")
UPDATE_KEYS = ("at", "status", "body", "notify")
STEM = re.compile(r"[a-z0-9_-]+")
E = TypeVar("E", bound=StrEnum)


class NoticeError(Exception):
    """A file that does not validate: every error at once, `FILE:LINE: key: what`."""

    def __init__(self, errors: list[str]) -> None:
        super().__init__("\n".join(errors))
        self.errors = errors


def load_notices(folder: pathlib.Path, monitor_ids: Collection[str]) -> tuple[Notice, ...]:
    """Every `*.toml` in `folder`, by name (no folder: none). Raises NoticeError with the
    errors of every file."""
    if not folder.exists():
        return ()
    if not folder.is_dir():
        raise NoticeError([f"{folder}: settings.incidents_dir is not a folder"])
    notices: list[Notice] = []
    errors: list[str] = []
    for file in sorted(folder.glob("*.toml")):
        if file.name.startswith("."):  # an editor's or our own temporary file
            continue
        try:
            notices.append(parse_notice(file, read_text(file), monitor_ids))
        except NoticeError as exc:
            errors.extend(exc.errors)
    if errors:
        raise NoticeError(errors)
    return tuple(notices)


def read_text(file: pathlib.Path) -> str:
    try:
        return file.read_bytes().decode("utf-8")
    except OSError as exc:
        raise NoticeError([f"{file}: cannot read: {(exc.strerror or str(exc)).lower()}"]) from None
    except UnicodeDecodeError as exc:
        raise NoticeError([f"{file}:1: (file): not UTF-8 text ({exc.reason})"]) from None


def parse_notice(file: pathlib.Path, text: str, monitor_ids: Collection[str]) -> Notice:
    """One incident file's text, validated; its id is the file's stem."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise NoticeError([syntax_error(str(file), exc)]) from None
    check = _Checker(str(file), KeyLines(text), monitor_ids)
    if not STEM.fullmatch(file.stem):
        check.add((), f"the file name {file.stem!r} is not a slug: use a-z, 0-9, - and _ only")
    notice = check.notice(file.stem, data)
    if check.errors or notice is None:
        raise NoticeError([message for _, message in sorted(check.errors, key=lambda e: e[0])])
    return notice


class _Checker:
    def __init__(self, filename: str, lines: KeyLines, monitor_ids: Collection[str]) -> None:
        self.filename = filename
        self.lines = lines
        self.monitor_ids = monitor_ids
        self.errors: list[tuple[int, str]] = []

    def add(self, path: Path, message: str) -> None:
        line = self.lines.line_of(path)
        where = format_path(path) if path else "(file)"
        self.errors.append((line, f"{self.filename}:{line}: {where}: {message}"))

    def notice(self, stem: str, data: dict[str, Any]) -> Notice | None:
        for key in data:
            if key not in KEYS:
                self.add((key,), "unknown key" + _suggest(key, KEYS))
        title = self.text(data, ("title",), MAX_TITLE)
        impact = self.choice(data, ("impact",), Impact)
        components = self.components(data.get("components", {}))
        detected = data.get("detected")
        if detected is not None and self.monitor(("detected",), detected) is None:
            detected = None
        updates = self.updates(data.get("updates"))
        if title is None or impact is None or components is None or updates is None:
            return None
        return Notice(stem, title, impact, components, detected, updates)

    def text(self, data: dict[str, Any], path: Path, limit: int) -> str | None:
        value = data.get(str(path[-1]))
        if value is None:
            self.add(path, "is required")
        elif not isinstance(value, str):
            self.add(path, f"expected a string, got {toml_kind(value)}")
        elif not value.strip():
            self.add(path, "must not be empty")
        elif len(value) > limit:
            self.add(path, f"is {len(value):,} characters long; at most {limit:,}")
        else:
            return value
        return None

    def choice(self, data: dict[str, Any], path: Path, kind: type[E]) -> E | None:
        value = data.get(str(path[-1]))
        if value is None:
            self.add(path, "is required: one of " + ", ".join(kind))
            return None
        return self.member(path, value, kind)

    def member(self, path: Path, value: object, kind: type[E]) -> E | None:
        if isinstance(value, str) and value in {k.value for k in kind}:
            return kind(value)
        names = [str(k) for k in kind]
        hint = _suggest(value, names) if isinstance(value, str) else ""
        self.add(path, f"must be one of {', '.join(names)}; got {value!r}{hint}")
        return None

    def monitor(self, path: Path, value: object) -> str | None:
        if not isinstance(value, str):
            self.add(path, f"expected a monitor id (a string), got {toml_kind(value)}")
            return None
        if value not in self.monitor_ids:
            self.add(path, f"no monitor has id {value!r}" + _suggest(value, self.monitor_ids))
            return None
        return value

    def components(self, value: object) -> tuple[tuple[str, ComponentStatus], ...] | None:
        if not isinstance(value, dict):
            self.add(("components",), f"expected a table, got {toml_kind(value)}")
            return None
        found = []
        for monitor_id, status in value.items():
            path = ("components", monitor_id)
            known = self.monitor(path, monitor_id)
            declared = self.member(path, status, ComponentStatus)
            if known is not None and declared is not None:
                found.append((known, declared))
        return tuple(found) if len(found) == len(value) else None

    def updates(self, value: object) -> tuple[Update, ...] | None:
        if value is None:
            self.add((), "needs at least one [[updates]]")
            return None
        if not isinstance(value, list) or not all(isinstance(u, dict) for u in value):
            self.add(
                ("updates",), f"expected an array of tables ([[updates]]), got {toml_kind(value)}"
            )
            return None
        if not value:
            self.add(("updates",), "needs at least one [[updates]]")
            return None
        found = [self.update(i, item) for i, item in enumerate(value)]
        updates = [u for u in found if u is not None]
        for i, (before, after) in enumerate(itertools.pairwise(found), start=1):
            if before is not None and after is not None and after.at < before.at:
                self.add(
                    ("updates", i, "at"),
                    f"{after.at.isoformat()} is before the previous update's "
                    f"{before.at.isoformat()}: updates go oldest first",
                )
        return tuple(updates) if len(updates) == len(value) else None

    def update(self, i: int, item: dict[str, Any]) -> Update | None:
        for key in item:
            if key not in UPDATE_KEYS:
                self.add(("updates", i, key), "unknown key" + _suggest(key, UPDATE_KEYS))
        at = self.moment(("updates", i, "at"), item.get("at"))
        status = self.choice(item, ("updates", i, "status"), Progress)
        body = self.text(item, ("updates", i, "body"), MAX_BODY)
        notify = item.get("notify", True)
        if not isinstance(notify, bool):
            self.add(("updates", i, "notify"), f"expected true or false, got {toml_kind(notify)}")
        if at is None or status is None or body is None or not isinstance(notify, bool):
            return None
        return Update(at, status, body, notify)

    def moment(self, path: Path, value: object) -> dt.datetime | None:
        """A date-time with an offset: TOML's own, or a string in ISO 8601."""
        example = "as in 2026-12-02T17:40:00+09:00"
        if value is None:
            self.add(path, f"is required: a date-time with an offset, {example}")
            return None
        moment = value
        if isinstance(value, str):
            try:
                moment = dt.datetime.fromisoformat(value)
            except ValueError:
                self.add(path, f"{value!r} is not a date-time, {example}")
                return None
        if not isinstance(moment, dt.datetime):
            self.add(
                path, f"expected a date-time with an offset, {example}; got {toml_kind(value)}"
            )
            return None
        if moment.utcoffset() is None:
            self.add(path, f"{value!s} has no offset: write one, {example}")
            return None
        return moment


def _suggest(key: str, known: Iterable[str]) -> str:
    close = difflib.get_close_matches(key, sorted(known), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""
