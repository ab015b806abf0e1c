"""The status page's aiohttp app, built by a factory. Read-only: every public route renders
from the Publisher's current Snapshot (public monitors only, allow-listed fields), from
memory, with ETag / Last-Modified / Cache-Control and gzip."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import errno
import hmac
import importlib.resources
import json
import pathlib
import re
import typing
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Protocol

import jinja2
import prometheus_client
import prometheus_client.openmetrics.exposition
from aiohttp import web

from prober import timeline
from prober.config import Config
from prober.report import monthly
from statuspage import api, atlassian, badges, feeds, pages
from statuspage.i18n import LANGUAGES
from statuspage.metrics import exposition
from statuspage.publisher import Publisher, Render
from statuspage.scrapes import Keeper, Scrapes
from statuspage.snapshot import Snapshot


class HealthReport(Protocol):
    """What /healthz shows: statuspage.health.Health, or the probing process's report
    relayed by the web process (prober.runtime.web.Remote)."""

    def report(self) -> dict[str, object] | Awaitable[dict[str, object]]: ...


CONFIG = web.AppKey("config", Config)
HEALTH: web.AppKey[HealthReport] = web.AppKey("health")
TEMPLATES = web.AppKey("templates", jinja2.Environment)
SCRAPES = web.AppKey("scrapes", Scrapes)
KEEPER = web.AppKey("keeper", Keeper)
OPENMETRICS = prometheus_client.openmetrics.exposition.CONTENT_TYPE_LATEST
_openmetrics = typing.cast(
    Callable[[prometheus_client.CollectorRegistry], bytes],
    prometheus_client.openmetrics.exposition.generate_latest,
)
PUBLISHER = web.AppKey("publisher", Publisher)
# (token, action, query) -> (status, text): prober.runtime.web.PushGate, which forwards
# to prober.push.PushHub in the probing process; tests may pass a plain function
PushReceiver = Callable[[str, str, Mapping[str, str]], tuple[int, str] | Awaitable[tuple[int, str]]]
PUSH: web.AppKey[PushReceiver] = web.AppKey("push")
PUSH_BODY_LIMIT = 4096  # bytes of a push request's body read (and dropped) at most


class AgentApi(Protocol):
    """The agents' routes (/api/agent/v1/...): prober.agent.gate.AgentGate, which checks
    the token, bounds and parses the body, and asks the probing process."""

    async def monitors(self, request: web.Request) -> web.Response: ...

    async def results(self, request: web.Request) -> web.Response: ...


AGENTS: web.AppKey[AgentApi] = web.AppKey("agents")

HTML = "text/html; charset=utf-8"
JSON = "application/json"
SVG = "image/svg+xml"
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'; base-uri 'none';"
        " form-action 'self'"  # the subscribe form (statuspage.subscribe); still no script
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}
CACHE_CONTROL = "public, max-age=10"
PREPARE_BEFORE_LISTEN = 2000  # monitors: up to this many, the page is built before listening
# static/ in the source tree; statuspage/static inside the wheel (see pyproject.toml)
STATIC_DIR = pathlib.Path(str(importlib.resources.files("statuspage.static")))
_MONTH = re.compile(r"[0-9]{4}-(0[1-9]|1[0-2])")  # fullmatch; ASCII digits only
_WHOLE = re.compile(r"-?[0-9]{1,12}")  # fullmatch: `days`, then clamped
WINDOWS = ("24h", "7d", "30d", "90d")  # an uptime badge's


@web.middleware
async def security_headers(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    try:
        response = await handler(request)
    except web.HTTPException as exc:
        response = exc
    except OSError as exc:  # aiohttp's /static/ stats a name past NAME_MAX: no such file
        if exc.errno != errno.ENAMETOOLONG:
            raise
        response = web.HTTPNotFound(text="not found\n")
    response.headers.update(SECURITY_HEADERS)
    if isinstance(response, web.HTTPException) and response.status >= 400:
        raise response
    return response


async def respond(
    request: web.Request, key: object, render: Render, content_type: str, *, cors: bool = False
) -> web.Response:
    """A body from the publisher's memory, honouring If-None-Match and Accept-Encoding."""
    rendered = await request.app[PUBLISHER].rendered(key, render, content_type)
    if rendered is None:
        raise web.HTTPNotFound(text="not found\n")
    headers = {
        "ETag": rendered.etag,
        "Last-Modified": rendered.last_modified,
        "Cache-Control": CACHE_CONTROL,
        "Vary": "Accept-Encoding",
    }
    if cors:
        headers["Access-Control-Allow-Origin"] = "*"
    if rendered.etag in request.headers.get("If-None-Match", ""):
        return web.Response(status=304, headers=headers)
    body = rendered.body
    if rendered.gzipped is not None and "gzip" in request.headers.get("Accept-Encoding", ""):
        body = rendered.gzipped
        headers["Content-Encoding"] = "gzip"
    headers["Content-Type"] = rendered.content_type
    return web.Response(body=body, headers=headers)


