"""One model per monitor `type`; the TOML type, the check module and this class share a name."""

from __future__ import annotations

import pathlib
from typing import Annotated, Any, ClassVar, Literal
from urllib.parse import urlsplit

import regex
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
    ValidationInfo,
    field_validator,
    model_validator,
)

from prober.config.conditions import StatusSet, parse_status_set
from prober.config.remediation import EscalationStep, Remediate, check_steps, check_verify
from prober.config.types import (
    CronExpr,
    DownAfter,
    DownAfterRule,
    Host,
    Interval,
    JsonCheck,
    LocationList,
    Nameserver,
    Port,
    PositiveDuration,
    SecretMap,
    Size,
    Slug,
    StatusCodes,
    StringList,
    TimeZoneName,
)
from prober.redact import redact_url


class StrictModel(BaseModel):
    model_config = ConfigDict(
        extra="forbid", frozen=True, strict=True, arbitrary_types_allowed=True
    )


def resolve_file(value: str | None, info: ValidationInfo) -> str | None:
    """Relative paths are relative to the config file; the file must exist now."""
    if value is None:
        return None
    base = (info.context or {}).get("base_dir", ".")
    path = pathlib.Path(base, value)
    if not path.is_file():
        raise ValueError(f"file {value!r} does not exist")
    return str(path)


class MonitorBase(StrictModel):
    probing: ClassVar[bool] = True
    id: Slug
    name: str = ""
    group: str = ""
    description: str = ""
    down_after: DownAfterRule = DownAfter(seconds=120.0)
    up_after: int = Field(default=1, ge=1)
    sla_target: float | None = Field(default=None, gt=0, le=100)  # None: settings.sla_target
    notify: list[str] = []
    public: bool = True
    # what the public reads as an incident's cause instead of the failure class
    public_cause: str = Field(default="", max_length=200)
    depends_on: list[Slug] = []
    # Where it is probed, and how many fresh locations must see it down for a down verdict.
    # Absent from the file they are () and 0; load_config fills both on every monitor
    # (default: every declared location, and a majority of the monitor's locations), so
    # code after the load reads them as they are and never recomputes a default.
    locations: LocationList = ()
    quorum: int = Field(default=0, ge=1)
    # prober.config.remediation: never from [defaults] (load.NOT_DEFAULTABLE)
    remediate: Remediate | None = None
    escalate: list[EscalationStep] = []

    @field_validator("remediate")
    @classmethod
    def _verify(cls, value: Remediate | None, info: ValidationInfo) -> Remediate | None:
        return check_verify(value, info.data.get("up_after"))

    _escalate = field_validator("escalate")(check_steps)

    @field_validator("sla_target", mode="before")
    @classmethod
    def _percent(cls, value: object) -> object:
        return float(value) if isinstance(value, int) and not isinstance(value, bool) else value

    @property
    def display_name(self) -> str:
        return self.name or self.id


class ProbeMonitor(MonitorBase):
    interval: Interval = 60.0
    timeout: PositiveDuration = 10.0
    degraded_after: PositiveDuration | None = None
    # link-local and cloud-metadata addresses are refused on every hop unless this is true
    allow_link_local: bool = False

    @field_validator("timeout")
    @classmethod
    def _timeout_below_interval(cls, value: float, info: ValidationInfo) -> float:
        interval = info.data.get("interval")
        if interval is not None and value >= interval:
            raise ValueError(f"must be shorter than interval ({value:g}s >= {interval:g}s)")
        return value

    @model_validator(mode="after")
    def _default_timeout_fits(self) -> ProbeMonitor:
        """The default timeout (10s) shrinks to 80% of an interval shorter than it: a
        monitor with `interval = "5s"` and no timeout works as written (a timeout written
        in the file or [defaults] is checked above instead)."""
        if "timeout" not in self.model_fields_set and self.timeout >= self.interval:
            object.__setattr__(self, "timeout", round(self.interval * 0.8, 3))
        return self


def _compile_regexes(value: Any) -> Any:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list):
        return value
    compiled = []
    for item in value:
        if not isinstance(item, str):
            raise ValueError(f"expected a regular expression string, got {item!r}")
        try:
            compiled.append(regex.compile(item))
        except regex.error as exc:
            raise ValueError(f"{item!r} is not a valid regular expression: {exc}") from None
    return compiled


RegexList = Annotated[list[Any], BeforeValidator(_compile_regexes)]


class BasicAuth(StrictModel):
    username: str
    password: SecretStr


