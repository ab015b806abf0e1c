"""`prober export-static DIR` end to end: a real config and database, through the CLI.

`write_world` is also the browser test's data: two groups, an incident, maintenance around
now, markup in names, secrets in the config and in stored errors, and a private monitor.
"""

from __future__ import annotations

import datetime as dt
import json
import pathlib
import re
import xml.etree.ElementTree as ET
from html.parser import HTMLParser
from urllib.parse import urldefrag, urljoin, urlsplit

import aiohttp
import feedparser
import markupsafe
import pytest
from aiohttp import web

from prober.cli import main
from prober.config import load_config
from prober.config.load import Config
from prober.results import Certificate, CheckResult, Outcome
from prober.store.db import open_engine
from prober.store.ledger import TrackSpec
from prober.store.writer import Observation, ResultWriter

SECRETS = (
    "s3cr3t-url-pass",
    "tok-9f8e7d6c5b4a",
    "hdr-0a1b2c3d4e5f",
    "internal-db.corp.example",
    "hook-7e6d5c4b3a29",
    "10.1.2.3",
)
PRIVATE = ("secret-db", "Internal DB")
HOSTILE = "API <script>alert(1)</script>"
PUBLIC = {  # id: name, in page order
    "api": HOSTILE,
    "db": "Database & cache",
    "web": "Web 홈페이지",
    "cdn": "CDN",
}
GROUPS = ('Backend "core"', "Frontend")

CONFIG = """
[settings]
title = "Acme <Status>"
public_url = "https://status.example.com"
timezone = "Asia/Seoul"

[[monitors]]
id = "api"
name = "API <script>alert(1)</script>"
group = "Backend \\"core\\""
type = "http"
url = "https://user:s3cr3t-url-pass@api.internal-db.corp.example/health?token=tok-9f8e7d6c5b4a"
headers = {{ Authorization = "Bearer hdr-0a1b2c3d4e5f" }}
interval = "1m"

[[monitors]]
id = "db"
name = "Database & cache"
group = "Backend \\"core\\""
type = "tcp"
host = "db.example.net"
port = 5432
interval = "1m"

[[monitors]]
id = "web"
name = "Web 홈페이지"
group = "Frontend"
type = "http"
url = "http://127.0.0.1:9/"
interval = "1m"

[[monitors]]
id = "cdn"
name = "CDN"
group = "Frontend"
type = "http"
url = "http://127.0.0.1:9/cdn"
interval = "1m"

[[monitors]]
id = "secret-db"
name = "Internal DB"
type = "tcp"
host = "internal-db.corp.example"
port = 5432
public = false
notify = ["hook"]

[[notifiers]]
id = "hook"
type = "webhook"
url = "https://hooks.example.com/hook-7e6d5c4b3a29"

[[maintenance]]
title = "Web <b>upgrade</b>"
monitors = ["web"]
start = "{start}"
end = "{end}"
"""


def write_world(directory: pathlib.Path, now: dt.datetime) -> Config:
    """The config file and a database of the last 30 minutes' results; the loaded config."""
    path = directory / "monitors.toml"
    window = (now - dt.timedelta(hours=1), now + dt.timedelta(hours=1))
    path.write_text(
        CONFIG.format(start=window[0].isoformat(timespec="seconds"), end=window[1].isoformat())
    )
    config = load_config(path)
    open_engine(config.database_path).dispose()
    writer = ResultWriter(
        config.database_path, "default", [TrackSpec.of(m) for m in config.monitors]
    )
    writer.start()
    leak = (
        "connect to api.internal-db.corp.example (10.1.2.3:443) failed; "
        "https://user:s3cr3t-url-pass@api.internal-db.corp.example/?token=tok-9f8e7d6c5b4a"
    )
    cert = Certificate(now + dt.timedelta(days=30), "api", "ca")
    for minutes in range(30, 0, -1):
        at = now - dt.timedelta(minutes=minutes)
        down = 10 <= minutes <= 20  # an incident, resolved ten minutes ago
        api = (
            CheckResult(Outcome.DOWN, 5.0, error=leak)
            if down
            else CheckResult(Outcome.UP, 40.0 + minutes, status_code=200, certificate=cert)
        )
        writer.submit(Observation("api", at, api))
        writer.submit(Observation("db", at, CheckResult(Outcome.UP, 3.0 + minutes % 4)))
        web = CheckResult(Outcome.UP, 20.0 + minutes % 7, status_code=200)
        writer.submit(Observation("web", at, web))
        cdn = CheckResult(Outcome.DEGRADED if minutes < 5 else Outcome.UP, 900.0, status_code=200)
        writer.submit(Observation("cdn", at, cdn))
        writer.submit(Observation("secret-db", at, CheckResult(Outcome.DOWN, 1.0, error=leak)))
    assert writer.flush(10)
    writer.close()
    return config


