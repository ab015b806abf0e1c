"""The HTTP check against a well-behaved aiohttp server on loopback: what it sends, what it
judges, and how it words a failure."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from prober.checks.context import Shared
from prober.checks.runner import run_check
from prober.results import CheckResult, Outcome
from tests.support.hostile import finishes_within
from tests.support.monitors import monitor

MiB = 1024 * 1024
DOCUMENT = {
    "status": "healthy",
    "services": {"database": {"response_time_ms": 120, "ok": True}},
    "items": [{"id": 1}, {"id": 2, "tags": ["a", "b"]}],
    "version": "1.2.3",
    "count": 3,
    "nothing": None,
}


@dataclasses.dataclass(frozen=True)
class Seen:
    """One request as the server received it."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes


@dataclasses.dataclass
class Target:
    """A loopback server and everything it has received."""

    server: TestServer
    seen: list[Seen]

    def url(self, path: str) -> str:
        return str(self.server.make_url(path))

    @property
    def paths(self) -> list[str]:
        return [s.path for s in self.seen]


def make_app(seen: list[Seen]) -> web.Application:
    routes = web.RouteTableDef()

    @web.middleware
    async def record(request: web.Request, handler: Any) -> web.StreamResponse:
        body = await request.read()
        seen.append(Seen(request.method, request.path, dict(request.headers), body))
        response: web.StreamResponse = await handler(request)
        return response

    @routes.get("/ok")
    async def ok(request: web.Request) -> web.Response:
        return web.Response(text="hello healthy world")

    @routes.get("/status/{code}")
    async def status(request: web.Request) -> web.Response:
        return web.Response(status=int(request.match_info["code"]))

    @routes.route("*", "/go")
    async def go(request: web.Request) -> web.Response:
        """A redirect: /go?status=302&to=/ok."""
        status = int(request.query.get("status", "302"))
        return web.Response(status=status, headers={"Location": request.query["to"]})

    @routes.get("/chain/{n}")
    async def chain(request: web.Request) -> web.Response:
        n = int(request.match_info["n"])
        if n == 0:
            return web.Response(text="arrived")
        raise web.HTTPFound(f"/chain/{n - 1}")

    @routes.route("*", "/echo")
    async def echo(request: web.Request) -> web.Response:
        return web.Response(text="echo")

    @routes.get("/json")
    async def document(request: web.Request) -> web.Response:
        return web.json_response(DOCUMENT)

    @routes.get("/body/{name}")
    async def body(request: web.Request) -> web.Response:
        return web.Response(text=BODIES[request.match_info["name"]])

    @routes.get("/slow")
    async def slow(request: web.Request) -> web.Response:
        await asyncio.sleep(0.3)
        return web.Response(text="ok")

    @routes.get("/big")
    async def big(request: web.Request) -> web.Response:
        return web.Response(body=b"x" * (2 * MiB))

    app = web.Application(middlewares=[record])
    app.add_routes(routes)
    return app


BODIES = {
    "html": "<html><body>not json</body></html>",
    "deep": "[" * 100_000 + "]" * 100_000,
    "ab": "a" * 40 + "b",
    "a-long": "a" * 30_000 + "!",
}

ServerFactory = Callable[..., Awaitable[TestServer]]


@pytest.fixture
async def target(aiohttp_server: ServerFactory) -> Target:
    seen: list[Seen] = []
    return Target(await aiohttp_server(make_app(seen)), seen)


@pytest.fixture
async def other(aiohttp_server: ServerFactory) -> Target:
    """A second server: another port, so another origin."""
    seen: list[Seen] = []
    return Target(await aiohttp_server(make_app(seen)), seen)


async def probe(shared: Shared, url: str, timeout: float = 2.0, **fields: Any) -> CheckResult:
    spec = monitor("http", url=url, timeout=f"{timeout:g}s", interval="10s", **fields)
    with finishes_within(timeout + 1):
        return await run_check(spec, shared)


# --- status ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("expect", "code", "outcome"),
    [
        ([200], 200, Outcome.UP),
        ([200], 201, Outcome.DOWN),
        ("2xx", 204, Outcome.UP),
        ("2xx", 500, Outcome.DOWN),
        ("200-299", 299, Outcome.UP),
        ("200-299", 300, Outcome.DOWN),
        ([404], 404, Outcome.UP),
        ([404], 200, Outcome.DOWN),
        ([200, "5xx"], 503, Outcome.UP),
    ],
)
async def test_expect_status(
    shared: Shared, target: Target, expect: Any, code: int, outcome: Outcome
) -> None:
    result = await probe(shared, target.url(f"/status/{code}"), expect_status=expect)
    assert result.outcome is outcome, result.error
    assert result.status_code == code