def _json(value: object) -> bytes:
    """Compact JSON; `<`, `>` and `&` as \\u escapes, so a name can never become markup
    wherever the JSON ends up embedded."""
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    return text.translate(_JSON_ESCAPES).encode()


_JSON_ESCAPES = str.maketrans({"<": "\\u003c", ">": "\\u003e", "&": "\\u0026"})


def _lang(request: web.Request) -> str:
    wanted = request.query.get("lang", "")
    return wanted if wanted in LANGUAGES else request.app[PUBLISHER].config.settings.language


async def index(request: web.Request) -> web.Response:
    lang, env = _lang(request), request.app[TEMPLATES]
    page = await _page(request)
    if page == 1:
        return await respond(request, ("/", lang), lambda s: pages.render_index(s, lang, env), HTML)
    render: Render = lambda s: pages.render_page(s, lang, env, page)  # noqa: E731
    return await respond(request, ("/", lang, page), render, HTML)


async def _page(request: web.Request) -> int:
    """`?page=N` of `/`: 1 by default; 404 past the snapshot's last page (before any render,
    so a page number is a key of the publisher's memory only when it exists)."""
    wanted = request.query.get("page", "1")
    if not _WHOLE.fullmatch(wanted):
        raise web.HTTPBadRequest(text="page: a page number\n")
    page = int(wanted)
    if page != 1 and not 1 <= page <= pages.page_count(await request.app[PUBLISHER].current()):
        raise web.HTTPNotFound(text="not found\n")
    return page


async def _shown(request: web.Request) -> str:
    """The route's monitor id, if the page shows that monitor; else 404 before any render
    (an unknown id is never a key of the publisher's memory)."""
    mid = request.match_info["id"]
    if not await request.app[PUBLISHER].knows(mid):
        raise web.HTTPNotFound(text="not found\n")
    return mid


async def monitor_page(request: web.Request) -> web.Response:
    lang, env, mid = _lang(request), request.app[TEMPLATES], await _shown(request)
    render: Render = lambda s: pages.render_monitor(s, mid, lang, env)  # noqa: E731
    return await respond(request, ("monitor", mid, lang), render, HTML)


def json_route(
    fn: Callable[[Snapshot], object],
) -> Callable[[web.Request], Awaitable[web.Response]]:
    async def handler(request: web.Request) -> web.Response:
        return await respond(request, request.path, lambda s: _json(fn(s)), JSON, cors=True)

    return handler


async def monitor_days(request: web.Request) -> web.Response:
    """`days` is clamped to 1..history_days before it names a body: at most history_days
    bodies per monitor, whatever is asked."""
    wanted = request.query.get("days", "90")
    if not _WHOLE.fullmatch(wanted):
        raise web.HTTPBadRequest(text="days: a whole number of days\n")
    mid = await _shown(request)
    days = api.days_count(await request.app[PUBLISHER].current(), int(wanted))

    def render(s: Snapshot) -> bytes | None:
        found = api.days_v1(s, mid, days)
        return None if found is None else _json(found)

    return await respond(request, ("days", mid, days), render, JSON, cors=True)


def feed_route(
    fn: Callable[[Snapshot], str], content_type: str
) -> Callable[[web.Request], Awaitable[web.Response]]:
    async def handler(request: web.Request) -> web.Response:
        return await respond(request, request.path, fn, content_type)

    return handler


async def monitor_feed(request: web.Request) -> web.Response:
    """One monitor's Atom feed (/monitors/{id}/feed.atom); 404 for one the page does not show."""
    mid = await _shown(request)
    render: Render = lambda s: feeds.monitor_atom(s, mid)  # noqa: E731
    return await respond(request, ("feed", mid), render, FEEDS["/feed.atom"][1])


async def badge(request: web.Request) -> web.Response:
    kind = request.match_info["kind"]
    window = request.query.get("window", "30d") if kind == "uptime" else ""  # others: none
    if kind == "uptime" and window not in WINDOWS:
        raise web.HTTPBadRequest(text="window: one of 24h, 7d, 30d, 90d\n")
    mid = await _shown(request)

    def render(s: Snapshot) -> str | None:
        m = s.monitor(mid)
        if m is None:
            return None
        if kind == "status":
            return badges.status_badge(m)
        if kind == "uptime":
            return badges.uptime_badge(m, window)
        return badges.response_badge(m)

    return await respond(request, ("badge", mid, kind, window), render, SVG, cors=True)


