"""SVG badges: valid SVG, accessible, escaped, sized by their text."""

from __future__ import annotations

import dataclasses
import xml.etree.ElementTree as ET

import pytest

from statuspage import badges
from statuspage.snapshot import MonitorView, State
from tests.statuspage.factory import HOSTILE, monitor, sample

S = "{http://www.w3.org/2000/svg}"


def parse(svg: str) -> ET.Element:
    root = ET.fromstring(svg)
    assert root.tag == f"{S}svg"
    assert int(root.get("width", "")) > 0
    assert int(root.get("height", "")) == 20
    assert root.get("role") == "img"
    return root


def title(root: ET.Element) -> str | None:
    return root.findtext(f"{S}title")


def value_fill(root: ET.Element) -> str | None:
    rects = root.findall(f"{S}g/{S}rect")
    return rects[1].get("fill")


def every_badge(m: MonitorView) -> list[str]:
    out = [badges.status_badge(m), badges.response_badge(m)]
    out += [b for w in badges.WINDOWS if (b := badges.uptime_badge(m, w)) is not None]
    return out


@pytest.mark.parametrize("m", sample().monitors, ids=lambda m: m.id)
def test_every_badge_is_valid_svg(m: MonitorView) -> None:
    for svg in every_badge(m):
        root = parse(svg)
        assert title(root) == root.get("aria-label")
        texts = [t.text for t in root.iter(f"{S}text")]
        label, value = (title(root) or "").rsplit(": ", 1)
        assert texts == [label, label, value, value]


def test_status_badge() -> None:
    root = parse(badges.status_badge(monitor("api", name="API")))
    assert title(root) == "API: up"
    assert value_fill(root) == badges.BRIGHTGREEN
    custom = parse(badges.status_badge(monitor("api"), label="status"))
    assert title(custom) == "status: up"


@pytest.mark.parametrize(
    ("state", "color"),
    [
        (State.UP, badges.BRIGHTGREEN),
        (State.DEGRADED, badges.YELLOW),
        (State.DOWN, badges.RED),
        (State.MAINTENANCE, badges.BLUE),
        (State.UNKNOWN, badges.LIGHTGREY),
    ],
)
def test_status_colours(state: State, color: str) -> None:
    root = parse(badges.status_badge(monitor("api", name="API", state=state)))
    assert title(root) == f"API: {state.value}"
    assert value_fill(root) == color


def test_hostile_label_is_escaped() -> None:
    web = next(m for m in sample().monitors if m.id == "web")
    svg = badges.status_badge(web)
    assert "<script>" not in svg and "<b>" not in svg
    root = parse(svg)
    assert title(root) == f"{HOSTILE}: degraded"
    assert not {e.tag for e in root.iter()} & {f"{S}script", f"{S}b", "script", "b"}
    parse(badges.status_badge(web, label=HOSTILE + "]]>"))


def test_uptime_badge() -> None:
    m = monitor("api", uptime={"24h": 100.0, "7d": 99.999, "30d": 98.5, "90d": None})
    assert title(parse(badges.uptime_badge(m, "24h") or "")) == "uptime 24h: 100%"
    assert title(parse(badges.uptime_badge(m, "7d") or "")) == "uptime 7d: 99.99%"
    root = parse(badges.uptime_badge(m, "30d") or "")
    assert title(root) == "uptime 30d: 98.5%"
    assert value_fill(root) == badges.YELLOWGREEN
    root = parse(badges.uptime_badge(m, "90d") or "")
    assert title(root) == "uptime 90d: no data"
    assert value_fill(root) == badges.LIGHTGREY


@pytest.mark.parametrize("window", ["1y", "", "30D", "1d", "90d "])
def test_uptime_badge_unknown_window(window: str) -> None:
    assert badges.uptime_badge(monitor("api"), window) is None


@pytest.mark.parametrize(
    ("percent", "text"),
    [(100.0, "100%"), (99.95, "99.95%"), (99.999, "99.99%"), (99.9, "99.9%"), (0.0, "0%")],
)
def test_uptime_text_never_rounds_up(percent: float, text: str) -> None:
    assert badges.uptime_text(percent) == text


def test_response_badge() -> None:
    root = parse(badges.response_badge(monitor("api", latency_ms=123.4)))
    assert title(root) == "response time: 123 ms"
    assert value_fill(root) == badges.BRIGHTGREEN
    slow = parse(badges.response_badge(monitor("api", latency_ms=2500.0)))
    assert value_fill(slow) == badges.RED
    none = parse(badges.response_badge(monitor("api", latency_ms=None)))
    assert title(none) == "response time: no data"


def test_widths_grow_with_text() -> None:
    short = parse(badges.status_badge(monitor("api"), label="a"))
    long = parse(badges.status_badge(monitor("api"), label="a much longer label"))
    assert int(long.get("width", "")) > int(short.get("width", ""))
    assert badges.text_width("WWW") > badges.text_width("iii")
    assert badges.text_width("상태") > badges.text_width("ab")
    assert badges.text_width("") == 0


def test_width_matches_the_boxes() -> None:
    root = parse(badges.status_badge(monitor("api", name="Database")))
    label_box, value_box = root.findall(f"{S}g/{S}rect")[:2]
    width = int(root.get("width", ""))
    assert int(label_box.get("width", "")) + int(value_box.get("width", "")) == width
    assert value_box.get("x") == label_box.get("width")


def test_ids_do_not_collide_between_badges() -> None:
    m = monitor("api")
    a = parse(badges.status_badge(m))
    b = parse(badges.status_badge(dataclasses.replace(m, state=State.DOWN)))
    ids_a = {e.get("id") for e in a.iter() if e.get("id")}
    ids_b = {e.get("id") for e in b.iter() if e.get("id")}
    assert ids_a and not ids_a & ids_b
