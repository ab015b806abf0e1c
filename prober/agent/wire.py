"""The batch an agent sends its hub: versioned JSON, built from and parsed into typed objects.

    {"version": 1, "location": "frankfurt", "sent_ms": 1796212800123, "seq": 42,
     "queue_depth": 0, "dropped": 0,
     "results": [{"monitor": "api", "ts_ms": 1796212795000, "outcome": "down",
                  "latency_us": 5003120, "status_code": 503, "error": "status 503 ...",
                  "phases_us": {"dns": 1200, "connect": 8100, "tls": 20500},
                  "assertions": [{"name": "status", "ok": false, "saw": "503",
                                  "wanted": "[200]"}],
                  "certificate": {"not_after": 1798761599, "subject": "CN=api.example.com",
                                  "issuer": "CN=R11"},
                  "details": {"redirects": 1}}]}

A result is keyed (monitor, the batch's location, ts_ms), so a batch sent twice is stored
once. `sent_ms` is the agent's clock as it sent (`check_clock`). `seq` numbers the batches
after the last one the hub acknowledged: a repeated `seq` is a resend. `queue_depth` is the
results still queued behind this batch; `dropped`, the results the agent dropped (its queue
full) that no hub has acknowledged hearing about. Optional result fields are left out when
empty. Latency and phases travel as integer microseconds, as the store keeps them.

Parsing faces the network: bounded (body bytes, results per batch, text lengths, nesting),
strict (types checked, booleans are not numbers, no NaN, duplicate and unknown fields
refused), and each refusal names the field: `results[3]: unknown field 'foo'`. The typed
objects check themselves, so whatever an agent could queue, its hub accepts. Pure: no I/O.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import math
import re
from typing import Any, NoReturn

from prober.results import AssertionResult, Certificate, CheckResult, Outcome, Phases

VERSION = 1
MAX_BODY_BYTES = 8 * 1024 * 1024
MAX_RESULTS = 2000  # per batch
MAX_NAME = 200  # characters of a monitor or location id
MAX_TEXT = 2000  # characters of an error, an assertion's words, a certificate's names
MAX_ASSERTIONS = 64
MAX_DETAILS_BYTES = 16 * 1024  # details as compact UTF-8 JSON
MAX_DETAILS_DEPTH = 8
MAX_TS_MS = 253_402_300_799_999  # 9999-12-31T23:59:59.999Z
MAX_LATENCY_US = 86_400_000_000  # a day
MAX_COUNT = 2**63 - 1  # what SQLite's integers hold
CLOCK_LIMIT_MS = 10_000

_NAME = re.compile(r"[a-z0-9_-]+")  # a slug, as prober.config.types.Slug
_PHASES = ("dns", "connect", "tls", "first_byte")
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_SECOND = dt.timedelta(seconds=1)


class WireError(ValueError):
    """Not a valid version-1 batch: `field: problem`, the field as a path
    (`results[3].phases_us.dns`); `field` is empty for the batch as a whole."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}" if field else problem)
        self.field = field
        self.problem = problem

    def within(self, prefix: str) -> WireError:
        return WireError(f"{prefix}.{self.field}" if self.field else prefix, self.problem)


