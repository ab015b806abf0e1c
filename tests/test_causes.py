"""What the public reads as an incident's cause: the failure class of errors the real checks
wrote against loopback targets that put their own words in the body; never those words."""

from __future__ import annotations

import asyncio
import json
import pathlib
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from prober.causes import public_cause
from prober.checks.context import Shared
from prober.checks.runner import run_check
from prober.config.monitors import PushMonitor
from prober.push import PushHub
from prober.results import CheckResult, Outcome
from tests.support.dnsserver import DnsServer
from tests.support.hostile import closed_port, serve, silent, ssh_banner
from tests.support.monitors import monitor
from tests.support.pki import Pki, StreamServer, banner, hold

LEAK = "BODY-LEAK-4242"  # what the target says; never public
WANTED = "WANTED-KW-7731"  # what the operator looks for; not the public's business either


@pytest.fixture
async def target() -> AsyncIterator[str]:
    async def document(request: web.Request) -> web.Response:
        return web.json_response({"status": LEAK, "db": "db-master:5432"})

    async def text(request: web.Request) -> web.Response:
        return web.Response(text=f"hello {LEAK} from db-master:5432")

    async def unavailable(request: web.Request) -> web.Response:
        return web.Response(status=503, text=LEAK)

    app = web.Application()
    app.router.add_get("/json", document)
    app.router.add_get("/text", text)
    app.router.add_get("/503", unavailable)
    async with TestServer(app, host="127.0.0.1") as server:
        yield str(server.make_url("/"))


async def _down(shared: Shared, type_: str, **fields: Any) -> tuple[str, str]:
    """The check's own error and what the public reads of it."""
    fields.setdefault("timeout", "1s")
    spec = monitor(type_, **fields)
    result = await run_check(spec, shared)
    assert result.outcome is Outcome.DOWN, result
    assert result.error is not None
    return result.error, public_cause(result.error, spec)


@pytest.mark.parametrize(
    ("path", "fields", "cause"),
    [
        ("/503", {}, "HTTP 503"),
        ("/json", {"json": ['status == "ok"']}, "JSON assertion failed"),
        ("/json", {"json": ["items[0].id exists"]}, "JSON assertion failed"),
        ("/text", {"json": ['status == "ok"']}, "JSON assertion failed"),  # not JSON at all
        ("/text", {"contains": [WANTED]}, "keyword check failed"),
        ("/text", {"not_contains": [LEAK]}, "keyword check failed"),
        ("/text", {"regex": [f"^{WANTED}"]}, "regex check failed"),
        ("/503", {"json": ['status == "ok"']}, "HTTP 503"),  # the status is judged first
    ],
)
async def test_http_assertions_publish_their_class_only(
    shared: Shared, target: str, path: str, fields: dict[str, Any], cause: str
) -> None:
    error, public = await _down(shared, "http", url=target + path.lstrip("/"), **fields)
    assert public == cause
    assert error != public  # the operator's alert keeps the whole story


async def test_the_body_value_stays_in_the_error_and_out_of_the_cause(
    shared: Shared, target: str
) -> None:
    error, public = await _down(shared, "http", url=target + "json", json=['status == "ok"'])
    assert LEAK in error
    assert LEAK not in public


async def test_connection_failures(shared: Shared, tmp_path: pathlib.Path) -> None:
    refused = f"http://127.0.0.1:{closed_port()}/"
    assert (await _down(shared, "http", url=refused))[1] == "connection refused"
    assert (await _down(shared, "tcp", host="127.0.0.1", port=closed_port()))[1] == (
        "connection refused"
    )
    async with serve(silent()) as port:
        slow = await _down(shared, "http", url=f"http://127.0.0.1:{port}/", timeout="0.5s")
    assert slow[1] == "timed out"
    async with serve(ssh_banner()) as port:
        garbage = await _down(shared, "http", url=f"http://127.0.0.1:{port}/")
    assert garbage[1] == "invalid HTTP response"


async def test_a_tcp_reply_that_is_not_the_expected_one(shared: Shared) -> None:
    async with StreamServer(banner(LEAK.encode(), then_close=True)) as server:
        closed = await _down(shared, "tcp", host="127.0.0.1", port=server.port, expect="+OK")
    assert LEAK in closed[0]
    assert closed[1] == "expected reply not received"
    async with StreamServer(banner(LEAK.encode())) as server:
        waited = await _down(shared, "tcp", host="127.0.0.1", port=server.port, expect="+OK")
    assert LEAK in waited[0]
    assert waited[1] == "timed out"


