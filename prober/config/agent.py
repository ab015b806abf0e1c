"""`agent.toml`, the config of `prober agent`: probing for a hub from another location.

`[settings]` names the location and the agent's own database (its queue while the hub
cannot be reached); `[hub]` says where the hub is and the token it knows this location by.
Monitors, notifiers and maintenance come from the hub, never from this file. Loaded as
monitors.toml is: `${VAR}`, every error at once as `file:line: key: what is wrong`,
warnings for secrets typed into a file others can read.
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
from collections.abc import Mapping
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, ValidationError, field_validator

from prober import addresses
from prober.config.load import (
    ConfigError,
    _Collector,
    _describe,
    _suggest,
    _validate,
    begin,
)
from prober.config.monitors import StrictModel, resolve_file
from prober.config.settings import Settings, canary_urls, sqlite_url
from prober.config.types import PositiveDuration, Slug, StrongSecret
from prober.config.warnings import Source, readable_secrets
from prober.redact import redact_url

SECTIONS = ("settings", "hub")
HUB_SECTIONS = ("defaults", "monitors", "notifiers", "maintenance", "agents")


class AgentSettings(StrictModel):
    location: Slug  # the name the hub declares in its [[agents]]; stored on every result
    database: str = "sqlite:///data/agent.db"  # the queue of results not yet sent
    canaries: list[str] = []
    heartbeat_url: SecretStr = SecretStr("")
    max_concurrency: int = Field(default=500, ge=1)
    overload_threshold: PositiveDuration = 0.5

    _database = field_validator("database")(sqlite_url)
    _canaries = field_validator("canaries")(canary_urls)


class Hub(StrictModel):
    url: str  # the hub's public URL (https://, or http:// to a hub on loopback)
    token: StrongSecret  # the token of this location's [[agents]] entry on the hub
    ca_file: str | None = None  # extra trusted CAs for the hub's certificate

    _ca_file = field_validator("ca_file")(resolve_file)

    @field_validator("url")
    @classmethod
    def _hub_url(cls, value: str) -> str:
        parts = urlsplit(value)
        shown = redact_url(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"{shown!r} is not an http:// or https:// URL")
        try:
            _ = parts.port
        except ValueError:
            raise ValueError(f"{shown!r} has an invalid port") from None
        if parts.username is not None or parts.password is not None:
            raise ValueError(f"{shown!r} holds credentials; the agent sends hub.token instead")
        if parts.query or parts.fragment:
            raise ValueError(f"{shown!r}: give the hub's base URL, without ? or #")
        if parts.scheme == "http" and not is_loopback(parts.hostname):
            raise ValueError(
                f"{shown!r} must be https://: the token and the monitors' secrets (headers, "
                "URLs) travel over it; http:// is allowed only to a hub on loopback "
                "(127.0.0.1, ::1, localhost)"
            )
        return value.rstrip("/")


def is_loopback(host: str) -> bool:
    """A loopback address in any spelling (::ffff:127.0.0.1 too), or `localhost`."""
    if host.lower().rstrip(".") == "localhost":
        return True
    ip = addresses.parse(host)
    return ip is not None and any(c.is_loopback for c in (ip, *addresses.embedded_ipv4(ip)))


@dataclasses.dataclass(frozen=True)
class AgentConfig:
    path: pathlib.Path
    settings: AgentSettings
    hub: Hub
    database_url: str
    warnings: tuple[str, ...] = ()

    @property
    def database_path(self) -> pathlib.Path:
        """`sqlite:///data/x.db` is relative to the config file's folder."""
        return self.path.parent / self.database_url.removeprefix("sqlite:///")

    def secret_values(self) -> set[str]:
        """For the redactor, as Config.secret_values (monitors' secrets come from the hub)."""
        found = {self.hub.token.get_secret_value(), self.settings.heartbeat_url.get_secret_value()}
        return {value for value in found if len(value) >= 4}


def load_agent_config(
    path: str | os.PathLike[str], env: Mapping[str, str] | None = None
) -> AgentConfig:
    env = os.environ if env is None else env
    file, out, raw, data, missing = begin(path, env)
    filename = str(path)
    bad_paths = {ref.path[:1] for ref in missing}

    for key, value in data.items():
        if key in HUB_SECTIONS:
            out.add(
                (key, 0) if isinstance(value, list) else (key,),  # [[monitors]]: its first line
                f"an agent's config has no {key}: monitors (and their notifiers, maintenance "
                "and defaults) come from the hub at hub.url; [[agents]] belongs in the hub's",
            )
        elif key not in SECTIONS:
            out.add((key,), "unknown section" + _suggest(key, SECTIONS))
    context = {"base_dir": str(file.parent)}
    settings = _validate(
        out, AgentSettings, _agent_settings(out, data.get("settings", {})), ("settings",), context
    )
    hub = None
    if "hub" not in data:
        out.add(("hub",), '[hub] is required: url = "https://…" and token = "${HUB_TOKEN}"')
    elif ("hub",) not in bad_paths:  # an unset ${VAR} is reported as that alone
        hub = _validate(out, Hub, data["hub"], ("hub",), context)

    database_url = env.get("PROBER_DATABASE") or (settings.database if settings else "")
    if settings is not None and env.get("PROBER_DATABASE"):
        try:
            AgentSettings(location=settings.location, database=database_url)
        except ValidationError as exc:
            out.add(
                ("settings", "database"),
                f"PROBER_DATABASE: {_describe(exc.errors()[0], AgentSettings, ())}",
            )

    if out.errors or settings is None or hub is None:
        raise ConfigError(out.sorted())
    source = Source(file, filename, raw, env, out.lines)
    warnings = readable_secrets(source, [(("settings",), settings), (("hub",), hub)])
    return AgentConfig(
        path=file,
        settings=settings,
        hub=hub,
        database_url=database_url,
        warnings=tuple(warnings),
    )


def _agent_settings(out: _Collector, settings: object) -> object:
    """[settings] without the hub's own keys, each reported as such (not as a typo)."""
    if not isinstance(settings, dict):
        return settings
    kept = {}
    for key, value in settings.items():
        if key in Settings.model_fields and key not in AgentSettings.model_fields:
            out.add(
                ("settings", key),
                "is a hub setting; an agent takes only " + ", ".join(AgentSettings.model_fields),
            )
        else:
            kept[key] = value
    return kept
