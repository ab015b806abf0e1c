"""What a hub tells an agent to probe: the body of `GET /api/agent/v1/monitors`.

    {"version": 1, "location": "frankfurt",
     "monitors": [{"id": "api", "type": "http", "url": "https://…", "interval": "60s", …}],
     "skipped": [{"monitor": "intranet", "why": "ca_file names a file on the hub's disk …"}]}

Every probing monitor whose `locations` include the agent's, as the hub validated it:
each field written so that the same pydantic model reads it back into an equal monitor
(durations as "60s", status sets and JSON assertions as written, regexes as their
patterns, secrets revealed: `${VAR}` was resolved on the hub, and the body travels only
over the authenticated channel; the agent keeps it in memory). A monitor that names a
file on the hub's disk (a CA file) cannot follow and is listed in `skipped` instead.

The bytes are deterministic (keys sorted, monitors in config order), so their SHA-256 is
a stable ETag: an agent's conditional fetch is a 304 until the assignment changes. Pure.
"""

from __future__ import annotations

import dataclasses
import decimal
import hashlib
import json
import typing
from collections.abc import Iterable
from typing import Any

import regex
from pydantic import BaseModel, BeforeValidator, SecretStr, ValidationError
from pydantic.fields import FieldInfo

from prober.config import Config
from prober.config.conditions import JsonAssertion, StatusSet
from prober.config.monitors import (
    MONITOR_TYPES,
    MonitorBase,
    ProbeMonitor,
    ProbingMonitor,
    resolve_file,
)
from prober.config.types import DownAfter, Duration, Interval, PositiveDuration

VERSION = 1
# The validators that read a duration ("60s"): a float in such a field is written back so.
_DURATIONS = {
    meta.func
    for alias in (Duration, PositiveDuration, Interval)
    for meta in typing.get_args(alias)[1:]
    if isinstance(meta, BeforeValidator)
}


class AssignmentError(ValueError):
    """Not an assignment this agent can run: what is wrong, naming the monitor."""


@dataclasses.dataclass(frozen=True, slots=True)
class Skipped:
    monitor: str
    why: str


@dataclasses.dataclass(frozen=True, slots=True)
class Assignment:
    location: str
    monitors: tuple[ProbingMonitor, ...]
    skipped: tuple[Skipped, ...] = ()


def assigned(config: Config, location: str) -> tuple[list[ProbingMonitor], list[Skipped]]:
    """The probing monitors `location` probes, and those of them that cannot be sent."""
    monitors, skipped = [], []
    for monitor in config.monitors:
        if not isinstance(monitor, ProbeMonitor) or location not in monitor.locations:
            continue
        files = [name for name in _file_fields(type(monitor)) if getattr(monitor, name)]
        if files:
            why = (
                f"{files[0]} names a file on the hub's disk, which an agent cannot read; "
                f"leave {location!r} out of this monitor's locations, or drop {files[0]}"
            )
            skipped.append(Skipped(monitor.id, why))
        else:
            monitors.append(monitor)
    return monitors, skipped


def encode_assignment(config: Config, location: str) -> bytes:
    """The response body for the agent at `location` (deterministic bytes)."""
    monitors, skipped = assigned(config, location)
    doc = {
        "version": VERSION,
        "location": location,
        "monitors": [monitor_json(m) for m in monitors],
        "skipped": [{"monitor": s.monitor, "why": s.why} for s in skipped],
    }
    return json.dumps(doc, ensure_ascii=False, sort_keys=True, separators=(",", ":")).encode()


def etag(body: bytes) -> str:
    """The quoted SHA-256 of a body, as the hub's ETag header carries it."""
    return f'"{hashlib.sha256(body).hexdigest()}"'


