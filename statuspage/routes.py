"""The URL map, in one place."""

from __future__ import annotations

from aiohttp import web

from statuspage import app as views
from statuspage import subscribe


def add_routes(app: web.Application) -> None:
    app.router.add_get("/", views.index)
    app.router.add_get("/monitors/{id}", views.monitor_page)
    app.router.add_get("/monitors/{id}/feed.atom", views.monitor_feed)
    for path, fn in views.JSON_ROUTES.items():
        app.router.add_get(path, views.json_route(fn))
    app.router.add_get("/api/v1/monitors/{id}/days", views.monitor_days)
    for path, (render, content_type) in views.FEEDS.items():
        app.router.add_get(path, views.feed_route(render, content_type))
    app.router.add_get(r"/badge/{id}/{kind:status|uptime|response}.svg", views.badge)
    app.router.add_get(r"/reports/{month}.{fmt:json|csv|html}", views.report)
    for method in ("GET", "POST"):
        app.router.add_route(method, "/push/{token}", views.push)
        app.router.add_route(method, "/push/{token}/{action}", views.push)
    app.router.add_get("/api/agent/v1/monitors", views.agent_monitors)
    app.router.add_post("/api/agent/v1/results", views.agent_results)
    app.router.add_get("/healthz", views.healthz)
    subscribe.add_routes(app)  # POST /subscribe, /subscribe/confirm/{token}, /unsubscribe/{token}
    app.router.add_static("/static/", views.STATIC_DIR, name="static")


def add_metrics_routes(app: web.Application) -> None:
    """The metrics listener's one route."""
    app.router.add_get("/metrics", views.metrics)