async def test_status_mismatch_reads_saw_and_wanted(shared: Shared, target: Target) -> None:
    result = await probe(shared, target.url("/status/503"), expect_status=[200])
    assert result.outcome is Outcome.DOWN
    assert result.error == "status: saw 503, wanted [200]"


# --- body: contains, not_contains, regex ----------------------------------------------


@pytest.mark.parametrize(
    ("fields", "error"),
    [
        ({"contains": "healthy"}, None),
        ({"contains": ["hello", "world"]}, None),
        ({"contains": ["hello", "missing"]}, "contains 'missing': saw absent, wanted present"),
        ({"not_contains": ["error", "down"]}, None),
        (
            {"not_contains": "healthy"},
            "not_contains 'healthy': saw present ('hello healthy world'), wanted absent",
        ),
        ({"regex": r"hel+o\s+\w+y"}, None),
        ({"regex": "^world"}, "regex '^world': saw no match, wanted a match"),
    ],
)
async def test_body_keywords(
    shared: Shared, target: Target, fields: dict[str, Any], error: str | None
) -> None:
    result = await probe(shared, target.url("/ok"), **fields)
    assert result.error == error
    assert result.outcome is (Outcome.UP if error is None else Outcome.DOWN)


@pytest.mark.parametrize(
    ("pattern", "body"),
    [
        ("(a|aa)+$", "ab"),  # exponential backtracking on "a" * 40 + "b"
        ("(a+)+$", "a-long"),  # RELIABILITY H15: "a" * 30000 + "!"
    ],
)
async def test_catastrophic_regex_is_cut_by_the_deadline(
    shared: Shared, target: Target, pattern: str, body: str
) -> None:
    result = await probe(shared, target.url(f"/body/{body}"), timeout=2, regex=pattern)
    assert result.outcome is Outcome.DOWN
    assert result.error in (
        f"regex {pattern!r}: saw no verdict (the regex ran out of time), wanted a match",
        # The regex module budgets CPU time, not wall time: on a busy machine the check's
        # wall-clock deadline may come first, while the body is being checked. Either way
        # the check ends on time.
        "timed out after 2s checking the body",
    )


async def test_catastrophic_regex_does_not_stall_other_checks(
    shared: Shared, target: Target
) -> None:
    """The regex runs off the event loop: a healthy check beside it answers on time."""
    hostile = probe(shared, target.url("/body/ab"), timeout=2, regex="(a|aa)+$")
    healthy = probe(shared, target.url("/ok"), timeout=2, degraded_after="500ms")
    results = await asyncio.gather(hostile, healthy)
    assert results[0].outcome is Outcome.DOWN
    assert results[1].outcome is Outcome.UP, results[1].error


# --- JSON -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("assertion", "ok", "saw"),
    [
        ('status == "healthy"', True, '"healthy"'),
        ('status != "down"', True, '"healthy"'),
        ('status == "down"', False, '"healthy"'),
        ("services.database.response_time_ms < 500", True, "120"),
        ("services.database.response_time_ms <= 120", True, "120"),
        ("services.database.response_time_ms > 100", True, "120"),
        ("services.database.response_time_ms >= 121", False, "120"),
        ("count > 5", False, "3"),
        ("services.database.ok == true", True, "true"),
        ("services.database.ok == 1", False, "true"),  # JSON true is not the number 1
        ("items[1].id == 2", True, "2"),
        ('items[1].tags[0] == "a"', True, '"a"'),
        ("items.0.id == 1", True, "1"),
        ("items[5].id == 1", False, "items[5].id missing"),
        ("services.cache.ok == true", False, "services.cache.ok missing"),
        ("version exists", True, "present"),
        ("nothing exists", True, "present"),  # null is a value
        ("services.cache exists", False, "missing"),
        ("services.cache not exists", True, "missing"),
        ("version not exists", False, "present"),
    ],
)
async def test_json_assertions(
    shared: Shared, target: Target, assertion: str, ok: bool, saw: str
) -> None:
    result = await probe(shared, target.url("/json"), json=[assertion])
    assert result.outcome is (Outcome.UP if ok else Outcome.DOWN), result.error
    verdict = result.assertions[-1]
    assert (verdict.name, verdict.ok, verdict.saw) == (f"json {assertion}", ok, saw)


