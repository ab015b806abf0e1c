"""`prober export-static DIR`: the public routes as files any static host can serve.

The same snapshot and renderers as the live server, so the files equal what `prober run`
would answer. Paths follow the routes; where a route has no file extension the file gets
one, so a static host sends the right content type:

    index.html                        /            (settings.language)
    ko/index.html, en/index.html      /?lang=ko, /?lang=en
    monitors/ID/index.html            /monitors/ID
    api/v1/status.json                /api/v1/status
    api/v1/incidents.json             /api/v1/incidents
    api/v1/monitors/ID/days.json      /api/v1/monitors/ID/days
    api/v2/...json                    /api/v2/... (the same names)
    feed.atom, feed.rss
    badge/ID/{status,uptime,response}.svg   (uptime: the 30-day window)
    static/...                        the stylesheet and icons
"""

from __future__ import annotations

import datetime as dt
import json
import pathlib
import shutil

from prober.config import Config
from prober.store.db import connect_raw, open_engine
from statuspage import api, badges, pages
from statuspage.app import FEEDS, JSON_ROUTES, STATIC_DIR
from statuspage.build import build_snapshot
from statuspage.i18n import LANGUAGES


def export(config: Config, out: pathlib.Path, now: dt.datetime | None = None) -> list[pathlib.Path]:
    """Write every file; the paths written, in order."""
    open_engine(config.database_path).dispose()  # a database that does not exist yet: empty
    conn = connect_raw(config.database_path)
    try:
        snapshot = build_snapshot(conn, config, now or dt.datetime.now(dt.UTC))
    finally:
        conn.close()
    env = pages.make_environment()
    written: list[pathlib.Path] = []

    def put(relative: str, body: str | bytes) -> None:
        path = out / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(body.encode() if isinstance(body, str) else body)
        written.append(path)

    put("index.html", pages.render_index(snapshot, snapshot.language, env))
    for lang in LANGUAGES:
        put(f"{lang}/index.html", pages.render_index(snapshot, lang, env))
    for m in snapshot.monitors:
        page = pages.render_monitor(snapshot, m.id, snapshot.language, env)
        if page is not None:
            put(f"monitors/{m.id}/index.html", page)
        put(f"api/v1/monitors/{m.id}/days.json", _dump(api.days_v1(snapshot, m.id, 366)))
        put(f"badge/{m.id}/status.svg", badges.status_badge(m))
        put(f"badge/{m.id}/uptime.svg", badges.uptime_badge(m, "30d") or "")
        put(f"badge/{m.id}/response.svg", badges.response_badge(m))
    for route, fn in JSON_ROUTES.items():
        name = route.lstrip("/")
        put(name if name.endswith(".json") else name + ".json", _dump(fn(snapshot)))
    for route, (render, _) in FEEDS.items():
        put(route.lstrip("/"), render(snapshot))
    static = out / "static"
    shutil.copytree(
        STATIC_DIR, static, dirs_exist_ok=True, ignore=shutil.ignore_patterns("*.py", "__pycache__")
    )
    written.extend(sorted(p for p in static.rglob("*") if p.is_file()))
    return written


def _dump(value: object) -> str:
    return json.dumps(value, ensure_ascii=False, indent=1, allow_nan=False)