HttpMethod = Literal["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]


class HttpMonitor(ProbeMonitor):
    type: Literal["http"]
    url: str = Field(repr=False)  # may hold credentials or tokens
    method: HttpMethod = "GET"
    headers: SecretMap = {}
    body: SecretStr | None = None
    basic_auth: BasicAuth | None = None
    expect_status: StatusCodes = parse_status_set(["200-299"])
    contains: StringList = []
    not_contains: StringList = []
    regex: RegexList = []
    json_: list[JsonCheck] = Field(default=[], alias="json")
    follow_redirects: bool = True
    max_redirects: int = Field(default=5, ge=0, le=30)
    verify_tls: bool = True
    ca_file: str | None = None
    max_body: Size = 1024 * 1024
    ip_version: Literal[4, 6] | None = None
    warn_days: int = Field(default=14, ge=0)  # https: alert when the certificate is this close

    model_config = ConfigDict(populate_by_name=True)

    _ca_file = field_validator("ca_file")(resolve_file)

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"{redact_url(value)!r} is not an http:// or https:// URL")
        try:
            _ = parts.port
        except ValueError:
            raise ValueError(f"{redact_url(value)!r} has an invalid port") from None
        return value

    @property
    def status_set(self) -> StatusSet:
        return self.expect_status

    @property
    def needs_body(self) -> bool:
        return bool(self.contains or self.not_contains or self.regex or self.json_)


class TlsMonitor(ProbeMonitor):
    type: Literal["tls"]
    host: Host
    port: Port = 443
    server_name: str | None = None
    warn_days: int = Field(default=14, ge=0)
    down_days: int = Field(default=3, ge=0)
    ca_file: str | None = None

    _ca_file = field_validator("ca_file")(resolve_file)

    @field_validator("down_days")
    @classmethod
    def _down_before_warn(cls, value: int, info: ValidationInfo) -> int:
        warn = info.data.get("warn_days")
        if warn is not None and value > warn:
            raise ValueError(f"must not exceed warn_days ({value} > {warn})")
        return value


class TcpMonitor(ProbeMonitor):
    type: Literal["tcp"]
    host: Host
    port: Port
    send: str | None = None
    expect: str | None = None
    tls: bool = False
    server_name: str | None = None
    verify_tls: bool = True
    ca_file: str | None = None

    _ca_file = field_validator("ca_file")(resolve_file)


RecordType = Literal["A", "AAAA", "CNAME", "MX", "TXT", "NS", "SOA", "CAA", "SRV", "PTR"]
Rcode = Literal["NOERROR", "NXDOMAIN", "SERVFAIL", "REFUSED", "FORMERR", "NOTIMP", "YXDOMAIN"]


class DnsMonitor(ProbeMonitor):
    type: Literal["dns"]
    query: Host
    record: RecordType = "A"
    expect: StringList = []
    nameservers: list[Nameserver] = []
    expect_rcode: Rcode = "NOERROR"


class PushMonitor(MonitorBase):
    probing: ClassVar[bool] = False
    # Pushes arrive at the hub; nothing probes a push monitor from anywhere. The loader sets
    # locations to (settings.location,) and quorum to 1; the file may not set them, nor do
    # they come from [defaults] (field_names leaves them out).
    hub_only: ClassVar[frozenset[str]] = frozenset({"locations", "quorum"})
    type: Literal["push"]
    period: PositiveDuration | None = None
    cron: CronExpr | None = None
    timezone: TimeZoneName | None = None
    grace: PositiveDuration = 60.0
    token: SecretStr | None = None

    @field_validator("locations", "quorum")
    @classmethod
    def _not_probed(cls, value: object, info: ValidationInfo) -> object:
        raise ValueError(
            "a push monitor is not probed from any location: its pushes arrive at the hub, "
            f"which judges them; {info.field_name} applies to http, tls, tcp and dns monitors"
        )

    @field_validator("token")
    @classmethod
    def _long_token(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(value.get_secret_value()) < 16:
            raise ValueError("a push token needs at least 16 characters (128 random bits)")
        return value

    @field_validator("cron")
    @classmethod
    def _valid_cron(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is not None and info.data.get("period") is not None:
            raise ValueError("period and cron are both set; use one of them")
        return value

    @model_validator(mode="after")
    def _period_or_cron(self) -> PushMonitor:
        if self.period is None and self.cron is None:
            raise ValueError('needs period (e.g. "1h") or cron (e.g. "0 3 * * *")')
        if self.timezone is not None and self.cron is None:
            raise ValueError("timezone applies only with cron")
        return self

    @property
    def expected_every(self) -> float:
        """Seconds between expected pings, for coverage; cron schedules judge their own."""
        return self.period if self.period is not None else 86400.0


Monitor = HttpMonitor | TlsMonitor | TcpMonitor | DnsMonitor | PushMonitor
ProbingMonitor = HttpMonitor | TlsMonitor | TcpMonitor | DnsMonitor

MONITOR_TYPES: dict[str, type[MonitorBase]] = {
    "http": HttpMonitor,
    "tls": TlsMonitor,
    "tcp": TcpMonitor,
    "dns": DnsMonitor,
    "push": PushMonitor,
}


def field_names(model: type[BaseModel]) -> set[str]:
    """The keys a table of this model takes, as written (aliases), and so inherits from
    [defaults]; less the ones the model refuses (a push monitor's locations and quorum)."""
    refused: frozenset[str] = getattr(model, "hub_only", frozenset())
    return {f.alias or name for name, f in model.model_fields.items()} - refused