async def report(request: web.Request) -> web.Response:
    """Months from the public monitors' first result to the current one; any other 404
    before anything is rendered (the first result is read once per snapshot)."""
    publisher = request.app[PUBLISHER]
    config = publisher.config  # the current one: a reload replaces it
    month, fmt = request.match_info["month"], request.match_info["fmt"]
    if not config.settings.public_reports or not _MONTH.fullmatch(month):
        raise web.HTTPNotFound(text="not found\n")
    public = tuple(m.id for m in config.monitors if m.public)
    if not public:
        raise web.HTTPNotFound(text="not found\n")
    now = (await publisher.current()).generated_at
    first_ms = await publisher.read_once(
        ("first result", public), lambda conn: monthly.first_result_ms(conn, public)
    )
    if not monthly.reportable(month, first_ms, now, config.settings.timezone):
        raise web.HTTPNotFound(text="not found\n")
    types = {"json": JSON, "csv": "text/csv; charset=utf-8", "html": HTML}

    def render(s: Snapshot) -> str:
        text = monthly.report(config, month, fmt, monitors=public, now=s.generated_at)
        return text.translate(_JSON_ESCAPES) if fmt == "json" else text

    return await respond(request, ("report", month, fmt), render, types[fmt])


async def push(request: web.Request) -> web.Response:
    """A heartbeat: `/push/{token}`, `/start`, `/fail`, `/{exit_code}`; GET or POST."""
    if request.can_read_body:  # a body carries nothing we use: read a little, drop it
        await request.content.read(PUSH_BODY_LIMIT)
    receive = request.app.get(PUSH)
    if receive is None:
        raise web.HTTPNotFound(text="not found\n")
    answer = receive(
        request.match_info["token"], request.match_info.get("action", ""), request.query
    )
    status, text = answer if isinstance(answer, tuple) else await answer
    return web.Response(status=status, text=text, headers={"Cache-Control": "no-store"})


async def agent_monitors(request: web.Request) -> web.Response:
    """An agent's assignment (bearer token); 404 on a hub that takes no agents."""
    api = request.app.get(AGENTS)
    if api is None:
        raise web.HTTPNotFound(text="not found\n")
    return await api.monitors(request)


async def agent_results(request: web.Request) -> web.Response:
    """An agent's batch of results (bearer token); 404 on a hub that takes no agents."""
    api = request.app.get(AGENTS)
    if api is None:
        raise web.HTTPNotFound(text="not found\n")
    return await api.results(request)


async def metrics(request: web.Request) -> web.Response:
    """The operators' view, on the metrics listener only: rendered off the loop from
    readings about a second old (statuspage.scrapes); OpenMetrics when the scraper asks
    for it (Prometheus does), else the text format; gzipped when asked; with
    `settings.metrics.token`, bearer only."""
    token = request.app[PUBLISHER].config.settings.metrics.token.get_secret_value()
    if token and not _bearer(request.headers.get("Authorization", ""), token):
        raise web.HTTPUnauthorized(
            text="a bearer token is required\n",
            headers={"WWW-Authenticate": 'Bearer realm="prober metrics"'},
        )
    openmetrics = "application/openmetrics-text" in request.headers.get("Accept", "")
    exposition = await request.app[SCRAPES].get(openmetrics)
    headers = {
        "Content-Type": OPENMETRICS if openmetrics else prometheus_client.CONTENT_TYPE_LATEST,
        "Cache-Control": "no-store",
        "Vary": "Accept-Encoding",
    }
    body = exposition.body
    if "gzip" in request.headers.get("Accept-Encoding", ""):
        body = exposition.gzipped
        headers["Content-Encoding"] = "gzip"
    return web.Response(body=body, headers=headers)


def _bearer(authorization: str, token: str) -> bool:
    scheme, _, given = authorization.strip().partition(" ")
    wanted = token.encode()
    return scheme.lower() == "bearer" and hmac.compare_digest(
        given.strip().encode(errors="surrogateescape"), wanted
    )


async def healthz(request: web.Request) -> web.Response:
    """The prober's own health as JSON: 200 when nothing is wrong, else 503. From memory
    only (no database query): load balancers and dead-man's switches poll it."""
    report = request.app[HEALTH].report()
    if not isinstance(report, dict):
        report = await report
    return web.Response(
        status=503 if report["problems"] else 200,
        body=_json(report),
        headers={"Content-Type": JSON, "Cache-Control": "no-store"},
    )


