"""The batch format agents send and hubs parse: every field there and back, refusals that
name the field, and the clock check's limit and words."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from prober.agent import wire
from prober.results import AssertionResult, Certificate, CheckResult, Outcome, Phases
from prober.store.writer import Observation, to_row

CERT = Certificate(dt.datetime(2027, 3, 1, 12, 0, 5, tzinfo=dt.UTC), "CN=api.example.com", "CN=R11")
FULL = wire.WireResult(
    monitor="api",
    ts_ms=1_796_212_795_123,
    outcome=Outcome.DOWN,
    latency_us=5_003_120,
    status_code=503,
    error="status 503 not in [200]",
    dns_us=1200,
    connect_us=8100,
    tls_us=20500,
    first_byte_us=4_900_000,
    assertions=(
        AssertionResult("status", False, "503", "[200]"),
        AssertionResult("contains 'ok'", True, "found", "present"),
    ),
    certificate=CERT,
    details={"redirects": [{"status": 301, "to": "https://x/"}], "body_truncated": True},
)
BATCH = wire.Batch("frankfurt", 1_796_212_800_456, 42, 7, 3, (FULL,))


def test_every_field_there_and_back() -> None:
    body = wire.encode(BATCH)
    assert json.loads(body) == {
        "version": 1,
        "location": "frankfurt",
        "sent_ms": 1_796_212_800_456,
        "seq": 42,
        "queue_depth": 7,
        "dropped": 3,
        "results": [
            {
                "monitor": "api",
                "ts_ms": 1_796_212_795_123,
                "outcome": "down",
                "latency_us": 5_003_120,
                "status_code": 503,
                "error": "status 503 not in [200]",
                "phases_us": {"dns": 1200, "connect": 8100, "tls": 20500, "first_byte": 4_900_000},
                "assertions": [
                    {"name": "status", "ok": False, "saw": "503", "wanted": "[200]"},
                    {"name": "contains 'ok'", "ok": True, "saw": "found", "wanted": "present"},
                ],
                "certificate": {
                    "not_after": 1_803_902_405,
                    "subject": "CN=api.example.com",
                    "issuer": "CN=R11",
                },
                "details": {
                    "redirects": [{"status": 301, "to": "https://x/"}],
                    "body_truncated": True,
                },
            }
        ],
    }
    assert wire.parse(body) == BATCH


def test_a_bare_result_leaves_out_what_is_empty() -> None:
    bare = wire.WireResult("db", 5, Outcome.UP, 0)
    assert wire.result_json(bare) == {"monitor": "db", "ts_ms": 5, "outcome": "up", "latency_us": 0}
    empty = wire.Batch("seoul", 1, 0, 0, 0, ())
    assert wire.parse(wire.encode(empty)) == empty


def test_a_check_result_arrives_as_the_store_would_have_kept_it() -> None:
    """What the hub's writer stores from a wire result is the row the agent's result makes."""
    result = CheckResult(
        Outcome.DOWN,
        5003.12,
        error="status 503 not in [200]",
        status_code=503,
        phases=Phases(1.2, 8.1, 20.5, 4900.0),
        assertions=(AssertionResult("status", False, "503", "[200]"),),
        certificate=CERT,
        details={"redirects": 1},
    )
    at = dt.datetime(2026, 12, 3, 6, 0, 0, 123000, tzinfo=dt.UTC)
    sent = wire.from_check("api", 1_796_284_800_123, result)
    back = wire.parse(wire.encode(wire.Batch("seoul", 1, 0, 0, 0, (sent,)))).results[0]
    assert back.to_check() == result
    assert to_row(1, 2, Observation("api", at, back.to_check())) == to_row(
        1, 2, Observation("api", at, result)
    )


def test_what_a_check_made_too_big_is_clipped_to_what_a_hub_takes() -> None:
    result = CheckResult(
        Outcome.DOWN,
        float("nan"),
        error="x" * 5000 + "\ud800",
        status_code=70000,
        phases=Phases(dns_ms=-3.0, connect_ms=float("inf")),
        assertions=tuple(AssertionResult("a" * 3000, False, "s", "w") for _ in range(100)),
        certificate=Certificate(dt.datetime(2027, 1, 1, 0, 0, 0, 999, tzinfo=dt.UTC), "s", "i"),
        details={"answers": ["y" * 1000] * 40, 3: dt.date(2026, 1, 1)},
    )
    sent = wire.from_check("api", 1, result)
    assert wire.parse(wire.encode(wire.Batch("seoul", 1, 0, 0, 0, (sent,)))).results == (sent,)
    assert sent.error is not None and len(sent.error) == wire.MAX_TEXT and sent.error[-1] == "…"
    assert (sent.latency_us, sent.status_code, sent.dns_us, sent.connect_us) == (0, None, 0, None)
    assert len(sent.assertions) == wire.MAX_ASSERTIONS
    assert sent.assertions[0].name.endswith("…")
    assert sent.certificate is not None and sent.certificate.not_after.microsecond == 0
    assert sent.details == {"details_dropped": "details: 40150 bytes as JSON, at most 16384"}
    odd = wire.from_check("api", 1, CheckResult(Outcome.UP, 1.0, details={3: dt.date(2026, 1, 1)}))
    assert odd.details == {"3": "2026-01-01"}  # as the store writes it


def _body(**changes: Any) -> bytes:
    """BATCH as JSON with `changes` applied: "results.0.x" reaches into the first result;
    a value of DELETE removes the key."""
    doc = json.loads(wire.encode(BATCH))
    for path, value in changes.items():
        *parents, last = path.split(".")
        target = doc
        for part in parents:
            target = target[int(part)] if isinstance(target, list) else target[part]
        if value is DELETE:
            del target[last]
        else:
            target[last] = value
    return json.dumps(doc).encode()


DELETE = object()
REFUSALS = [
    (_body(version=2, shiny=True), "version: 2 is not supported; this hub reads 1"),
    (_body(version=True), "version: True is not supported; this hub reads 1"),
    (_body(surprise=1), "batch: unknown field 'surprise'"),
    (_body(seq=DELETE), "batch: missing field 'seq'"),
    (_body(seq=-1), "seq: -1 is out of range 0..9223372036854775807"),
    (_body(sent_ms="now"), "sent_ms: expected an integer, got string"),
    (
        _body(location="Frankfurt!"),
        "location: 'Frankfurt!' is not an id (lowercase letters, digits, '_' and '-')",
    ),
    (_body(results={}), "results: expected an array, got object"),
    (_body(**{"results.0.colour": "red"}), "results[0]: unknown field 'colour'"),
    (_body(**{"results.0.ts_ms": DELETE}), "results[0]: missing field 'ts_ms'"),
    (_body(**{"results.0.ts_ms": 1.5}), "results[0].ts_ms: expected an integer, got number"),
    (
        _body(**{"results.0.latency_us": True}),
        "results[0].latency_us: expected an integer, got boolean",
    ),
    (
        _body(**{"results.0.outcome": "sideways"}),
        "results[0].outcome: 'sideways' is not one of up, degraded, down, unknown",
    ),
    (
        _body(**{"results.0.status_code": 1000}),
        "results[0].status_code: 1000 is out of range 0..999",
    ),
    (_body(**{"results.0.error": "e" * 2001}), "results[0].error: 2001 characters, at most 2000"),
    (_body(**{"results.0.phases_us.ttfb": 1}), "results[0].phases_us: unknown field 'ttfb'"),
    (
        _body(**{"results.0.assertions.1.ok": 1}),
        "results[0].assertions[1].ok: expected a boolean, got integer",
    ),
    (
        _body(**{"results.0.assertions.0.hint": ""}),
        "results[0].assertions[0]: unknown field 'hint'",
    ),
    (
        _body(**{"results.0.certificate.not_after": "2027"}),
        "results[0].certificate.not_after: expected an integer, got string",
    ),
    (_body(**{"results.0.details": [1]}), "results[0].details: expected an object, got array"),
    (
        _body(**{"results.0.details.deep": [[[[[[[[1]]]]]]]]}),
        "results[0].details.deep[0][0][0][0][0][0][0]: nested deeper than 8",
    ),
    (
        _body(**{"results.0.details.big": "z" * 17000}),
        "results[0].details.big: 17000 characters, at most 16384",
    ),
    (
        _body(**{"results.0.details.blob": ["z" * 1000] * 17}),
        "results[0].details: 17130 bytes as JSON, at most 16384",
    ),
    (_body(**{"results.0.monitor": "x" * 201}), "results[0].monitor: 201 characters, at most 200"),
    (
        _body(results=[json.loads(wire.encode(BATCH))["results"][0]] * 2001),
        "results: 2001 results, at most 2000 per batch",
    ),
    (
        wire.encode(BATCH).replace(b'"error":"status', b'"error":"\\ud800'),
        "results[0].error: not valid Unicode text",
    ),
    (wire.encode(BATCH).replace(b'"seq":42', b'"seq":42,"seq":43'), "duplicate field 'seq'"),
    (wire.encode(BATCH).replace(b'"seq":42', b'"seq":NaN'), "NaN is not a JSON number"),
    (b"[]", "batch: expected an object, got array"),
    (b"\xff\xfe{}", "body is not UTF-8"),
    (b"[" * 100_000, "body is nested too deeply"),
    (
        b'{"version": 1,',
        "body is not JSON: Expecting property name enclosed in double quotes: line 1 column 15 (char 14)",
    ),
    (
        b" " * (wire.MAX_BODY_BYTES + 1),
        f"body is {wire.MAX_BODY_BYTES + 1} bytes, over {wire.MAX_BODY_BYTES}",
    ),
]


@pytest.mark.parametrize(("body", "message"), REFUSALS, ids=[m[:40] for _, m in REFUSALS])
def test_refusals_name_the_field(body: bytes, message: str) -> None:
    with pytest.raises(wire.WireError) as refused:
        wire.parse(body)
    assert str(refused.value) == message


def test_a_batch_too_large_to_send_says_so() -> None:
    long = wire.WireResult("api", 1, Outcome.DOWN, 1, error="\x00" * wire.MAX_TEXT)
    batch = wire.Batch("seoul", 1, 0, 0, 0, (long,) * wire.MAX_RESULTS)
    with pytest.raises(wire.WireError, match="over 8388608: send fewer results"):
        wire.encode(batch)


def test_typed_objects_refuse_what_the_format_cannot_carry() -> None:
    with pytest.raises(wire.WireError, match=r"^latency_us: expected an integer, got boolean$"):
        wire.WireResult("api", 1, Outcome.UP, True)
    with pytest.raises(wire.WireError, match=r"^details\.t: tuple is not a JSON value$"):
        wire.WireResult("api", 1, Outcome.UP, 1, details={"t": (1, 2)})
    naive = Certificate(dt.datetime(2027, 1, 1), "s", "i")
    with pytest.raises(wire.WireError, match="aware datetime in whole seconds"):
        wire.WireResult("api", 1, Outcome.UP, 1, certificate=naive)


# Hypothesis: any result the types allow goes there and back unchanged.

_texts = st.text(max_size=40)
_json = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | _texts,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_texts, inner, max_size=3),
    max_leaves=10,
)
_micros = st.none() | st.integers(0, wire.MAX_LATENCY_US)
_names = st.from_regex(r"[a-z0-9_-]{1,20}", fullmatch=True)
results = st.builds(
    wire.WireResult,
    monitor=_names,
    ts_ms=st.integers(0, wire.MAX_TS_MS),
    outcome=st.sampled_from(Outcome),
    latency_us=st.integers(0, wire.MAX_LATENCY_US),
    status_code=st.none() | st.integers(0, 999),
    error=st.none() | _texts,
    dns_us=_micros,
    connect_us=_micros,
    tls_us=_micros,
    first_byte_us=_micros,
    assertions=st.lists(
        st.builds(AssertionResult, _texts, st.booleans(), _texts, _texts), max_size=3
    ).map(tuple),
    certificate=st.none()
    | st.builds(
        Certificate,
        st.integers(0, wire.MAX_TS_MS // 1000).map(lambda s: dt.datetime.fromtimestamp(s, dt.UTC)),
        _texts,
        _texts,
    ),
    details=st.dictionaries(_texts, _json, max_size=4),
)
batches = st.builds(
    wire.Batch,
    location=_names,
    sent_ms=st.integers(0, wire.MAX_TS_MS),
    seq=st.integers(0, wire.MAX_COUNT),
    queue_depth=st.integers(0, wire.MAX_COUNT),
    dropped=st.integers(0, wire.MAX_COUNT),
    results=st.lists(results, max_size=3).map(tuple),
)


@settings(max_examples=150, deadline=None)
@given(batches)
def test_any_batch_there_and_back(batch: wire.Batch) -> None:
    assert wire.parse(wire.encode(batch)) == batch


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.binary(max_size=200), _json.map(lambda v: json.dumps(v).encode())))
def test_anything_else_is_a_wire_error(body: bytes) -> None:
    with pytest.raises(wire.WireError):
        wire.parse(body)


# The clock: more than 10 s either way is refused, with the line both sides log.

REFUSED = "refused, results kept queued; fix the agent's clock (NTP)"


@pytest.mark.parametrize(
    ("agent_ms", "offset", "refusal"),
    [
        (1_000_009_900, 9900, None),
        (999_990_100, -9900, None),
        (1_000_010_000, 10_000, None),
        (1_000_010_100, 10_100, f"agent clock is 10.1 s ahead of the hub; {REFUSED}"),
        (999_989_900, -10_100, f"agent clock is 10.1 s behind the hub; {REFUSED}"),
        (1_000_010_001, 10_001, f"agent clock is 10.1 s ahead of the hub; {REFUSED}"),
        (1_000_030_000, 30_000, f"agent clock is 30.0 s ahead of the hub; {REFUSED}"),
        (1_000_030_200, 30_200, f"agent clock is 30.2 s ahead of the hub; {REFUSED}"),
        (999_970_000, -30_000, f"agent clock is 30.0 s behind the hub; {REFUSED}"),
    ],
)
def test_clock_check(agent_ms: int, offset: int, refusal: str | None) -> None:
    checked = wire.check_clock(agent_ms, 1_000_000_000)
    assert (checked.offset_ms, checked.refusal, checked.ok) == (offset, refusal, refusal is None)


def test_clock_limit_is_settable() -> None:
    assert not wire.check_clock(2_500, 0, limit_ms=2_000).ok
    assert wire.check_clock(2_000, 0, limit_ms=2_000).ok
