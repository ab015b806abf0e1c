"""Load `monitors.toml`: parse, interpolate, validate, cross-check; every error at once.

Each error reads `monitors.toml:LINE: path.to.key: what is wrong`, and a config with any
error never starts a prober.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import pathlib
import tomllib
import urllib.parse
from collections.abc import Collection, Iterable, Mapping
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, SecretStr, ValidationError, create_model

from prober import notices as people  # a module: prober.notices imports prober.config too
from prober.config import remediation
from prober.config.database import Database
from prober.config.envsubst import MissingVariable, interpolate
from prober.config.locations import resolve_locations
from prober.config.monitors import (
    MONITOR_TYPES,
    Monitor,
    ProbeMonitor,
    PushMonitor,
    field_names,
)
from prober.config.settings import (
    NOTIFIER_TYPES,
    Agent,
    HubPeer,
    Maintenance,
    Notifier,
    Settings,
    subscription_errors,
)
from prober.config.tomlpos import KeyLines, Path, format_path, syntax_error, toml_kind
from prober.config.warnings import Source, collect

M = TypeVar("M", bound=BaseModel)

TOP_LEVEL = ("settings", "hubs", "agents", "defaults", "monitors", "notifiers", "maintenance")
NOT_DEFAULTABLE = {"id", "name", "type", "description"}
# keys about one service each: a default would restart or page for every monitor
PER_MONITOR = {
    "remediate": "names one service's remediation; set it on the monitor it restarts",
    "escalate": "is one service's escalation; set it on each monitor that needs it",
}


class ConfigError(Exception):
    def __init__(self, errors: list[str]) -> None:
        super().__init__("\n".join(errors))
        self.errors = errors


@dataclasses.dataclass(frozen=True)
class Config:
    path: pathlib.Path
    settings: Settings
    monitors: tuple[Monitor, ...]
    notifiers: tuple[Notifier, ...]
    maintenance: tuple[Maintenance, ...]
    database_url: str
    warnings: tuple[str, ...] = ()
    agents: tuple[Agent, ...] = ()
    hubs: tuple[str, ...] = ()  # other hubs' locations ([[hubs]]: PostgreSQL only)
    notices: tuple[people.Notice, ...] = ()  # incidents written by people (incidents_dir)

    @property
    def locations(self) -> tuple[str, ...]:
        """Every declared location: this hub's, then each agent's."""
        return (self.settings.location, *self.hubs, *(a.location for a in self.agents))

    def monitor(self, monitor_id: str) -> Monitor | None:
        return next((m for m in self.monitors if m.id == monitor_id), None)

    @property
    def incidents_path(self) -> pathlib.Path:
        """settings.incidents_dir, relative to the config file's folder."""
        return self.path.parent / self.settings.incidents_dir

    @property
    def database(self) -> Database:
        """settings.database (or $PROBER_DATABASE): a SQLite file relative to the config
        file's folder, or a PostgreSQL URL."""
        return Database.of(self.database_url, self.path.parent)

    @property
    def database_path(self) -> pathlib.Path:
        """The SQLite file, beside which the run's pid file and the monthly report files
        go. With PostgreSQL there is no file: they go in systemd's $STATE_DIRECTORY when it
        is set, else in `data/` beside the config, named after the database
        (`prober-NAME.pid`, `reports/`)."""
        if self.database.path is not None:
            return self.database.path
        name = urllib.parse.urlsplit(self.database_url).path.strip("/") or "postgresql"
        state = os.environ.get("STATE_DIRECTORY", "").split(":")[0]
        folder = pathlib.Path(state) if state else self.path.parent / "data"
        return folder / f"prober-{name}.db"

    def secret_values(self) -> set[str]:
        """Every secret's value, for the redactor; short ones would redact ordinary words."""
        found: set[str] = set()

        def walk(node: Any) -> None:
            if isinstance(node, SecretStr):
                value = node.get_secret_value()
                if len(value) >= 4:
                    found.add(value)
            elif isinstance(node, BaseModel):
                for name in type(node).model_fields:
                    walk(getattr(node, name))
            elif isinstance(node, dict):
                for value in node.values():
                    walk(value)
            elif isinstance(node, list | tuple):
                for value in node:
                    walk(value)

        walk([self.settings, self.agents, self.monitors, self.notifiers])
        return found


