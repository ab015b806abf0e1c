"""What a valid config may still get wrong: secrets other users can read, a page or
/metrics on every interface, checks aimed at a cloud's metadata service, no canaries.

Each warning is one line, `monitors.toml:LINE: key.path: what, and what to do` (or
`monitors.toml: ...` about the file as a whole). The prober starts anyway; `validate` and
every command print them (prober.cli._load).
"""

from __future__ import annotations

import dataclasses
import pathlib
import re
from collections.abc import Iterator, Mapping, Sequence
from typing import Any
from urllib.parse import urlsplit

from pydantic import BaseModel, SecretStr

from prober import addresses
from prober.config.monitors import (
    DnsMonitor,
    HttpMonitor,
    Monitor,
    ProbeMonitor,
    TcpMonitor,
    TlsMonitor,
)
from prober.config.settings import Agent, Notifier, Settings
from prober.config.tomlpos import KeyLines, Path, format_path
from prober.config.types import parse_host_port

# The envsubst grammar: `$${` is a literal, `${NAME` starts a reference.
_REFERENCE = re.compile(r"\$\$\{|\$\{([A-Za-z_][A-Za-z0-9_]*)")
# Header values count as secrets by their names (Accept and User-Agent are not).
_SECRET_HEADER = re.compile(r"auth|token|key|secret|pass|cookie|session|sig|cred", re.I)


@dataclasses.dataclass(frozen=True)
class Source:
    """The file as written: where a key is, and which values were typed into it."""

    file: pathlib.Path
    name: str  # as the user named it: warnings repeat it
    raw: Mapping[str, Any]  # the parsed TOML before ${VAR} interpolation
    env: Mapping[str, str]
    lines: KeyLines

    def at(self, path: Path) -> str:
        return f"{self.name}:{self.lines.line_of(path)}: {format_path(path)}"


def collect(
    source: Source,
    settings: Settings,
    monitors: Sequence[tuple[int, Monitor]],
    notifiers: Sequence[tuple[int, Notifier]],
    listen_from_env: bool,
    agents: Sequence[tuple[int, Agent]] = (),
) -> list[str]:
    """Every warning, in a fixed order; `monitors`, `notifiers` and `agents` keep their
    indexes."""
    sections: list[tuple[Path, BaseModel]] = [
        (("settings",), settings),
        *((("agents", i), a) for i, a in agents),
        *((("monitors", i), m) for i, m in monitors),
        *((("notifiers", i), n) for i, n in notifiers),
    ]
    return [
        *_canaries(source, settings),
        *readable_secrets(source, sections),
        *_listeners(source, settings, listen_from_env),
        *_metadata_targets(source, monitors),
    ]


def _canaries(source: Source, settings: Settings) -> list[str]:
    if settings.canaries:
        return []
    return [
        f"{source.name}: settings.canaries is empty: if this prober's own network fails, every "
        "monitor will be recorded as down instead of unknown"
    ]


def readable_secrets(source: Source, sections: Sequence[tuple[Path, BaseModel]]) -> list[str]:
    """One line for the file: readable by others while a secret is typed into it. A
    secret taken from ${VAR} is not in the file, so it does not count. `sections`: each
    model with its key path (a hub's settings, agents, monitors, notifiers; an agent's
    settings and hub)."""
    try:
        mode = source.file.stat().st_mode & 0o777
    except OSError:
        return []
    if not mode & 0o044:
        return []
    secrets = [p for path, model in sections for p in _secret_paths(model, path)]
    found = {where for path in secrets if (where := _typed_at(source, path)) is not None}
    if not found:
        return []
    typed = sorted(found, key=lambda p: (source.lines.line_of(p), format_path(p)))
    named = [f"{format_path(p)} (line {source.lines.line_of(p)})" for p in typed[:3]]
    more = f" and {len(typed) - 3} more" if len(typed) > 3 else ""
    readers = "other users" if mode & 0o004 else "its group"
    return [
        f"{source.name}: {readers} can read this file (mode {mode:04o}) and it holds secrets "
        f"written in it: {', '.join(named)}{more}: chmod 600 {source.name}, or write each as "
        "${VAR} and set VAR in the prober's environment only"
    ]


