"""What a check receives besides its spec: shared clients, TLS contexts, clock, phase timer."""

from __future__ import annotations

import dataclasses
import ipaddress
import ssl
from collections.abc import Callable
from typing import TYPE_CHECKING

from prober.clock import Clock
from prober.redact import Redactor
from prober.results import Phases

if TYPE_CHECKING:
    import aiohttp

# The phases a check moves through, as words for "timed out ... <phase>".
PHASE_WORDS = {
    "start": "before connecting",
    "dns": "resolving the name",
    "connect": "connecting",
    "tls": "in the TLS handshake",
    "first_byte": "waiting for the response",
    "body": "reading the body",
    "judge": "checking the body",
    "send": "sending",
    "expect": "waiting for the expected reply",
    "done": "finishing",
}
_TIMED = ("dns", "connect", "tls", "first_byte")


class PhaseTimer:
    """Marks phase boundaries; the runner reads the current phase when a deadline hits.

    A timed phase (dns, connect, tls, first_byte) is measured when it ends, that is when
    the check enters the next one: a phase cut short by the deadline or a failure never
    ended, so it has no time (no first_byte_ms when no byte came); the error names it.
    """

    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self.started = clock.monotonic()
        self.phase = "start"
        self._phase_started = self.started
        self._spent: dict[str, float] = {}

    def enter(self, phase: str) -> None:
        now = self._clock.monotonic()
        if self.phase in _TIMED:
            self._spent[self.phase] = (
                self._spent.get(self.phase, 0.0) + (now - self._phase_started) * 1000
            )
        self.phase = phase
        self._phase_started = now

    def record(self, phase: str, ms: float) -> None:
        """Set a phase measured elsewhere (tracing callbacks)."""
        self._spent[phase] = ms

    def done(self) -> None:
        """The current phase ended and the check has nothing more to time."""
        self.enter("done")

    def elapsed_ms(self) -> float:
        return (self._clock.monotonic() - self.started) * 1000

    def phases(self) -> Phases:
        """The phases that ended; the one still running (if any) is left out."""
        spent = self._spent
        return Phases(
            dns_ms=spent.get("dns"),
            connect_ms=spent.get("connect"),
            tls_ms=spent.get("tls"),
            first_byte_ms=spent.get("first_byte"),
        )


class TlsContexts:
    """Client SSL contexts built once per (verify, ca_file): building one costs milliseconds."""

    def __init__(self, sslobject_class: type[ssl.SSLObject] = ssl.SSLObject) -> None:
        self._cache: dict[tuple[bool, str | None], ssl.SSLContext] = {}
        self._sslobject_class = sslobject_class

    def get(self, verify: bool = True, ca_file: str | None = None) -> ssl.SSLContext:
        key = (verify, ca_file)
        ctx = self._cache.get(key)
        if ctx is None:
            ctx = ssl.create_default_context()
            if ca_file:
                ctx.load_verify_locations(cafile=ca_file)  # extra trust, on top of the system's
            if not verify:
                ctx.check_hostname = False
                ctx.verify_mode = ssl.CERT_NONE
            ctx.sslobject_class = self._sslobject_class
            self._cache[key] = ctx
        return ctx


@dataclasses.dataclass(frozen=True)
class Shared:
    """Built once per process: one outbound HTTP session for checks (and later notifiers)."""

    session: aiohttp.ClientSession
    tls: TlsContexts
    clock: Clock
    redact: Redactor
    user_agent: str
    # Which connected addresses count as internal for the redirect rule (see netguard).
    classify_address: Callable[[ipaddress.IPv4Address | ipaddress.IPv6Address], bool]
    # Sessions pinned to one address family, for `ip_version = 4 | 6`.
    family_sessions: dict[int, aiohttp.ClientSession] = dataclasses.field(default_factory=dict)

    def session_for(self, ip_version: int | None) -> aiohttp.ClientSession:
        if ip_version is None:
            return self.session
        return self.family_sessions[ip_version]


@dataclasses.dataclass(frozen=True)
class CheckContext:
    """Per run: the shared parts plus this run's phase timer."""

    shared: Shared
    timer: PhaseTimer
    deadline: float  # on clock.monotonic(); the runner enforces it, checks may budget by it

    @property
    def clock(self) -> Clock:
        return self.shared.clock

    def remaining(self) -> float:
        return max(0.0, self.deadline - self.shared.clock.monotonic())