class _Collector:
    def __init__(self, filename: str, lines: KeyLines) -> None:
        self.filename = filename
        self.lines = lines
        self.errors: list[tuple[int, str]] = []
        self._paths: set[Path] = set()

    def add(self, path: Path, message: str) -> None:
        self._add(self.lines.line_of(path), path, message)

    def add_inherited(self, path: Path, key: str, message: str) -> None:
        """An error in a value the entry took from [defaults]: the line to edit is there."""
        line = self.lines.line_of(("defaults", key))
        self._add(line, path, f"{message}; {key} comes from [defaults]")

    def _add(self, line: int, path: Path, message: str) -> None:
        self.errors.append((line, f"{self.filename}:{line}: {format_path(path)}: {message}"))
        self._paths.add(path)

    def has_error(self, path: Path) -> bool:
        """Whether an error was reported at `path` or inside it."""
        return any(p[: len(path)] == path for p in self._paths)

    def add_validation(
        self,
        prefix: Path,
        exc: ValidationError,
        model: type[BaseModel],
        inherited: Collection[str] = (),
    ) -> None:
        for error in exc.errors():
            loc = tuple(p for p in error["loc"] if isinstance(p, str | int))
            message = _describe(error, model, loc)
            if loc and loc[0] in inherited:
                self.add_inherited((*prefix, *loc), str(loc[0]), message)
            else:
                self.add((*prefix, *loc), message)

    def sorted(self) -> list[str]:
        return [text for _, text in sorted(self.errors, key=lambda e: e[0])]


def _describe(error: Any, model: type[BaseModel], loc: tuple[str | int, ...]) -> str:
    kind, msg = error["type"], error["msg"]
    if kind == "missing":
        return "is required"
    if kind == "extra_forbidden":
        key = str(loc[-1]) if loc else ""
        return "unknown key" + _suggest(key, field_names(_model_at(model, loc[:-1])))
    if kind == "value_error":
        return str(msg).removeprefix("Value error, ")
    if kind == "literal_error":
        return f"must be {error['ctx']['expected']}; got {error['input']!r}"
    if kind in _BOUNDS:
        word, key = _BOUNDS[kind]
        return f"must be {word} {_number(error['ctx'][key])}; got {_number(error['input'])}"
    if kind == "too_short":
        count = error["ctx"]["min_length"]
        return f"needs at least {count} item{'' if count == 1 else 's'}"
    if kind.endswith("_type"):
        name = kind.removesuffix("_type")
        wanted = _TYPE_NAMES.get(name, name.replace("_", " "))
        return f"expected {wanted}, got {toml_kind(error['input'])}"
    return str(msg)


_BOUNDS = {
    "greater_than": ("more than", "gt"),
    "greater_than_equal": ("at least", "ge"),
    "less_than": ("less than", "lt"),
    "less_than_equal": ("at most", "le"),
}
_TYPE_NAMES = {
    "string": "a string",
    "int": "an integer",
    "float": "a number",
    "bool": "true or false",
    "list": "an array",
    "dict": "a table",
    "datetime": "a date-time",
}


def _number(value: object) -> str:
    return f"{value:g}" if isinstance(value, float) else repr(value)


def _model_at(model: type[BaseModel], loc: tuple[str | int, ...]) -> type[BaseModel]:
    """The nested model an `extra_forbidden` error is about (basic_auth -> BasicAuth)."""
    current = model
    for part in loc:
        if not isinstance(part, str):
            continue
        field = current.model_fields.get(part) or next(
            (f for f in current.model_fields.values() if f.alias == part), None
        )
        annotation = getattr(field, "annotation", None)
        for candidate in getattr(annotation, "__args__", (annotation,)):
            if isinstance(candidate, type) and issubclass(candidate, BaseModel):
                current = candidate
                break
    return current