def decode_assignment(body: bytes) -> Assignment:
    """A body as the agent's monitors, validated by the hub's own models, or an
    AssignmentError naming what is wrong (`monitors[2] (api): url: …`)."""
    try:
        doc = json.loads(body)
    except ValueError as exc:  # UnicodeDecodeError too
        raise AssignmentError(f"assignment is not JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise AssignmentError("assignment is not a JSON object")
    if doc.get("version") != VERSION:
        raise AssignmentError(
            f"assignment version {doc.get('version')!r}; this agent reads {VERSION}: "
            "run the same prober version on the hub and its agents"
        )
    location, items, skipped = doc.get("location"), doc.get("monitors"), doc.get("skipped", [])
    if not isinstance(location, str) or not isinstance(items, list):
        raise AssignmentError("assignment needs a location (string) and monitors (array)")
    if not isinstance(skipped, list):
        raise AssignmentError("assignment: skipped must be an array")
    monitors = tuple(_monitor(i, item) for i, item in enumerate(items))
    seen: set[str] = set()
    for monitor in monitors:
        if monitor.id in seen:
            raise AssignmentError(f"assignment lists monitor {monitor.id!r} twice")
        seen.add(monitor.id)
    return Assignment(location, monitors, tuple(_skipped(i, s) for i, s in enumerate(skipped)))


def secret_values(monitors: Iterable[BaseModel]) -> set[str]:
    """Every secret in these monitors (4 characters or more), for the agent's redactor."""
    found: set[str] = set()

    def walk(node: Any) -> None:
        if isinstance(node, SecretStr):
            found.add(node.get_secret_value())
        elif isinstance(node, BaseModel):
            for name in type(node).model_fields:
                walk(getattr(node, name))
        elif isinstance(node, dict | list | tuple):
            for value in node.values() if isinstance(node, dict) else node:
                walk(value)

    walk(list(monitors))
    return {value for value in found if len(value) >= 4}


def monitor_json(monitor: BaseModel) -> dict[str, Any]:
    """A validated model's fields as plain JSON values its model reads back into an equal
    model (keys as written in TOML: aliases)."""
    out: dict[str, Any] = {}
    for name, field in type(monitor).model_fields.items():
        out[field.alias or name] = _plain(getattr(monitor, name), _is_duration(field))
    return out


def _plain(value: Any, duration: bool) -> Any:
    match value:
        case SecretStr():
            return value.get_secret_value()
        case bool() | int() | str() | None:
            return value
        case float():
            return _duration(value) if duration else value
        case DownAfter(count=int() as count):
            return count
        case DownAfter(seconds=float() as seconds):
            return _duration(seconds)
        case StatusSet():
            return value.text[1:-1].split(", ")  # each item as written, "[200, 2xx]"
        case JsonAssertion():
            return value.text
        case regex.Pattern():
            return value.pattern
        case BaseModel():
            return monitor_json(value)
        case dict():
            return {str(k): _plain(v, duration) for k, v in value.items()}
        case list() | tuple():
            return [_plain(v, duration) for v in value]
    raise TypeError(f"cannot send a {type(value).__name__} to an agent")  # a new field type


def _duration(seconds: float) -> str:
    """Seconds as a duration string that parses back to the same float."""
    text = repr(seconds)
    if "e" in text or "inf" in text or "nan" in text:
        text = format(decimal.Decimal(seconds), "f")  # exact, if long
    return f"{text}s"


def _is_duration(field: FieldInfo) -> bool:
    """Whether a field reads durations, as `interval: Interval` or `PositiveDuration | None`."""

    def walk(node: Any) -> bool:
        metadata = getattr(node, "__metadata__", ())
        if any(isinstance(m, BeforeValidator) and m.func in _DURATIONS for m in metadata):
            return True
        return any(walk(arg) for arg in typing.get_args(node))

    return walk(field.annotation) or any(
        isinstance(m, BeforeValidator) and m.func in _DURATIONS for m in field.metadata
    )


def _file_fields(model: type[BaseModel]) -> list[str]:
    """Fields that name a file on the hub's disk (checked by resolve_file)."""
    validators = model.__pydantic_decorators__.field_validators.values()
    return [name for v in validators if v.func is resolve_file for name in v.info.fields]


def _monitor(i: int, item: object) -> ProbingMonitor:
    ident = item.get("id") if isinstance(item, dict) else None
    where = f"monitors[{i}]" + (f" ({ident})" if isinstance(ident, str) else "")
    if not isinstance(item, dict):
        raise AssignmentError(f"{where}: expected an object")
    model = MONITOR_TYPES.get(item.get("type"))  # type: ignore[arg-type]
    if model is None or not model.probing:
        raise AssignmentError(f"{where}: type {item.get('type')!r} is not a probing monitor")
    try:
        monitor: MonitorBase = model.model_validate(item)
    except ValidationError as exc:
        first = exc.errors(include_url=False, include_input=False)[0]
        path = ".".join(str(part) for part in first["loc"])
        raise AssignmentError(f"{where}: {path}: {first['msg']}") from None
    return typing.cast(ProbingMonitor, monitor)


def _skipped(i: int, item: object) -> Skipped:
    if not isinstance(item, dict) or not all(
        isinstance(item.get(k), str) for k in ("monitor", "why")
    ):
        raise AssignmentError(f"skipped[{i}]: expected {{'monitor': id, 'why': text}}")
    return Skipped(item["monitor"], item["why"])
