"""How heavy the status page is: bytes of `/` and `/monitors/{id}`, raw and gzipped.

    .venv/bin/python bench/page_weight.py [--monitors 100 5000] [--days 90] [--write]

For each size, a database of `monitors` x `days` written through the real store's tables
(`bench/page.py --refresh`'s `synthesize`: coverage with a gap, 0 to 6 incidents per
monitor, transitions, tracker state, a day of hourly rollups and 3 hours of raw results;
groups of 10), then the real app (`statuspage.create_app` with a `Publisher`) on a free
loopback port: the snapshot is built first (not timed here), then `GET /`, `GET
/monitors/{first}` and, when there is more than one page, `GET /?page=2`, each once with
`Accept-Encoding: identity` and once with gzip. Prints raw and gzipped bytes and the
renderer's own CPU milliseconds for that page (best of 5, outside the app's cache).
`--write` replaces the block between the page-weight markers in docs/BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import gzip
import pathlib
import sys
import tempfile
import time
from typing import Any

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

DOCS = ROOT / "docs" / "BENCHMARKS.md"
START_MARK, END_MARK = "<!-- page-weight:start -->", "<!-- page-weight:end -->"
SECTION = "## Status page: weight of `/`"
METHOD = """\
`.venv/bin/python bench/page_weight.py --write` (rewrites the block below): for 100 and
5,000 HTTP monitors in groups of 10, 90 days written through the store's tables (as
`bench/page.py --refresh` does: one coverage gap and 0 to 6 incidents per monitor), the
real app on loopback; the snapshot is built before timing. *Render* is the renderer's
own CPU time for that page (`statuspage.pages`, best of 5), *raw* its bytes with
`Accept-Encoding: identity`, *gzip* the bytes the app sends to a client accepting gzip.
Targets for `/` at 100 monitors: <= 300 KB raw, <= 40 KB gzipped. First paint under a
throttled phone profile is measured by
`tests/statuspage/test_browser.py::test_first_paint_throttled` (printed, not asserted
tightly).