@dataclasses.dataclass(frozen=True, slots=True)
class WireResult:
    """One result as it travels: what prober.results.CheckResult holds, at the time it was
    taken. The location is the batch's."""

    monitor: str
    ts_ms: int  # UTC epoch milliseconds of the check's start
    outcome: Outcome
    latency_us: int
    status_code: int | None = None
    error: str | None = None
    dns_us: int | None = None
    connect_us: int | None = None
    tls_us: int | None = None
    first_byte_us: int | None = None
    assertions: tuple[AssertionResult, ...] = ()
    certificate: Certificate | None = None  # not_after aware, in whole seconds
    details: dict[str, Any] = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        _name("monitor", self.monitor)
        _int("ts_ms", self.ts_ms, 0, MAX_TS_MS)
        if not isinstance(self.outcome, Outcome):
            _fail("outcome", f"expected an Outcome, got {_kind(self.outcome)}")
        _int("latency_us", self.latency_us, 0, MAX_LATENCY_US)
        if self.status_code is not None:
            _int("status_code", self.status_code, 0, 999)
        if self.error is not None:
            _text("error", self.error)
        for phase in _PHASES:
            value = getattr(self, f"{phase}_us")
            if value is not None:
                _int(f"phases_us.{phase}", value, 0, MAX_LATENCY_US)
        if not isinstance(self.assertions, tuple):
            _fail("assertions", f"expected a tuple, got {_kind(self.assertions)}")
        if len(self.assertions) > MAX_ASSERTIONS:
            _fail("assertions", f"{len(self.assertions)} of them, at most {MAX_ASSERTIONS}")
        for i, check in enumerate(self.assertions):
            _assertion(f"assertions[{i}]", check)
        if self.certificate is not None:
            _certificate(self.certificate)
        _details(self.details)

    def to_check(self) -> CheckResult:
        """The CheckResult a hub hands its writer (with the time, `ts_ms`)."""
        return CheckResult(
            self.outcome,
            self.latency_us / 1000,
            error=self.error,
            status_code=self.status_code,
            phases=Phases(*(_ms(getattr(self, f"{p}_us")) for p in _PHASES)),
            assertions=self.assertions,
            certificate=self.certificate,
            details=dict(self.details),
        )


@dataclasses.dataclass(frozen=True, slots=True)
class Batch:
    location: str  # the agent's
    sent_ms: int  # the agent's clock as it sent, UTC epoch milliseconds
    seq: int
    queue_depth: int  # results queued behind this batch
    dropped: int  # results dropped and not yet acknowledged
    results: tuple[WireResult, ...]

    def __post_init__(self) -> None:
        _name("location", self.location)
        _int("sent_ms", self.sent_ms, 0, MAX_TS_MS)
        for field in ("seq", "queue_depth", "dropped"):
            _int(field, getattr(self, field), 0, MAX_COUNT)
        if not isinstance(self.results, tuple):
            _fail("results", f"expected a tuple, got {_kind(self.results)}")
        if len(self.results) > MAX_RESULTS:
            _fail("results", f"{len(self.results)} results, at most {MAX_RESULTS} per batch")
        for i, result in enumerate(self.results):
            if not isinstance(result, WireResult):
                _fail(f"results[{i}]", f"expected a WireResult, got {_kind(result)}")


def from_check(monitor: str, ts_ms: int, result: CheckResult) -> WireResult:
    """What a check observed, ready to queue and send. Text past the format's limits is
    clipped (ending in …), details too large or not JSON become a note saying so, and
    latency is clamped to the format's range: an agent never queues what its hub refuses."""
    phases = result.phases
    code = result.status_code
    return WireResult(
        monitor=monitor,
        ts_ms=ts_ms,
        outcome=result.outcome,
        latency_us=_us(result.latency_ms) or 0,
        status_code=code if code is not None and 0 <= code <= 999 else None,
        error=None if result.error is None else _clip(result.error),
        dns_us=_us(phases.dns_ms),
        connect_us=_us(phases.connect_ms),
        tls_us=_us(phases.tls_ms),
        first_byte_us=_us(phases.first_byte_ms),
        assertions=tuple(
            AssertionResult(_clip(a.name), bool(a.ok), _clip(a.saw), _clip(a.wanted))
            for a in result.assertions[:MAX_ASSERTIONS]
        ),
        certificate=_sendable_certificate(result.certificate),
        details=_sendable_details(result.details),
    )