def create_app(
    config: Config,
    health: HealthReport,
    *,
    publisher: Publisher | None = None,
    push_receiver: PushReceiver | None = None,
    agents: AgentApi | None = None,
) -> web.Application:
    """The public listener: every route but /metrics (see create_metrics_app)."""
    app = web.Application(middlewares=[security_headers], client_max_size=64 * 1024)
    if push_receiver is not None:
        app[PUSH] = push_receiver
    if agents is not None:
        app[AGENTS] = agents
    app[CONFIG] = config
    app[HEALTH] = health
    app[PUBLISHER] = publisher or Publisher(config)
    app[TEMPLATES] = pages.make_environment()
    app.cleanup_ctx.append(_refresh)
    from statuspage.routes import add_routes

    add_routes(app)
    return app


def create_metrics_app(
    publisher: Publisher,
    registry: prometheus_client.CollectorRegistry | None = None,
    prepare: Callable[[], Awaitable[None]] | None = None,
) -> web.Application:
    """The metrics listener (`settings.metrics.listen`): `GET /metrics` and nothing else.
    Every family of `registry` (the web process adds the probing process's, asked for by
    `prepare`), then every monitor's (statuspage.metrics, from a Keeper's readings of the
    database), then the page's banner, from `publisher`, which the public app runs and
    closes."""
    others = registry if registry is not None else prometheus_client.CollectorRegistry()
    keeper = Keeper(lambda: publisher.config)

    def render(openmetrics: bool) -> bytes:
        ours = exposition(
            keeper.frame,
            publisher.latest,
            timeline.to_ms(dt.datetime.now(dt.UTC)),
            openmetrics=openmetrics,
        ).encode()
        if not openmetrics:
            return prometheus_client.generate_latest(others) + ours
        theirs: bytes = _openmetrics(others)
        return theirs.removesuffix(b"# EOF\n") + ours + b"# EOF\n"

    async def fresh() -> None:
        waits: list[Awaitable[object]] = [publisher.current(), keeper.current()]
        if prepare is not None:
            waits.append(prepare())
        await asyncio.gather(*waits)  # after a quiet spell: catch up first

    async def reading(app: web.Application) -> AsyncIterator[None]:
        task = asyncio.create_task(keeper.run())
        yield
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await keeper.close()

    app = web.Application(client_max_size=1024)
    app[PUBLISHER] = publisher
    app[KEEPER] = keeper
    app[SCRAPES] = Scrapes(render, fresh, version=keeper.version)
    app.cleanup_ctx.append(reading)
    from statuspage.routes import add_metrics_routes

    add_metrics_routes(app)
    return app


async def _refresh(app: web.Application) -> AsyncIterator[None]:
    publisher = app[PUBLISHER]
    lang, env = app[CONFIG].settings.language, app[TEMPLATES]
    publisher.warm(("/", lang), lambda s: pages.render_index(s, lang, env), HTML)
    # A small page is ready before the server listens, so the first visitor is served
    # from memory too. A big one (10,000 monitors: ~25 s) is built in the background, so
    # the prober starts probing at once; the first visitors wait for that build.
    first = asyncio.create_task(publisher.start())
    if len(app[CONFIG].monitors) <= PREPARE_BEFORE_LISTEN:
        await first
    task = asyncio.create_task(publisher.run())
    yield
    for running in (first, task):
        running.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await running
    await publisher.close()


JSON_ROUTES: dict[str, Callable[[Snapshot], object]] = {
    "/api/v1/status": api.status_v1,
    "/api/v1/incidents": api.incidents_v1,
    "/api/v2/summary.json": atlassian.summary_v2,
    "/api/v2/status.json": atlassian.status_v2,
    "/api/v2/components.json": atlassian.components_v2,
    "/api/v2/incidents.json": atlassian.incidents_v2,
    "/api/v2/incidents/unresolved.json": atlassian.unresolved_v2,
    "/api/v2/scheduled-maintenances.json": atlassian.maintenances_v2,
    "/api/v2/scheduled-maintenances/upcoming.json": atlassian.maintenances_upcoming_v2,
    "/api/v2/scheduled-maintenances/active.json": atlassian.maintenances_active_v2,
}
FEEDS = {
    "/feed.atom": (feeds.atom, "application/atom+xml; charset=utf-8"),
    "/feed.rss": (feeds.rss, "application/rss+xml; charset=utf-8"),
}
