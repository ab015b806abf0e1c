"""The status page's aiohttp app, built by a factory; read-only over the store's queries."""

from __future__ import annotations

import asyncio
import datetime as dt
import importlib.resources
import pathlib
import zoneinfo
from collections.abc import Awaitable, Callable

import jinja2
import prometheus_client
import sqlalchemy
from aiohttp import web

from prober.config import Config
from prober.store import queries
from statuspage.health import Health

CONFIG = web.AppKey("config", Config)
ENGINE = web.AppKey("engine", sqlalchemy.Engine)
HEALTH = web.AppKey("health", Health)
TEMPLATES = web.AppKey("templates", jinja2.Environment)
METRICS = web.AppKey("metrics", prometheus_client.CollectorRegistry)

SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; frame-ancestors 'none'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}
# static/ in the source tree; statuspage/static inside the wheel (see pyproject.toml)
STATIC_DIR = pathlib.Path(str(importlib.resources.files("statuspage.static")))


@web.middleware
async def security_headers(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    try:
        response = await handler(request)
    except web.HTTPException as exc:
        response = exc
    response.headers.update(SECURITY_HEADERS)
    if isinstance(response, web.HTTPException) and response.status >= 400:
        raise response
    return response


async def healthz(request: web.Request) -> web.Response:
    problems = request.app[HEALTH].problems()
    if problems:
        return web.Response(status=503, text="unhealthy: " + "; ".join(problems) + "\n")
    return web.Response(text="ok\n")


async def metrics(request: web.Request) -> web.Response:
    body = prometheus_client.generate_latest(request.app[METRICS])
    return web.Response(body=body, headers={"Content-Type": prometheus_client.CONTENT_TYPE_LATEST})


async def index(request: web.Request) -> web.Response:
    config = request.app[CONFIG]
    latest = await asyncio.to_thread(queries.latest_results, request.app[ENGINE])
    tz = zoneinfo.ZoneInfo(config.settings.timezone)
    rows = []
    for monitor in config.monitors:
        if not monitor.public:
            continue
        result = latest.get(monitor.id)
        rows.append(
            {
                "name": monitor.display_name,
                "group": monitor.group,
                "state": result.outcome.value if result else "unknown",
                "checked": result.at.astimezone(tz).strftime("%Y-%m-%d %H:%M:%S")
                if result
                else "-",
            }
        )
    html = (
        request.app[TEMPLATES]
        .get_template("index.html")
        .render(
            title=config.settings.title,
            monitors=rows,
            now=dt.datetime.now(tz).strftime("%Y-%m-%d %H:%M:%S %Z"),
        )
    )
    return web.Response(text=html, content_type="text/html")


def create_app(
    config: Config,
    engine: sqlalchemy.Engine,
    health: Health,
    metrics: prometheus_client.CollectorRegistry | None = None,
) -> web.Application:
    app = web.Application(middlewares=[security_headers])
    app[METRICS] = metrics or prometheus_client.CollectorRegistry()
    app[CONFIG] = config
    app[ENGINE] = engine
    app[HEALTH] = health
    app[TEMPLATES] = jinja2.Environment(
        loader=jinja2.PackageLoader("statuspage", "templates"),
        autoescape=jinja2.select_autoescape(default=True),
    )
    from statuspage.routes import add_routes

    add_routes(app)
    return app
