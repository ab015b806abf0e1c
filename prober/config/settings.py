"""`[settings]`, `[[agents]]`, `[[notifiers]]` and `[[maintenance]]`."""

from __future__ import annotations

import datetime as dt
import ipaddress
import re
from collections.abc import Mapping
from typing import Literal
from urllib.parse import unquote, urlsplit

from pydantic import Field, SecretStr, ValidationInfo, field_validator, model_validator

from prober.config.monitors import StrictModel, resolve_file
from prober.config.types import (
    CronExpr,
    Duration,
    PositiveDuration,
    Slug,
    StrongSecret,
    TimeZoneName,
    parse_host_port,
)


def sqlite_url(value: str) -> str:
    if not value.startswith("sqlite:///") or value == "sqlite:///":
        raise ValueError(f'{value!r}: use "sqlite:///relative/path.db" or "sqlite:////abs/path.db"')
    return value


def database_url(value: str) -> str:
    """A SQLite file, or a PostgreSQL database (`postgresql://user:password@host/name`)."""
    if value.startswith(("postgresql://", "postgres://")):
        return _postgresql_url(value)
    if not value.startswith("sqlite:///") or value == "sqlite:///":
        raise ValueError(
            f'{_shown(value)!r}: use "sqlite:///relative/path.db", "sqlite:////abs/path.db" or '
            '"postgresql://USER:PASSWORD@HOST/NAME"'
        )
    return value


def _postgresql_url(value: str) -> str:
    """A URL libpq takes, naming a host and a database: checked here rather than at the first
    connection of `run`. The password is never quoted (libpq's own words may hold it)."""
    from psycopg import ProgrammingError
    from psycopg.conninfo import conninfo_to_dict

    try:
        _ = urlsplit(value).port  # brackets, a port out of range or not a number: ValueError
        params = conninfo_to_dict(value)
    except (ValueError, ProgrammingError) as exc:
        said = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        password = _password(value)
        if password:
            for secret in {password, unquote(password)}:
                said = said.replace(secret, "***")
        raise ValueError(f"not a PostgreSQL URL libpq takes: {said}") from None
    if not params.get("host") and not params.get("hostaddr"):
        raise ValueError("a postgresql:// URL needs a host: postgresql://USER:PASSWORD@HOST/NAME")
    if not params.get("dbname"):
        raise ValueError("a postgresql:// URL needs a database name: .../NAME")
    return value


def _shown(value: str) -> str:
    """A URL as an error may quote it: no password."""
    password = _password(value)
    if password:
        return value.replace(f":{password}@", ":***@", 1)
    return value


def _password(value: str) -> str | None:
    """The URL's password as written (percent-encoded), if it has one we can find."""
    try:
        return urlsplit(value).password
    except ValueError:
        netloc = value.partition("://")[2].partition("/")[0]
        userinfo, at, _ = netloc.rpartition("@")
        return userinfo.partition(":")[2] or None if at else None


def canary_urls(value: list[str]) -> list[str]:
    for item in value:
        parts = urlsplit(item)
        if parts.scheme not in ("tcp", "http", "https") or not parts.hostname:
            raise ValueError(f"{item!r}: a canary is tcp://HOST:PORT, http://… or https://…")
        if parts.scheme == "tcp" and parts.port is None:
            raise ValueError(f"{item!r}: a tcp canary needs a port")
    return value


class MetricsListener(StrictModel):
    """`/metrics` on a listener of its own, never the public one; `listen = ""` turns it off."""

    listen: str = "127.0.0.1:9108"
    token: SecretStr = SecretStr("")  # when set, scrapes need `Authorization: Bearer TOKEN`

    @field_validator("listen")
    @classmethod
    def _listen(cls, value: str) -> str:
        if value:
            parse_host_port(value)
        return value

    @property
    def listen_host_port(self) -> tuple[str, int] | None:
        return parse_host_port(self.listen) if self.listen else None


class Subscriptions(StrictModel):
    """`subscriptions = { email = "NOTIFIER_ID" }`: visitors subscribe to the page by email;
    that email notifier sends their mail (to them, not to its `to`)."""

    email: Slug