async def test_json_failures_are_all_listed(shared: Shared, target: Target) -> None:
    result = await probe(
        shared,
        target.url("/json"),
        json=['status == "healthy"', "count > 5", "services.cache exists"],
    )
    assert result.outcome is Outcome.DOWN
    assert result.error == (
        "json count > 5: saw 3, wanted > 5; json services.cache exists: saw missing, wanted present"
    )


async def test_json_assertion_on_a_non_json_body(shared: Shared, target: Target) -> None:
    result = await probe(shared, target.url("/body/html"), json=['status == "ok"'])
    assert result.outcome is Outcome.DOWN
    assert result.error == "json: saw not JSON (JSONDecodeError at char 0), wanted a JSON document"


async def test_deeply_nested_json_is_down_not_a_crash(shared: Shared, target: Target) -> None:
    result = await probe(shared, target.url("/body/deep"), json=["status exists"])
    assert result.outcome is Outcome.DOWN
    assert result.error == "json: saw JSON nested too deeply, wanted a JSON document"


# --- latency ----------------------------------------------------------------------------


async def test_slower_than_degraded_after_is_degraded(shared: Shared, target: Target) -> None:
    result = await probe(shared, target.url("/slow"), degraded_after="100ms")
    assert result.outcome is Outcome.DEGRADED
    assert result.latency_ms >= 300
    assert result.error is not None
    assert result.error.startswith("slow: ")
    assert result.error.endswith("degraded_after 100ms")


async def test_faster_than_degraded_after_is_up(shared: Shared, target: Target) -> None:
    result = await probe(shared, target.url("/ok"), degraded_after="1s")
    assert result.outcome is Outcome.UP
    assert result.error is None


async def test_phases_are_recorded(shared: Shared, target: Target) -> None:
    result = await probe(shared, target.url("/ok"))
    assert result.outcome is Outcome.UP
    phases = result.phases
    assert phases.dns_ms is None  # an IP literal is not looked up
    assert phases.tls_ms is None
    assert phases.connect_ms is not None
    assert phases.connect_ms >= 0
    assert phases.first_byte_ms is not None
    assert phases.first_byte_ms >= 0
    assert result.latency_ms >= phases.connect_ms + phases.first_byte_ms


# --- redirects --------------------------------------------------------------------------


async def test_redirect_is_followed_by_default(shared: Shared, target: Target) -> None:
    result = await probe(shared, target.url("/go?status=302&to=/ok"), contains="healthy")
    assert result.outcome is Outcome.UP
    assert target.paths == ["/go", "/ok"]
    assert result.details["redirects"] == [f"302 -> {target.url('/ok')}"]


async def test_follow_redirects_false_judges_the_redirect_itself(
    shared: Shared, target: Target
) -> None:
    result = await probe(shared, target.url("/go?status=302&to=/ok"), follow_redirects=False)
    assert result.outcome is Outcome.DOWN
    assert result.error == "status: saw 302, wanted [200-299]"
    assert target.paths == ["/go"]

    result = await probe(
        shared, target.url("/go?status=302&to=/ok"), follow_redirects=False, expect_status=[302]
    )
    assert result.outcome is Outcome.UP


async def test_max_redirects(shared: Shared, target: Target) -> None:
    result = await probe(shared, target.url("/chain/3"), max_redirects=3, contains="arrived")
    assert result.outcome is Outcome.UP
    assert len(result.details["redirects"]) == 3

    target.seen.clear()
    result = await probe(shared, target.url("/chain/3"), max_redirects=2)
    assert result.outcome is Outcome.DOWN
    assert result.error == "too many redirects: more than 2"
    assert target.paths == ["/chain/3", "/chain/2", "/chain/1"]  # /chain/0 never requested


@pytest.mark.parametrize(
    ("status", "method", "body"),
    [(303, "GET", b""), (302, "GET", b""), (301, "GET", b""), (307, "POST", b"payload")],
)
async def test_redirect_method_rules_for_post(
    shared: Shared, target: Target, status: int, method: str, body: bytes
) -> None:
    result = await probe(
        shared, target.url(f"/go?status={status}&to=/echo"), method="POST", body="payload"
    )
    assert result.outcome is Outcome.UP, result.error
    first, second = target.seen
    assert (first.method, first.body) == ("POST", b"payload")
    assert (second.path, second.method, second.body) == ("/echo", method, body)