def _secret_paths(node: Any, path: Path) -> Iterator[Path]:
    """Key paths of the non-empty secrets under a config model (SecretStr fields, header
    values with secret-sounding names, a password in an http monitor's URL)."""
    if isinstance(node, SecretStr):
        if node.get_secret_value():
            yield path
    elif isinstance(node, BaseModel):
        if isinstance(node, HttpMonitor) and urlsplit(node.url).password:
            yield (*path, "url")
        for name, field in type(node).model_fields.items():
            yield from _secret_paths(getattr(node, name), (*path, field.alias or name))
    elif isinstance(node, dict):
        for key, value in node.items():
            if not isinstance(value, SecretStr) or _SECRET_HEADER.search(key):
                yield from _secret_paths(value, (*path, key))
    elif isinstance(node, list | tuple):
        for i, value in enumerate(node):
            yield from _secret_paths(value, (*path, i))


def _typed_at(source: Source, path: Path) -> Path | None:
    """Where the text of the secret at `path` is typed into the file, or None when it
    comes from the environment. A monitor's key may come from [defaults]."""
    where = path
    if path[0] == "monitors" and len(path) > 2 and path[2] not in _lookup(source.raw, path[:2]):
        where = ("defaults", *path[2:])
    text = _lookup(source.raw, where)
    if not isinstance(text, str):
        return None
    for match in _REFERENCE.finditer(text):
        if match.group(1) and source.env.get(match.group(1)):
            return None  # `${VAR}` set: the value is not in the file (a default would be)
    return where


def _lookup(node: Any, path: Path) -> Any:
    for part in path:
        if isinstance(node, dict) and isinstance(part, str) and part in node:
            node = node[part]
        elif isinstance(node, list) and isinstance(part, int) and part < len(node):
            node = node[part]
        else:
            return {}
    return node


def _listeners(source: Source, settings: Settings, listen_from_env: bool) -> list[str]:
    found = []
    host, _ = settings.listen_host_port
    if _every_interface(host) and not settings.trusted_proxies:
        if listen_from_env:
            found.append(
                f"{source.name}: settings.listen: PROBER_LISTEN={settings.listen} listens on "
                "every interface and settings.trusted_proxies is empty: in a container that is "
                "how a published port reaches the page; publish it on loopback only "
                "(-p 127.0.0.1:8080:8080), behind the reverse proxy of docs/DEPLOY.md, and "
                "list that proxy in trusted_proxies (or ignore this if intended)"
            )
        else:
            found.append(
                f"{source.at(('settings', 'listen'))}: {settings.listen} listens on every "
                "interface and settings.trusted_proxies is empty: the page faces the internet "
                "directly; put it behind the reverse proxy of docs/DEPLOY.md (which sets "
                "trusted_proxies), or ignore this if intended"
            )
    metrics = settings.metrics
    if (
        metrics.listen
        and _every_interface(parse_host_port(metrics.listen)[0])
        and not metrics.token.get_secret_value()
    ):
        found.append(
            f"{source.at(('settings', 'metrics', 'listen'))}: {metrics.listen} serves /metrics "
            "on every interface with no settings.metrics.token: anyone who reaches it reads "
            "every monitor's state, private ones included (worse than the page, which shows "
            "public monitors only); listen on 127.0.0.1 or set metrics.token"
        )
    return found


def _every_interface(host: str) -> bool:
    ip = addresses.parse(host)
    return ip is not None and ip.is_unspecified


def _metadata_targets(source: Source, monitors: Sequence[tuple[int, Monitor]]) -> list[str]:
    found = []
    for i, monitor in monitors:
        if not isinstance(monitor, ProbeMonitor) or monitor.allow_link_local:
            continue
        for key, host in _targets(monitor):
            if host.lower().rstrip(".") in addresses.METADATA_HOSTNAMES:
                what = "names a cloud metadata service"
            elif (ip := addresses.parse(host)) is not None and addresses.is_link_local(ip):
                what = "is a cloud metadata/link-local address"
            else:
                continue
            found.append(
                f"{source.at(('monitors', i, *key))}: {host} {what}: checks refuse it unless "
                "allow_link_local = true"
            )
    return found


def _targets(monitor: ProbeMonitor) -> list[tuple[Path, str]]:
    """The hosts a check connects to (a DNS check's query name is only asked about)."""
    if isinstance(monitor, HttpMonitor):
        return [(("url",), urlsplit(monitor.url).hostname or "")]
    if isinstance(monitor, TlsMonitor | TcpMonitor):
        return [(("host",), monitor.host)]
    if isinstance(monitor, DnsMonitor):
        return [
            (("nameservers", j), parse_host_port(ns, default_port=53)[0])
            for j, ns in enumerate(monitor.nameservers)
        ]
    return []