class Settings(StrictModel):
    title: str = "Status"
    public_url: str = ""
    listen: str = "127.0.0.1:8080"
    database: str = "sqlite:///data/prober.db"
    timezone: TimeZoneName = "UTC"
    language: Literal["en", "ko"] = "en"
    sla_target: float = Field(default=99.9, gt=0, le=100)
    retention_days: int = Field(default=90, ge=1)
    history_days: int = Field(default=90, ge=1, le=366)
    location: Slug = "default"
    canaries: list[str] = []
    alert_group_wait: Duration = 30.0
    public_reports: bool = False
    # monitors' `remediate.command` runs programs on this host only when true
    allow_commands: bool = False
    heartbeat_url: SecretStr = SecretStr("")
    max_concurrency: int = Field(default=500, ge=1)
    # a failure while the prober itself was this late is recorded unknown, not down
    overload_threshold: PositiveDuration = 0.5
    metrics: MetricsListener = MetricsListener()
    # reverse proxies whose X-Forwarded-For is believed (addresses or networks)
    trusted_proxies: list[str] = []
    # incidents written by people: one TOML file each (relative to the config's folder)
    incidents_dir: str = Field(default="incidents", min_length=1)
    # email subscriptions for visitors (prober.subscriptions); None: off
    subscriptions: Subscriptions | None = None

    @field_validator("sla_target", mode="before")
    @classmethod
    def _number(cls, value: object) -> object:
        return float(value) if isinstance(value, int) and not isinstance(value, bool) else value

    @field_validator("listen")
    @classmethod
    def _listen(cls, value: str) -> str:
        parse_host_port(value)
        return value

    _database = field_validator("database")(database_url)

    @field_validator("public_url")
    @classmethod
    def _public_url(cls, value: str) -> str:
        if value and urlsplit(value).scheme not in ("http", "https"):
            raise ValueError(f"{value!r} is not an http:// or https:// URL")
        return value.rstrip("/")

    _canaries = field_validator("canaries")(canary_urls)

    @model_validator(mode="after")
    def _metrics_apart(self) -> Settings:
        if self.metrics.listen and self.metrics.listen_host_port == self.listen_host_port:
            raise ValueError(
                f"metrics.listen: {self.metrics.listen!r} is the public listener; /metrics"
                ' needs a listener of its own (default 127.0.0.1:9108; "" turns it off)'
            )
        return self

    @field_validator("subscriptions")
    @classmethod
    def _subscriptions(cls, value: Subscriptions | None, info: ValidationInfo) -> object:
        if value is not None and not info.data.get("public_url"):
            raise ValueError(
                "needs settings.public_url: every mail to a subscriber carries absolute"
                " confirm and unsubscribe links"
            )
        return value

    @field_validator("trusted_proxies")
    @classmethod
    def _trusted_proxies(cls, value: list[str]) -> list[str]:
        for item in value:
            try:
                ipaddress.ip_network(item, strict=False)
            except ValueError:
                raise ValueError(f"{item!r} is not an IP address or network") from None
        return value

    @property
    def listen_host_port(self) -> tuple[str, int]:
        return parse_host_port(self.listen)


def subscription_errors(
    settings: Settings, notifier_types: Mapping[object, object]
) -> list[tuple[tuple[str, ...], str]]:
    """`settings.subscriptions.email` must name an email notifier (`notifier_types`: each
    `[[notifiers]]` id -> its `type`, as written): (path, message) for the loader."""
    if settings.subscriptions is None:
        return []
    wanted = settings.subscriptions.email
    where = ("settings", "subscriptions", "email")
    if wanted not in notifier_types:
        return [(where, f"no notifier has id {wanted!r}")]
    if notifier_types[wanted] != "email":
        found = notifier_types[wanted]
        message = f"notifier {wanted!r} is of type {found!r}; subscriptions need an email one"
        return [(where, message)]
    return []


class Agent(StrictModel):
    """`[[agents]]` on a hub: a location that probes for it, and the token it proves itself
    with (unique per agent; the loader checks that across agents)."""

    location: Slug
    token: StrongSecret


class HubPeer(StrictModel):
    """`[[hubs]]`: another `prober run` sharing this hub's PostgreSQL database, probing from
    its own location (its config declares this hub the same way)."""

    location: Slug


EventName = Literal[
    "opened", "resolved", "reminder", "cert_expiring", "prober_network", "regional", "remediated"
]
# the default `events`: every kind but `regional` and `remediated` (a verified remediation's
# "recovered automatically"), which a notifier asks for by name
ALL_EVENTS: list[EventName] = ["opened", "resolved", "reminder", "cert_expiring", "prober_network"]


def refuse_remediated(events: list[EventName], why: str) -> list[EventName]:
    """`remediated` is informational: for channels a person reads, not for a pager."""
    if "remediated" in events:
        raise ValueError(f"this notifier type does not take 'remediated': {why}")
    return events


class NotifierBase(StrictModel):
    id: Slug
    repeat: PositiveDuration | None = None
    events: list[EventName] = ALL_EVENTS


class WebhookNotifier(NotifierBase):
    type: Literal["webhook"]
    url: SecretStr
    secret: SecretStr | None = None
    headers: dict[str, SecretStr] = {}


class SlackNotifier(NotifierBase):
    type: Literal["slack"]
    url: SecretStr


class DiscordNotifier(NotifierBase):
    type: Literal["discord"]
    url: SecretStr


class TelegramNotifier(NotifierBase):
    type: Literal["telegram"]
    bot_token: SecretStr
    chat_id: str
    api_url: str = "https://api.telegram.org"


class EmailNotifier(NotifierBase):
    type: Literal["email"]
    host: str
    port: int = Field(default=587, ge=1, le=65535)
    username: str | None = None
    password: SecretStr | None = None
    sender: str = Field(alias="from")
    to: list[str] = Field(min_length=1)
    security: Literal["starttls", "tls", "none"] = "starttls"
    ca_file: str | None = None  # extra trusted CAs for the SMTP server's certificate

    _ca_file = field_validator("ca_file")(resolve_file)