def test_export_static_writes_every_public_file_and_no_secret(tmp_path: pathlib.Path) -> None:
    config = write_world(tmp_path, dt.datetime.now(dt.UTC))
    out = tmp_path / "site"
    assert main(["export-static", "-c", str(config.path), str(out)]) == 0

    for name in (
        "index.html",
        "ko/index.html",
        "ko/monitors/api/index.html",
        "api/v1/status.json",
        "api/v1/incidents.json",
        "api/v2/summary.json",
        "api/v2/status.json",
        "api/v2/components.json",
        "api/v2/incidents.json",
        "api/v2/incidents/unresolved.json",
        "api/v2/scheduled-maintenances/upcoming.json",
        "api/v2/scheduled-maintenances/active.json",
        "feed.atom",
        "feed.rss",
        "static/style.css",
    ):
        assert (out / name).is_file(), name
    for mid in PUBLIC:
        for name in (
            f"monitors/{mid}/index.html",
            f"api/v1/monitors/{mid}/days.json",
            f"badge/{mid}/status.svg",
            f"badge/{mid}/uptime.svg",
            f"badge/{mid}/response.svg",
        ):
            assert (out / name).is_file(), name
    assert sorted(p.name for p in (out / "monitors").iterdir()) == sorted(PUBLIC)
    assert sorted(p.name for p in (out / "badge").iterdir()) == sorted(PUBLIC)
    assert sorted(p.name for p in (out / "api/v1/monitors").iterdir()) == sorted(PUBLIC)
    assert not list(out.rglob("*secret-db*"))

    status = json.loads((out / "api/v1/status.json").read_text())
    assert [m["id"] for m in status["monitors"]] == list(PUBLIC)
    assert [m["name"] for m in status["monitors"]] == list(PUBLIC.values())
    summary = json.loads((out / "api/v2/summary.json").read_text())
    assert summary["page"]["name"] == "Acme <Status>"
    names = {c["name"] for c in summary["components"]}
    assert set(PUBLIC.values()) <= names
    assert not names & set(PRIVATE)
    days = json.loads((out / "api/v1/monitors/api/days.json").read_text())
    assert days  # parses, and holds something

    feed = feedparser.parse((out / "feed.atom").read_bytes())
    assert not feed.bozo, feed.get("bozo_exception")
    assert feed.feed.title
    assert feed.entries  # the resolved incident at least
    rss = feedparser.parse((out / "feed.rss").read_bytes())
    assert not rss.bozo, rss.get("bozo_exception")

    for badge in (out / "badge").rglob("*.svg"):
        root = ET.fromstring(badge.read_bytes())
        assert root.tag == "{http://www.w3.org/2000/svg}svg", badge

    index = (out / "index.html").read_text()
    assert '<html lang="en">' in index
    for name in (*PUBLIC.values(), *GROUPS, "Acme <Status>"):
        assert str(markupsafe.escape(name)) in index, name
    assert "<script" not in index
    ko = (out / "ko/index.html").read_text()
    assert '<html lang="ko">' in ko
    assert "<script" not in ko
    assert str(markupsafe.escape(HOSTILE)) in (out / "monitors/api/index.html").read_text()

    secrets = (*SECRETS, *config.secret_values())
    assert "hook-7e6d5c4b3a29" in "".join(config.secret_values())  # the check sees them
    for path in out.rglob("*"):
        if path.is_file():
            body = path.read_bytes().decode("utf-8", "replace")
            for secret in (*secrets, *PRIVATE):
                assert secret not in body, (path.relative_to(out), secret)