def _suggest(key: str, known: Iterable[str]) -> str:
    close = difflib.get_close_matches(key, sorted(known), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def begin(
    path: str | os.PathLike[str], env: Mapping[str, str]
) -> tuple[pathlib.Path, _Collector, dict[str, Any], Any, list[MissingVariable]]:
    """Read, parse and interpolate a config file (a hub's or an agent's): the file, the
    error collector (every unset `${VAR}` already in it), the TOML as written, the data
    interpolated, the unset references."""
    file = pathlib.Path(path)
    text, raw = read_toml(file, str(path))
    out = _Collector(str(path), KeyLines(text))
    data, missing = interpolate(raw, env)
    for ref in missing:
        out.add(ref.path, str(ref))
    return file, out, raw, data, missing


def load_config(path: str | os.PathLike[str], env: Mapping[str, str] | None = None) -> Config:
    env = os.environ if env is None else env
    file, out, raw, data, missing = begin(path, env)
    filename = str(path)
    bad_paths = {ref.path[:2] for ref in missing}

    for key in data:
        if key not in TOP_LEVEL:
            out.add((key,), "unknown section" + _suggest(key, TOP_LEVEL))
    context = {"base_dir": str(file.parent)}
    settings = _validate(out, Settings, data.get("settings", {}), ("settings",), context)
    defaults = _validate_defaults(out, data.get("defaults", {}))
    monitors = _validate_list(out, "monitors", data, MONITOR_TYPES, defaults, context, bad_paths)
    notifiers = _validate_list(out, "notifiers", data, NOTIFIER_TYPES, {}, context, bad_paths)
    maintenance = [
        m
        for i, item in enumerate(_table_list(out, data, "maintenance"))
        if (m := _validate(out, Maintenance, item, ("maintenance", i), context)) is not None
    ]
    agents = [  # one with an unset ${VAR} is reported as that alone (not as a weak token)
        (i, a)
        for i, item in enumerate(_table_list(out, data, "agents"))
        if ("agents", i) not in bad_paths
        and (a := _validate(out, Agent, item, ("agents", i), context)) is not None
    ]
    hubs = [
        (i, h)
        for i, item in enumerate(_table_list(out, data, "hubs"))
        if (h := _validate(out, HubPeer, item, ("hubs", i), context)) is not None
    ]
    monitors = resolve_locations(out, data, defaults, agents, monitors, hubs)

    database_url = env.get("PROBER_DATABASE") or (settings.database if settings else "")
    if settings is not None and env.get("PROBER_DATABASE"):
        try:
            Settings(database=database_url)
        except ValidationError as exc:
            out.add(
                ("settings", "database"),
                f"PROBER_DATABASE: {_describe(exc.errors()[0], Settings, ())}",
            )
    if hubs and database_url.startswith("sqlite:"):
        out.add(
            ("hubs", hubs[0][0], "location"),
            "several hubs share one PostgreSQL database (settings.database = "
            '"postgresql://..."); with SQLite there is one hub',
        )
    listen = env.get("PROBER_LISTEN")
    if settings is not None and listen:  # containers listen on 0.0.0.0 whatever the file says
        try:
            Settings(listen=listen)
        except ValidationError as exc:
            out.add(
                ("settings", "listen"),
                f"PROBER_LISTEN: {_describe(exc.errors()[0], Settings, ())}",
            )
        else:
            settings = settings.model_copy(update={"listen": listen})

    incidents_dir = env.get("PROBER_INCIDENTS_DIR")  # the Docker image: on the data volume
    if settings is not None and incidents_dir:
        settings = settings.model_copy(update={"incidents_dir": incidents_dir})

    monitor_ids = _cross_check(out, data, defaults)
    if settings is not None:
        types = {item.get("id"): item.get("type") for _, item in _entries(data, "notifiers")}
        for where, message in subscription_errors(settings, types):
            out.add(where, message)
        for i, item in _entries(data, "monitors"):
            for inside, message in remediation.reference_errors(
                item, types, settings.allow_commands
            ):
                out.add(("monitors", i, *inside), message)
        _remember_env_values(raw, env, monitors)
    for i, window in enumerate(maintenance):
        for name in window.monitors:
            if name != "*" and name not in monitor_ids:
                out.add(
                    ("maintenance", i, "monitors"),
                    f"no monitor has id {name!r}" + _suggest(name, monitor_ids),
                )

    found: tuple[people.Notice, ...] = ()
    notice_errors: list[str] = []
    if settings is not None:
        try:
            found = people.load_notices(file.parent / settings.incidents_dir, monitor_ids)
        except people.NoticeError as exc:
            notice_errors = exc.errors
    if out.errors or notice_errors or settings is None:
        raise ConfigError(out.sorted() + notice_errors)
    source = Source(file, filename, raw, env, out.lines)
    warnings = collect(
        source, settings, monitors, notifiers, listen_from_env=bool(listen), agents=agents
    )
    return Config(
        path=file,
        settings=settings,
        monitors=tuple(m for _, m in monitors),
        notifiers=tuple(n for _, n in notifiers),
        maintenance=tuple(maintenance),
        database_url=database_url,
        warnings=tuple(warnings),
        agents=tuple(a for _, a in agents),
        hubs=tuple(dict.fromkeys(h.location for _, h in hubs if h.location != settings.location)),
        notices=found,
    )


def read_toml(file: pathlib.Path, filename: str) -> tuple[str, dict[str, Any]]:
    """The file's text and its TOML (also for an agent's config); else a ConfigError."""
    try:
        text = file.read_bytes().decode("utf-8")
    except FileNotFoundError:
        raise ConfigError([f"{filename}: no such file (set -c FILE or $PROBER_CONFIG)"]) from None
    except OSError as exc:  # permission denied, a folder
        reason = (exc.strerror or str(exc)).lower()
        raise ConfigError([f"{filename}: cannot read the config: {reason}"]) from None
    except UnicodeDecodeError as exc:
        raise ConfigError([f"{filename}:1: (file): not UTF-8 text ({exc.reason})"]) from None
    try:
        return text, tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([syntax_error(filename, exc)]) from None


def _validate(
    out: _Collector,
    model: type[M],
    data: Any,
    path: Path,
    context: dict[str, str],
    inherited: Collection[str] = (),
) -> M | None:
    if not isinstance(data, dict):
        out.add(path, f"expected a table, got {toml_kind(data)}")
        return None
    try:
        return model.model_validate(data, context=context)
    except ValidationError as exc:
        out.add_validation(path, exc, model, inherited)
        return None


def _table_list(out: _Collector, data: dict[str, Any], key: str) -> list[Any]:
    items = data.get(key, [])
    if not isinstance(items, list):
        out.add((key,), f"expected an array of tables ([[{key}]]), got {toml_kind(items)}")
        return []
    return items


def _validate_defaults(out: _Collector, defaults: Any) -> dict[str, Any]:
    if not isinstance(defaults, dict):
        out.add(("defaults",), f"expected a table, got {toml_kind(defaults)}")
        return {}
    known: dict[str, Any] = {}
    for model in MONITOR_TYPES.values():
        for name, field in model.model_fields.items():
            known.setdefault(field.alias or name, field)
    valid = {}
    for key, value in defaults.items():
        if key in NOT_DEFAULTABLE:
            out.add(("defaults", key), "cannot be set in [defaults]; set it on each monitor")
        elif key in PER_MONITOR:
            out.add(("defaults", key), f"cannot be set in [defaults]: it {PER_MONITOR[key]}")
        elif key not in known:
            out.add(("defaults", key), "unknown key" + _suggest(key, known))
        else:
            field = known[key]
            probe = create_model(  # validates just this key, with the monitor field's rules
                "Defaults",
                __config__=ConfigDict(strict=True, arbitrary_types_allowed=True),
                value=(field.annotation, field),
            )
            try:
                probe.model_validate({"value": value})
            except ValidationError as exc:
                for error in exc.errors():
                    out.add(("defaults", key), _describe(error, ProbeMonitor, (key,)))
                continue
            valid[key] = value
    return valid


def _validate_list(
    out: _Collector,
    key: str,
    data: dict[str, Any],
    kinds: Mapping[str, type[BaseModel]],
    defaults: dict[str, Any],
    context: dict[str, str],
    bad_paths: set[Path],
) -> list[tuple[int, Any]]:
    """Validate `[[monitors]]` or `[[notifiers]]`, choosing the model by `type`."""
    valid = []
    for i, item in enumerate(_table_list(out, data, key)):
        path: Path = (key, i)
        if not isinstance(item, dict):
            out.add(path, f"expected a table, got {toml_kind(item)}")
            continue
        kind = item.get("type")
        if kind is None:
            out.add((*path, "type"), "is required: one of " + ", ".join(kinds))
            continue
        model = kinds.get(kind) if isinstance(kind, str) else None
        if model is None:
            out.add(
                (*path, "type"),
                f"must be one of {', '.join(kinds)}; got {kind!r}" + _suggest(str(kind), kinds),
            )
            continue
        fields = field_names(model)
        inherited = {k: v for k, v in defaults.items() if k in fields and k not in item}
        parsed = _validate(out, model, inherited | item, path, context, inherited)
        if parsed is not None and path not in bad_paths:
            valid.append((i, parsed))
    return valid


def _entries(data: dict[str, Any], key: str) -> list[tuple[int, dict[str, Any]]]:
    """Every `[[key]]` table, valid or not."""
    items = data.get(key)
    if not isinstance(items, list):
        return []
    return [(i, item) for i, item in enumerate(items) if isinstance(item, dict)]


def _ids(out: _Collector, data: dict[str, Any], key: str) -> dict[str, int]:
    """Each id's first `[[key]]` entry. A repeated id is an error even in an entry that has
    errors of its own: every error at once."""
    first: dict[str, int] = {}
    for i, item in _entries(data, key):
        name = item.get("id")
        if not isinstance(name, str):
            continue
        if name in first:
            out.add((key, i, "id"), f"{name!r} is already used by {key}[{first[name]}]")
        first.setdefault(name, i)
    return first


def _report(out: _Collector, path: Path, item: dict[str, Any], key: str, message: str) -> None:
    """An error in `key` of the entry at `path`, which may hold it or take it from [defaults]."""
    if key in item:
        out.add((*path, key), message)
    else:
        out.add_inherited((*path, key), key, message)


def _refs(
    out: _Collector, path: Path, item: dict[str, Any], defaults: dict[str, Any], key: str
) -> list[str]:
    """The ids an entry's `key` names, its own or inherited; none when the list is invalid
    (reported already)."""
    value = item[key] if key in item else defaults.get(key, [])
    if not isinstance(value, list) or out.has_error((*path, key)):
        return []
    return [ref for ref in value if isinstance(ref, str)]


def _cross_check(out: _Collector, data: dict[str, Any], defaults: dict[str, Any]) -> set[str]:
    """Ids and references across entries, valid or not; returns every monitor id."""
    monitor_ids = _ids(out, data, "monitors")
    notifier_ids = _ids(out, data, "notifiers")
    monitors = dict(_entries(data, "monitors"))
    graph: dict[str, list[str]] = {}
    for i, item in monitors.items():
        path: Path = ("monitors", i)
        for ref in _refs(out, path, item, defaults, "notify"):
            if ref not in notifier_ids:
                message = f"no notifier has id {ref!r}" + _suggest(ref, notifier_ids)
                _report(out, path, item, "notify", message)
        own = item.get("id")
        depends_on = _refs(out, path, item, defaults, "depends_on")
        for ref in depends_on:
            if ref == own:
                _report(out, path, item, "depends_on", "a monitor cannot depend on itself")
            elif ref not in monitor_ids:
                message = f"no monitor has id {ref!r}" + _suggest(ref, monitor_ids)
                _report(out, path, item, "depends_on", message)
        if isinstance(own, str) and own not in graph:
            graph[own] = [r for r in depends_on if r in monitor_ids and r != own]
    for cycle in _find_cycles(graph):
        i = monitor_ids[cycle[0]]
        message = "dependency cycle: " + " -> ".join(cycle)
        _report(out, ("monitors", i), monitors[i], "depends_on", message)
    return set(monitor_ids)


def _remember_env_values(
    raw: dict[str, Any], env: Mapping[str, str], monitors: list[tuple[int, Monitor]]
) -> None:
    """What `${VAR}` put into each remediation command, for its output's redaction."""
    written = raw.get("monitors")
    for i, monitor in monitors:
        if monitor.remediate is None or monitor.remediate.command is None:
            continue
        table = written[i] if isinstance(written, list) else {}
        command = table.get("remediate", {}).get("command") if isinstance(table, dict) else None
        monitor.remediate._env_values = remediation.env_values(command, env)


def _find_cycles(graph: dict[str, list[str]]) -> list[list[str]]:
    """Each dependency cycle, from the monitor first reached back to itself, in config order."""
    state: dict[str, int] = {}  # 1 visiting, 2 done
    found: list[list[str]] = []
    stack: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in graph.get(node, []):
            if state.get(nxt) == 1:
                found.append([*stack[stack.index(nxt) :], nxt])
            elif nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = 2

    for node in graph:
        if node not in state:
            visit(node)
    return found


def is_push(monitor: Monitor) -> bool:
    return isinstance(monitor, PushMonitor)