Before issue 14 (d5675f4, one `<li>` per day, no pages), on the same data: `/` was
983.7 KB raw / 20.6 KB gzipped at 100 monitors (render 90 ms CPU) and 48.9 MB / 920 KB at
5,000 (render 4.2 s CPU); first contentful paint with Fast 3G and CPU x4 took 9 to 13 s
(2.1 s after). A page of monitors whose every day differs (nothing to merge) is cut by
weight: at most about 280 KB a page (`statuspage.pages.PAGE_BYTES`)."""
TARGET_RAW, TARGET_GZIP = 300_000, 40_000


def log(message: str) -> None:
    print(f"[page-weight {time.strftime('%H:%M:%S')}] {message}", flush=True)


async def measure(monitors: int, days: int) -> dict[str, Any]:
    import aiohttp
    import page as page_bench  # bench/page.py
    from aiohttp import web

    from prober.config import load_config
    from statuspage.app import create_app
    from statuspage.health import Health
    from statuspage.publisher import Publisher

    with tempfile.TemporaryDirectory(prefix="page-weight-") as tmp:
        config_path = pathlib.Path(tmp) / "monitors.toml"
        page_bench.refresh_config(config_path, monitors, days)
        now_ms = int(dt.datetime.now(dt.UTC).timestamp() * 1000)
        t0 = time.perf_counter()
        page_bench.synthesize(config_path, monitors, days, now_ms)
        log(f"{monitors} monitors x {days} days written in {time.perf_counter() - t0:.1f} s")
        config = load_config(config_path)
        publisher = Publisher(config, min_age=3600, max_age=3600)
        t0 = time.perf_counter()
        snapshot = await publisher.current()
        build_s = time.perf_counter() - t0
        runner = web.AppRunner(
            create_app(config, Health(lambda: True, lambda: True), publisher=publisher)
        )
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = runner.addresses[0][1]
        first = snapshot.monitors[0].id
        result: dict[str, Any] = {"monitors": monitors, "days": days, "build_s": build_s}
        try:
            async with aiohttp.ClientSession(auto_decompress=False) as http:

                async def get(path: str, encoding: str) -> tuple[int, bytes, float]:
                    started = time.perf_counter()
                    async with http.get(
                        f"http://127.0.0.1:{port}{path}", headers={"Accept-Encoding": encoding}
                    ) as answer:
                        body = await answer.read()
                        return answer.status, body, (time.perf_counter() - started) * 1000

                for name, path in (
                    ("/", "/"),
                    ("/?page=2", "/?page=2"),
                    ("monitor", f"/monitors/{first}"),
                ):
                    status, raw, ms = await get(path, "identity")
                    if status != 200:
                        continue
                    ms = render_ms(snapshot, path)
                    _, zipped, _ = await get(path, "gzip")
                    if zipped[:2] != b"\x1f\x8b":  # not compressed by the app: do it here
                        zipped = gzip.compress(raw, 6)
                    result[name] = {"raw": len(raw), "gzip": len(zipped), "render_ms": ms}
                    log(
                        f"{monitors:>5} monitors {name:<9} raw {len(raw):>10,} B  "
                        f"gzip {len(zipped):>8,} B  render {ms:8.1f} ms"
                    )
        finally:
            await runner.cleanup()
    return result


def render_ms(snapshot: Any, path: str) -> float:
    """The renderer's own CPU time for the page at `path` (best of 5), outside the app's
    cache."""
    from statuspage import pages

    env = pages.make_environment()
    lang = snapshot.language
    best = float("inf")
    for _ in range(5):
        started = time.process_time()  # CPU time: steadier than the wall on a shared machine
        if path.startswith("/monitors/"):
            pages.render_monitor(snapshot, path.rsplit("/", 1)[1], lang, env)
        elif "page=" in path:
            pages.render_page(snapshot, lang, env, int(path.rsplit("=", 1)[1]))
        else:
            pages.render_index(snapshot, lang, env)
        best = min(best, (time.process_time() - started) * 1000)
    return best


def table(results: list[dict[str, Any]]) -> str:
    def kb(n: int) -> str:
        return f"{n / 1000:,.1f} KB"

    rows = [
        f"Measured {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC.",
        "",
        "| monitors | page | raw | gzip | render (CPU) | target |",
        "|---:|---|---:|---:|---:|---|",
    ]
    for r in results:
        for name in ("/", "/?page=2", "monitor"):
            if name not in r:
                continue
            w = r[name]
            target = ""
            if name == "/" and r["monitors"] <= 100:
                ok = w["raw"] <= TARGET_RAW and w["gzip"] <= TARGET_GZIP
                target = ("✅" if ok else "❌") + " <= 300 KB raw, <= 40 KB gzip"
            shown = "/monitors/{id}" if name == "monitor" else name
            rows.append(
                f"| {r['monitors']:,} | `{shown}` | {kb(w['raw'])} | {kb(w['gzip'])} | "
                f"{w['render_ms']:.0f} ms | {target} |"
            )
    return "\n".join(rows)


def publish(text_table: str) -> None:
    text = DOCS.read_text()
    block = (
        f"{START_MARK}\n<!-- generated by bench/page_weight.py; edits between these markers"
        f" are overwritten -->\n{text_table}\n{END_MARK}"
    )
    if START_MARK in text:
        head, rest = text.split(START_MARK, 1)
        text = head + block + rest.split(END_MARK, 1)[1]
    else:
        text = text.rstrip() + f"\n\n{SECTION}\n\n{METHOD}\n\n{block}\n"
    DOCS.write_text(text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--monitors", type=int, nargs="+", default=[100, 5000])
    parser.add_argument("--days", type=int, default=90)
    parser.add_argument("--write", action="store_true", help="update docs/BENCHMARKS.md")
    args = parser.parse_args()
    results = [asyncio.run(measure(n, args.days)) for n in args.monitors]
    text_table = table(results)
    print(text_table)
    if args.write:
        publish(text_table)
        log(f"updated {DOCS.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