def result_json(result: WireResult) -> dict[str, Any]:
    out: dict[str, Any] = {
        "monitor": result.monitor,
        "ts_ms": result.ts_ms,
        "outcome": result.outcome.value,
        "latency_us": result.latency_us,
    }
    if result.status_code is not None:
        out["status_code"] = result.status_code
    if result.error is not None:
        out["error"] = result.error
    phases = {p: v for p in _PHASES if (v := getattr(result, f"{p}_us")) is not None}
    if phases:
        out["phases_us"] = phases
    if result.assertions:
        out["assertions"] = [
            {"name": a.name, "ok": a.ok, "saw": a.saw, "wanted": a.wanted}
            for a in result.assertions
        ]
    cert = result.certificate
    if cert is not None:
        out["certificate"] = {
            "not_after": (cert.not_after - _EPOCH) // _SECOND,
            "subject": cert.subject,
            "issuer": cert.issuer,
        }
    if result.details:
        out["details"] = result.details
    return out


def encode(batch: Batch) -> bytes:
    """The request body. A batch over MAX_BODY_BYTES (results with very long texts) is a
    WireError: send fewer results at once."""
    doc = {
        "version": VERSION,
        "location": batch.location,
        "sent_ms": batch.sent_ms,
        "seq": batch.seq,
        "queue_depth": batch.queue_depth,
        "dropped": batch.dropped,
        "results": [result_json(r) for r in batch.results],
    }
    body = _dumps(doc).encode()
    if len(body) > MAX_BODY_BYTES:
        _fail("", f"batch is {len(body)} bytes, over {MAX_BODY_BYTES}: send fewer results")
    return body


def parse(body: bytes) -> Batch:
    """A request body as a Batch, or a WireError naming what is wrong and where."""
    if len(body) > MAX_BODY_BYTES:
        _fail("", f"body is {len(body)} bytes, over {MAX_BODY_BYTES}")
    try:
        doc = json.loads(
            body.decode("utf-8"), object_pairs_hook=_object, parse_constant=_no_constant
        )
    except WireError:
        raise
    except UnicodeDecodeError:
        _fail("", "body is not UTF-8")
    except RecursionError:
        _fail("", "body is nested too deeply")
    except ValueError as exc:  # JSONDecodeError, and integers of thousands of digits
        _fail("", f"body is not JSON: {exc}")
    version = doc.get("version", VERSION) if isinstance(doc, dict) else VERSION
    if version != VERSION or type(version) is not int:  # first: a newer batch's fields
        _fail("version", f"{version!r} is not supported; this hub reads {VERSION}")
    doc = _fields(doc, "batch", _BATCH_FIELDS)
    results = doc.pop("results")
    if not isinstance(results, list):
        _fail("results", f"expected an array, got {_kind(results)}")
    if len(results) > MAX_RESULTS:
        _fail("results", f"{len(results)} results, at most {MAX_RESULTS} per batch")
    parsed = []
    for i, item in enumerate(results):
        try:
            parsed.append(parse_result(item))
        except WireError as exc:
            raise exc.within(f"results[{i}]") from None
    del doc["version"]
    return Batch(results=tuple(parsed), **doc)


_BATCH_FIELDS = {"version", "location", "sent_ms", "seq", "queue_depth", "dropped", "results"}


@dataclasses.dataclass(frozen=True, slots=True)
class ClockCheck:
    offset_ms: int  # the agent's clock minus the hub's: positive when the agent is ahead
    refusal: str | None  # the line both sides log; None when within the limit

    @property
    def ok(self) -> bool:
        return self.refusal is None