def test_export_static_twice_into_the_same_directory(tmp_path: pathlib.Path) -> None:
    config = write_world(tmp_path, dt.datetime.now(dt.UTC))
    out = tmp_path / "site"
    assert main(["export-static", "-c", str(config.path), str(out)]) == 0
    first = sorted(p.relative_to(out) for p in out.rglob("*") if p.is_file())
    assert main(["export-static", "-c", str(config.path), str(out)]) == 0
    assert sorted(p.relative_to(out) for p in out.rglob("*") if p.is_file()) == first


class _Links(HTMLParser):
    """Every link a page holds (a, link, img, script, form), every id, and html[lang]."""

    def __init__(self) -> None:
        super().__init__()
        self.links: list[str] = []
        self.ids: set[str] = set()
        self.lang = ""

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        if tag == "html":
            self.lang = found.get("lang") or ""
        if found.get("id"):
            self.ids.add(str(found["id"]))
        for name in ("href", "src", "action"):
            if found.get(name):
                self.links.append(str(found[name]))


@pytest.mark.asyncio
async def test_export_served_under_a_sub_path_every_link_answers(tmp_path: pathlib.Path) -> None:
    """The export behind a real static server (aiohttp's static files under /sub/): from
    index.html, every link of every page reached answers 200 and stays under /sub/; each
    fragment names an element of its page; the Korean pages are Korean; the JSON parses."""
    config = write_world(tmp_path, dt.datetime.now(dt.UTC))
    out = tmp_path / "site"
    assert main(["export-static", "-c", str(config.path), str(out)]) == 0
    app = web.Application()
    app.router.add_static("/sub/", out)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    base = f"http://127.0.0.1:{runner.addresses[0][1]}"
    seen: dict[str, str] = {}  # url -> content type
    pages: dict[str, _Links] = {}
    broken: list[str] = []
    try:
        async with aiohttp.ClientSession() as http:
            queue = [f"{base}/sub/index.html"]
            while queue:
                url = queue.pop()
                if url in seen:
                    continue
                async with http.get(url, allow_redirects=False) as answer:
                    body = await answer.read()
                    seen[url] = answer.content_type
                    if answer.status != 200:
                        broken.append(f"{answer.status} {url}")
                        continue
                if url.endswith(".json"):
                    json.loads(body)
                if answer.content_type != "text/html":
                    continue
                parsed = _Links()
                parsed.feed(body.decode())
                pages[url] = parsed
                for link in parsed.links:
                    if link == "data:,":  # the page's (empty) icon, so none is fetched
                        continue
                    target = urljoin(url, link)
                    assert urlsplit(target).netloc == urlsplit(base).netloc, (url, link)
                    assert urlsplit(target).path.startswith("/sub/"), (url, link)
                    queue.append(urldefrag(target)[0])
    finally:
        await runner.cleanup()
    assert not broken
    for url, parsed in pages.items():  # in-page links name an element of the page linked
        for link in parsed.links:
            target, fragment = urldefrag(urljoin(url, link))
            if fragment:
                assert fragment in pages[target].ids, (url, link)
    reached = {urlsplit(u).path.removeprefix("/sub/") for u in seen}
    for mid in PUBLIC:
        assert {f"monitors/{mid}/index.html", f"ko/monitors/{mid}/index.html"} <= reached
    assert {"ko/index.html", "api/v1/status.json", "feed.atom", "static/style.css"} <= reached
    for url, parsed in pages.items():
        korean = urlsplit(url).path.startswith("/sub/ko/")
        assert parsed.lang == ("ko" if korean else "en"), url
    hangul = re.compile("[\uac00-\ud7a3]")
    ko = (out / "ko/index.html").read_text()
    banner = re.search(r'<h2 id="banner-title">([^<]*)</h2>', ko)
    assert banner and hangul.search(banner.group(1)), banner