async def test_redirect_without_location_is_down(shared: Shared, target: Target) -> None:
    result = await probe(shared, target.url("/status/302"))
    assert result.outcome is Outcome.DOWN
    assert result.error == "HTTP 302 redirect without a Location header"


# --- what the server receives -----------------------------------------------------------


async def test_method_headers_body_and_basic_auth_reach_the_server(
    shared: Shared, target: Target
) -> None:
    result = await probe(
        shared,
        target.url("/echo"),
        method="PUT",
        headers={"X-Api-Key": "k-123", "Content-Type": "application/json"},
        body='{"ping": true}',
        basic_auth={"username": "probe", "password": "pw"},
    )
    assert result.outcome is Outcome.UP, result.error
    [seen] = target.seen
    assert seen.method == "PUT"
    assert seen.body == b'{"ping": true}'
    assert seen.headers["X-Api-Key"] == "k-123"
    assert seen.headers["Content-Type"] == "application/json"
    assert seen.headers["Authorization"] == aiohttp.encode_basic_auth("probe", "pw")
    assert seen.headers["User-Agent"].startswith("prober/")


@pytest.mark.parametrize(
    "credentials",
    [
        {"basic_auth": {"username": "probe", "password": "pw"}},
        {"headers": {"Authorization": "Bearer t0ken"}},
        {"headers": {"X-Api-Key": "k3y-value"}},
    ],
)
async def test_authorization_does_not_follow_a_redirect_to_another_origin(
    shared: Shared, target: Target, other: Target, credentials: dict[str, Any]
) -> None:
    away = other.url("/echo")
    result = await probe(
        shared, str(target.server.make_url("/go").with_query(to=away)), **credentials
    )
    assert result.outcome is Outcome.UP, result.error
    [first] = target.seen
    [second] = other.seen
    sent = (
        "X-Api-Key"
        if "headers" in credentials and "X-Api-Key" in credentials["headers"]
        else "Authorization"
    )
    assert sent in first.headers
    assert sent not in second.headers


async def test_authorization_follows_a_redirect_on_the_same_origin(
    shared: Shared, target: Target
) -> None:
    # e.g. /api/health -> /api/health/ : the same server, so the same credentials.
    result = await probe(
        shared, target.url("/go?to=/echo"), headers={"Authorization": "Bearer t0ken"}
    )
    assert result.outcome is Outcome.UP, result.error
    assert [s.headers.get("Authorization") for s in target.seen] == ["Bearer t0ken"] * 2


# --- max_body ---------------------------------------------------------------------------


async def test_body_over_max_body_is_judged_on_its_first_max_body_bytes(
    shared: Shared, target: Target
) -> None:
    result = await probe(shared, target.url("/big"), max_body="1MiB")
    assert result.outcome is Outcome.UP
    assert result.details["body_truncated"] is True
    assert result.status_code == 200
    beyond = await probe(shared, target.url("/big"), max_body="1MiB", regex="x{2097152}")
    assert beyond.outcome is Outcome.DOWN
    assert beyond.error == (
        "regex 'x{2097152}': saw no match, wanted a match"
        " (judged on the first 1048576 bytes: the body is larger than max_body)"
    )


async def test_body_under_max_body_is_read_whole(shared: Shared, target: Target) -> None:
    result = await probe(shared, target.url("/big"), max_body="4MiB", regex="x{2097152}")
    assert result.outcome is Outcome.UP, result.error


# --- secrets ----------------------------------------------------------------------------


async def test_error_and_details_never_carry_secrets(shared: Shared, target: Target) -> None:
    password, header_secret = "hunter2-url-pass", "header-secret-xyz"
    url = target.url("/go?to=/status/500").replace("://", f"://probe:{password}@", 1)
    result = await probe(shared, url, headers={"X-Api-Key": header_secret}, expect_status=[200])
    assert result.outcome is Outcome.DOWN
    assert result.error == "status: saw 500, wanted [200]"
    assert [s.headers["X-Api-Key"] for s in target.seen] == [header_secret] * 2  # it was sent
    shown = (result.error or "") + json.dumps(result.details_json())
    assert password not in shown
    assert header_secret not in shown
    assert "probe:***@" in result.details["redirects"][0]