class NtfyNotifier(NotifierBase):
    type: Literal["ntfy"]
    url: SecretStr
    token: SecretStr | None = None
    priority: int | None = Field(default=None, ge=1, le=5)


class PagerDutyNotifier(NotifierBase):
    type: Literal["pagerduty"]
    routing_key: SecretStr
    api_url: str = "https://events.pagerduty.com/v2/enqueue"

    @field_validator("events")
    @classmethod
    def _no_remediated(cls, value: list[EventName]) -> list[EventName]:
        return refuse_remediated(value, "PagerDuty would open an incident for it")


_LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
AM_OWN_LABELS = ("alertname", "monitor", "location", "depends_on")


class AlertmanagerNotifier(NotifierBase):
    """Alertmanager's API v2 at `url` (its base URL). The alert is re-sent every `repeat`
    while the incident is open: Alertmanager resolves an alert it has not heard of within
    its resolve_timeout (5m by default). Certificates and the prober's network are for
    Prometheus's rules (deploy/prometheus/), not default events here."""

    type: Literal["alertmanager"]
    url: str  # not secret: credentials in it (user:password@) are redacted from logs
    labels: dict[str, str] = {}  # added to every alert; `severity` here replaces "critical"
    silences: bool = False  # maintenance windows become Alertmanager silences when they start
    repeat: PositiveDuration | None = 60.0
    events: list[EventName] = ["opened", "resolved", "reminder"]

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        if urlsplit(value).scheme not in ("http", "https"):
            raise ValueError("Alertmanager's base URL must be http:// or https://")
        return value

    @field_validator("events")
    @classmethod
    def _no_remediated(cls, value: list[EventName]) -> list[EventName]:
        return refuse_remediated(value, "Alertmanager takes alerts, not news of one averted")

    @field_validator("labels")
    @classmethod
    def _labels(cls, value: dict[str, str]) -> dict[str, str]:
        for name in value:
            if not _LABEL_NAME.fullmatch(name) or name.startswith("__"):
                raise ValueError(f"{name!r} is not a Prometheus label name")
            if name in AM_OWN_LABELS:
                raise ValueError(f"{name!r} is set by prober; choose another label name")
        return value

    @field_validator("repeat")
    @classmethod
    def _repeat(cls, value: float | None) -> float | None:
        if value is None or value > 240:
            raise ValueError(
                "Alertmanager forgets an alert not re-sent within its resolve_timeout (5m by"
                ' default): repeat must be at most "4m" (default "60s")'
            )
        return value


Notifier = (
    WebhookNotifier
    | SlackNotifier
    | DiscordNotifier
    | TelegramNotifier
    | EmailNotifier
    | NtfyNotifier
    | PagerDutyNotifier
    | AlertmanagerNotifier
)

NOTIFIER_TYPES: dict[str, type[NotifierBase]] = {
    "webhook": WebhookNotifier,
    "slack": SlackNotifier,
    "discord": DiscordNotifier,
    "telegram": TelegramNotifier,
    "email": EmailNotifier,
    "ntfy": NtfyNotifier,
    "pagerduty": PagerDutyNotifier,
    "alertmanager": AlertmanagerNotifier,
}


class Maintenance(StrictModel):
    title: str
    monitors: list[str] = Field(min_length=1)
    start: dt.datetime | None = None
    end: dt.datetime | None = None
    cron: CronExpr | None = None
    duration: PositiveDuration | None = None

    @field_validator("start", "end", mode="before")
    @classmethod
    def _iso_string(cls, value: object) -> object:
        """TOML datetimes and quoted ISO 8601 strings ("2026-12-01T02:00:00+09:00") alike."""
        if isinstance(value, str):
            try:
                return dt.datetime.fromisoformat(value)
            except ValueError:
                raise ValueError(f"{value!r} is not an ISO 8601 date-time") from None
        return value

    @field_validator("start", "end")
    @classmethod
    def _aware(cls, value: dt.datetime | None) -> dt.datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError(f"{value.isoformat()} needs a UTC offset, e.g. +09:00 or Z")
        return value

    @field_validator("end")
    @classmethod
    def _after_start(cls, value: dt.datetime | None, info: ValidationInfo) -> dt.datetime | None:
        start = info.data.get("start")
        if value is not None and start is not None and value <= start:
            raise ValueError(f"must be after start ({start.isoformat()})")
        return value

    @model_validator(mode="after")
    def _one_form(self) -> Maintenance:
        one_off = self.start is not None or self.end is not None
        recurring = self.cron is not None or self.duration is not None
        if one_off and recurring:
            raise ValueError("use either start/end or cron/duration, not both")
        if recurring and (self.cron is None or self.duration is None):
            raise ValueError("a recurring window needs both cron and duration")
        if not recurring and (self.start is None or self.end is None):
            raise ValueError("a window needs start and end (or cron and duration)")
        return self
