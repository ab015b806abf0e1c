"""The URL map, in one place."""

from __future__ import annotations

from aiohttp import web

from statuspage import app as views


def add_routes(app: web.Application) -> None:
    app.router.add_get("/", views.index)
    app.router.add_get("/healthz", views.healthz)
    app.router.add_get("/metrics", views.metrics)
    app.router.add_static("/static/", views.STATIC_DIR, name="static")