async def test_tls_failures(shared: Shared, tmp_path: pathlib.Path) -> None:
    pki = Pki(tmp_path)
    host = {"host": "127.0.0.1", "ca_file": pki.ca_file}
    async with StreamServer(hold, ssl=pki.expired()) as server:
        assert (await _down(shared, "tls", port=server.port, **host))[1] == "certificate expired"
    async with StreamServer(hold, ssl=pki.self_signed()) as server:
        assert (await _down(shared, "tls", port=server.port, **host))[1] == "certificate invalid"
    async with StreamServer(hold, ssl=pki.expiring(days=2)) as server:
        soon = await _down(shared, "tls", port=server.port, down_days=7, warn_days=14, **host)
    assert soon[1] == "certificate expires soon"
    async with StreamServer(banner(LEAK.encode() + b"\r\n")) as server:
        plain = await _down(shared, "tls", port=server.port, **host)
    assert plain[1] == "TLS handshake failed"
    async with StreamServer(hold, ssl=pki.valid()) as server:
        https = await _down(shared, "http", url=f"https://127.0.0.1:{server.port}/")
    assert https[1] == "certificate invalid"  # our CA is not in the system's store


async def test_dns_failures(shared: Shared) -> None:
    async with DnsServer() as server:
        server.add("www.example.test", "A", "127.0.0.9")
        fields = {"nameservers": [server.address], "record": "A"}
        missing = await _down(shared, "dns", query="nope.example.test", **fields)
        wrong = await _down(shared, "dns", query="www.example.test", expect=["127.0.0.1"], **fields)
    assert (missing[1], wrong[1]) == ("DNS answer did not match", "DNS answer did not match")
    assert "127.0.0.9" in wrong[0]


def _push(**fields: Any) -> tuple[PushMonitor, PushHub, list[CheckResult]]:
    spec = PushMonitor.model_validate({"id": "job", "type": "push", "period": "1m", **fields})
    got: list[CheckResult] = []
    hub = PushHub([spec], {"job": "t" * 32}, "UTC", lambda _, __, result: got.append(result))
    hub.restore({}, 0)
    return spec, hub, got


@pytest.mark.parametrize(
    ("action", "query", "cause"),
    [
        ("fail", {"msg": "backup to db-master:5432 failed"}, "job reported failure: backup to [host] failed"),
        ("3", {"msg": "dump of 10.0.0.7:5432 failed"}, "job reported failure (exit code 3): dump of [address] failed"),
        ("3", {}, "job reported failure (exit code 3)"),
        ("", {"status": "down"}, "job reported failure"),
        ("fail", {"msg": "disk \u202eflow\u200b ok https://db.internal/x"}, "job reported failure: disk flow ok [url]"),
    ],
)  # fmt: skip
def test_push_shows_the_jobs_own_message_masked(
    action: str, query: dict[str, str], cause: str
) -> None:
    spec, hub, got = _push()
    assert hub.receive("t" * 32, action, query, 1000).status == 200
    [result] = got
    assert result.error is not None
    assert public_cause(result.error, spec) == cause


def test_push_silence_is_a_missed_heartbeat() -> None:
    spec, hub, got = _push()
    hub.overdue(10 * 60_000)
    assert got
    assert {public_cause(r.error or "", spec) for r in got} == {"missed heartbeat"}
    assert hub.receive("t" * 32, "start", {}, 11 * 60_000).status == 200
    hub.overdue(20 * 60_000)
    assert public_cause(got[-1].error or "", spec) == "run did not finish in time"


async def test_public_cause_wins_when_set(shared: Shared, target: str) -> None:
    fields = {"url": target + "json", "json": ['status == "ok"']}
    spec = monitor("http", public_cause="Payments are \u202eslow\u200b today", **fields)
    result = await run_check(spec, shared)
    assert result.error is not None
    assert public_cause(result.error, spec) == "Payments are slow today"
    push = PushMonitor.model_validate(
        {"id": "job", "type": "push", "period": "1m", "public_cause": "Nightly export"}
    )
    assert public_cause("exit code 2: db-master:5432", push) == "Nightly export"


@pytest.mark.parametrize(
    ("error", "cause"),
    [
        ("HTTP 302 redirect without a Location header", "redirect refused"),
        ("redirect to a ftp: URL refused (only http and https are followed)", "redirect refused"),
        ("too many redirects: more than 5", "too many redirects"),
        ("connection reset by peer", "connection reset"),
        ("no nameserver answered (127.0.0.1:53: connection refused)", "DNS lookup failed"),
        ("refused to connect to 169.254.169.254: link-local ...", "connection blocked"),
        ("server closed the connection without a response", "no response"),
        ("HTTP 503 from 10.0.0.7:8080", "HTTP 503"),  # imported results
        ("down", "check failed"),
        ("", "check failed"),
        (f"{LEAK}: status: saw 200,", "check failed"),  # the target's words never lead
        (json.dumps({"status": LEAK}), "check failed"),
    ],
)
def test_errors_without_a_loopback_case(error: str, cause: str) -> None:
    assert public_cause(error, monitor("http", url="http://127.0.0.1:9/")) == cause


async def test_causes_are_fixed_phrases(shared: Shared, target: str) -> None:
    """Nothing of the target's, whatever the check: a keyword monitor and a JSON one at once."""
    errors = await asyncio.gather(
        _down(shared, "http", url=target + "text", contains=[WANTED]),
        _down(shared, "http", url=target + "json", json=["db == 1"]),
    )
    for error, public in errors:
        for secret in (LEAK, WANTED, "db-master", "5432"):
            assert secret not in public, (error, public)
