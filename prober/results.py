"""What a check observed: outcomes, phase timings and per-assertion verdicts."""

from __future__ import annotations

import dataclasses
import datetime as dt
from enum import StrEnum
from typing import Any


class Outcome(StrEnum):
    UP = "up"
    DEGRADED = "degraded"  # up for availability, but slow or a certificate nearing expiry
    DOWN = "down"
    UNKNOWN = "unknown"  # the prober could not judge (its own network failed)

    @property
    def is_available(self) -> bool:
        return self in (Outcome.UP, Outcome.DEGRADED)


@dataclasses.dataclass(frozen=True, slots=True)
class Phases:
    """Milliseconds spent in each phase; None when the phase did not happen or did not end
    (a connect refused, a handshake that failed, a response that never came)."""

    dns_ms: float | None = None
    connect_ms: float | None = None
    tls_ms: float | None = None
    first_byte_ms: float | None = None

    def as_dict(self) -> dict[str, float]:
        return {k: round(v, 3) for k, v in dataclasses.asdict(self).items() if v is not None}


@dataclasses.dataclass(frozen=True, slots=True)
class AssertionResult:
    """One condition, judged: `status 503 not in [200]` reads as saw=503 wanted=[200]."""

    name: str
    ok: bool
    saw: str
    wanted: str

    def describe(self) -> str:
        return f"{self.name}: saw {self.saw}, wanted {self.wanted}"


@dataclasses.dataclass(frozen=True, slots=True)
class Certificate:
    """The earliest-expiring certificate the target presented, as far as we could see."""

    not_after: dt.datetime
    subject: str
    issuer: str

    def days_left(self, now: dt.datetime) -> float:
        return (self.not_after - now).total_seconds() / 86400


@dataclasses.dataclass(frozen=True, slots=True)
class CheckResult:
    """One observation of one monitor. Target failures are results, never exceptions."""

    outcome: Outcome
    latency_ms: float
    error: str | None = None
    status_code: int | None = None
    phases: Phases = Phases()
    assertions: tuple[AssertionResult, ...] = ()
    certificate: Certificate | None = None
    details: dict[str, Any] = dataclasses.field(default_factory=dict)

    def details_json(self) -> dict[str, Any]:
        """Everything beyond outcome/latency/error, in the shape `prober check --json` prints."""
        out: dict[str, Any] = {}
        if self.status_code is not None:
            out["status_code"] = self.status_code
        phases = self.phases.as_dict()
        if phases:
            out["phases"] = phases
        if self.assertions:
            out["assertions"] = [
                {"name": a.name, "ok": a.ok, "saw": a.saw, "wanted": a.wanted}
                for a in self.assertions
            ]
        if self.certificate is not None:
            out["certificate"] = {
                "not_after": self.certificate.not_after.isoformat(),
                "subject": self.certificate.subject,
                "issuer": self.certificate.issuer,
            }
        out.update(self.details)
        return out


def down(error: str, latency_ms: float, **kwargs: Any) -> CheckResult:
    return CheckResult(Outcome.DOWN, latency_ms, error=error, **kwargs)
