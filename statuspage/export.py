"""`prober export-static DIR`: the public routes as files any static host can serve.

The same snapshot and renderers as the live server, so the files equal what `prober run`
would answer, except for links: every link in a page is relative to that page's file
(`pages.Links(files=True)`), so the directory works at a host's root, under any sub-path
and from a file:// URL. Paths follow the routes; where a route has no file extension the
file gets one, so a static host sends the right content type:

    index.html, index-N.html          /, /?page=N       (settings.language)
    ko/index.html, ko/index-N.html    /?lang=ko         (each other language under LANG/)
    monitors/ID/index.html            /monitors/ID      (ko/monitors/ID/index.html)
    api/v1/status.json                /api/v1/status
    api/v1/incidents.json             /api/v1/incidents
    api/v1/monitors/ID/days.json      /api/v1/monitors/ID/days
    api/v2/...json                    /api/v2/... (the same names)
    feed.atom, feed.rss, monitors/ID/feed.atom
    badge/ID/{status,uptime,response}.svg   (uptime: the 30-day window)
    static/...                        the stylesheet and icons

The subscription form needs the live server: exported pages leave it out.
"""

from __future__ import annotations

import datetime as dt
import json
import pathlib
import shutil

from prober.config import Config
from prober.store.db import open_database
from prober.store.engine import connect
from statuspage import api, badges, feeds, pages
from statuspage.app import FEEDS, JSON_ROUTES, STATIC_DIR
from statuspage.build import build_snapshot
from statuspage.i18n import LANGUAGES
from statuspage.notices import attach


def export(config: Config, out: pathlib.Path, now: dt.datetime | None = None) -> list[pathlib.Path]:
    """Write every file; the paths written, in order."""
    open_database(config.database)  # a database that does not exist yet: empty
    conn = connect(config.database)
    try:
        snapshot = build_snapshot(conn, config, now or dt.datetime.now(dt.UTC))
    finally:
        conn.close()
    snapshot = attach(snapshot, config.notices, config)  # as the Publisher does
    links = pages.Links(snapshot.language, files=True)
    env = pages.make_environment()
    written: list[pathlib.Path] = []

    def put(relative: str, body: str | bytes) -> None:
        path = out / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(body.encode() if isinstance(body, str) else body)
        written.append(path)

    for lang in LANGUAGES:
        for number in range(1, pages.page_count(snapshot) + 1):
            index = pages.render_page(snapshot, lang, env, number, links)
            if index is not None:
                put(links.file("/", lang, number), index)
        for m in snapshot.monitors:
            page = pages.render_monitor(snapshot, m.id, lang, env, links)
            if page is not None:
                put(links.file(f"/monitors/{m.id}", lang), page)
    for m in snapshot.monitors:
        put(f"api/v1/monitors/{m.id}/days.json", _dump(api.days_v1(snapshot, m.id, 366)))
        put(f"badge/{m.id}/status.svg", badges.status_badge(m))
        put(f"badge/{m.id}/uptime.svg", badges.uptime_badge(m, "30d") or "")
        put(f"badge/{m.id}/response.svg", badges.response_badge(m))
        put(f"monitors/{m.id}/feed.atom", feeds.monitor_atom(snapshot, m.id) or "")
    for route, fn in JSON_ROUTES.items():
        put(links.file(route), _dump(fn(snapshot)))
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