def check_clock(agent_ms: int, hub_ms: int, limit_ms: int = CLOCK_LIMIT_MS) -> ClockCheck:
    """Compare a batch's `sent_ms` with the hub's clock; beyond `limit_ms` either way the
    batch is refused (its results stay queued), never corrected. Take `hub_ms` when the
    request arrives, before its body is read: the offset includes the transit time."""
    offset = agent_ms - hub_ms
    if abs(offset) <= limit_ms:
        return ClockCheck(offset, None)
    tenths = -(-abs(offset) // 100)  # rounded up: 10.01 s reads 10.1 s, never "10.0 s"
    way = "ahead of" if offset > 0 else "behind"
    return ClockCheck(
        offset,
        f"agent clock is {tenths // 10}.{tenths % 10} s {way} the hub; refused, results kept"
        " queued; fix the agent's clock (NTP)",
    )


# Parsing: JSON values into the typed objects, which check ranges and lengths themselves.

_OUTCOMES = {o.value for o in Outcome}
_RESULT_REQUIRED = {"monitor", "ts_ms", "outcome", "latency_us"}
_RESULT_OPTIONAL = {"status_code", "error", "phases_us", "assertions", "certificate", "details"}


def parse_result(item: object) -> WireResult:
    """One result's JSON (as `result_json` makes it) as a WireResult, or a WireError."""
    fields = _fields(item, "", _RESULT_REQUIRED, _RESULT_OPTIONAL)
    outcome = fields["outcome"]
    if not isinstance(outcome, str) or outcome not in _OUTCOMES:
        _fail("outcome", f"{outcome!r} is not one of {', '.join(o.value for o in Outcome)}")
    fields["outcome"] = Outcome(outcome)
    for phase, value in _fields(fields.pop("phases_us", {}), "phases_us", set(), _PHASES).items():
        fields[f"{phase}_us"] = value
    assertions = fields.pop("assertions", [])
    if not isinstance(assertions, list):
        _fail("assertions", f"expected an array, got {_kind(assertions)}")
    if len(assertions) > MAX_ASSERTIONS:
        _fail("assertions", f"{len(assertions)} of them, at most {MAX_ASSERTIONS}")
    fields["assertions"] = tuple(
        AssertionResult(**_fields(a, f"assertions[{i}]", {"name", "ok", "saw", "wanted"}))
        for i, a in enumerate(assertions)
    )
    if "certificate" in fields:
        cert = _fields(fields["certificate"], "certificate", {"not_after", "subject", "issuer"})
        seconds = cert["not_after"]
        _int("certificate.not_after", seconds, 0, MAX_TS_MS // 1000)
        fields["certificate"] = Certificate(
            _EPOCH + seconds * _SECOND, cert["subject"], cert["issuer"]
        )
    return WireResult(**fields)


def _fields(
    value: object, path: str, required: set[str], optional: set[str] | tuple[str, ...] = ()
) -> dict[str, Any]:
    if not isinstance(value, dict):
        _fail(path, f"expected an object, got {_kind(value)}")
    for key in value:
        if key not in required and key not in optional:
            _fail(path, f"unknown field {key!r}")
    for key in sorted(required):
        if key not in value:
            _fail(path, f"missing field {key!r}")
    return dict(value)


def _object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            _fail("", f"duplicate field {key!r}")
        out[key] = value
    return out


def _no_constant(name: str) -> NoReturn:
    _fail("", f"{name} is not a JSON number")


# Checks the typed objects run on themselves.


def _fail(field: str, problem: str) -> NoReturn:
    raise WireError(field, problem)


def _kind(value: object) -> str:
    names = {bool: "boolean", int: "integer", float: "number", str: "string"}
    names |= {dict: "object", list: "array", type(None): "null"}
    return names.get(type(value), type(value).__name__)


def _int(field: str, value: object, low: int, high: int) -> None:
    if type(value) is not int:  # booleans are ints to Python, not to the format
        _fail(field, f"expected an integer, got {_kind(value)}")
    if not low <= value <= high:
        _fail(field, f"{value} is out of range {low}..{high}")


def _text(field: str, value: object, limit: int = MAX_TEXT) -> None:
    if not isinstance(value, str):
        _fail(field, f"expected a string, got {_kind(value)}")
    if len(value) > limit:
        _fail(field, f"{len(value)} characters, at most {limit}")
    try:
        value.encode()
    except UnicodeEncodeError:  # a lone surrogate, which "\ud800" in JSON can make
        _fail(field, "not valid Unicode text")


def _name(field: str, value: object) -> None:
    _text(field, value, MAX_NAME)
    assert isinstance(value, str)
    if not _NAME.fullmatch(value):
        _fail(field, f"{value!r} is not an id (lowercase letters, digits, '_' and '-')")


def _assertion(field: str, check: object) -> None:
    if not isinstance(check, AssertionResult):
        _fail(field, f"expected an AssertionResult, got {_kind(check)}")
    if not isinstance(check.ok, bool):
        _fail(f"{field}.ok", f"expected a boolean, got {_kind(check.ok)}")
    for part in ("name", "saw", "wanted"):
        _text(f"{field}.{part}", getattr(check, part))


def _certificate(cert: object) -> None:
    if not isinstance(cert, Certificate):
        _fail("certificate", f"expected a Certificate, got {_kind(cert)}")
    moment = cert.not_after
    if not isinstance(moment, dt.datetime) or moment.tzinfo is None or moment.microsecond:
        _fail("certificate.not_after", "expected an aware datetime in whole seconds")
    _int("certificate.not_after", (moment - _EPOCH) // _SECOND, 0, MAX_TS_MS // 1000)
    _text("certificate.subject", cert.subject)
    _text("certificate.issuer", cert.issuer)


def _details(details: object) -> None:
    if not isinstance(details, dict):
        _fail("details", f"expected an object, got {_kind(details)}")
    if not details:
        return
    _json_value("details", details, 1)
    size = len(_dumps(details).encode())
    if size > MAX_DETAILS_BYTES:
        _fail("details", f"{size} bytes as JSON, at most {MAX_DETAILS_BYTES}")


def _json_value(field: str, value: object, depth: int) -> None:
    """JSON that survives the trip unchanged: str keys, lists not tuples, finite numbers."""
    if depth > MAX_DETAILS_DEPTH:
        _fail(field, f"nested deeper than {MAX_DETAILS_DEPTH}")
    if isinstance(value, dict):
        for key, item in value.items():
            _text(f"{field}.{key}" if isinstance(key, str) else field, key)
            _json_value(f"{field}.{key}", item, depth + 1)
    elif isinstance(value, list):
        for i, item in enumerate(value):
            _json_value(f"{field}[{i}]", item, depth + 1)
    elif isinstance(value, str):
        _text(field, value, MAX_DETAILS_BYTES)
    elif isinstance(value, float) and not math.isfinite(value):
        _fail(field, f"{value} is not a JSON number")
    elif value is not None and type(value) not in (bool, int, float):
        _fail(field, f"{_kind(value)} is not a JSON value")


def _dumps(value: object) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False)


# Building from a CheckResult: made to fit the limits rather than refused.


def _us(ms: float | None) -> int | None:
    if ms is None or not math.isfinite(ms):
        return None
    return min(max(round(ms * 1000), 0), MAX_LATENCY_US)


def _ms(us: int | None) -> float | None:
    return None if us is None else us / 1000


def _clip(text: str) -> str:
    text = text.encode("utf-8", "replace").decode()  # lone surrogates become "?"
    return text if len(text) <= MAX_TEXT else text[: MAX_TEXT - 1] + "…"


def _sendable_certificate(cert: Certificate | None) -> Certificate | None:
    if cert is None or cert.not_after.tzinfo is None:
        return None
    seconds = min(max((cert.not_after - _EPOCH) // _SECOND, 0), MAX_TS_MS // 1000)
    return Certificate(_EPOCH + seconds * _SECOND, _clip(cert.subject), _clip(cert.issuer))


def _sendable_details(details: dict[str, Any]) -> dict[str, Any]:
    if not details:
        return {}
    try:  # as the store writes them: anything unknown as its str()
        value = json.loads(json.dumps(details, default=str))
        _details(value)
    except (ValueError, TypeError, RecursionError) as exc:
        return {"details_dropped": _clip(str(exc))}
    assert isinstance(value, dict)
    return value
