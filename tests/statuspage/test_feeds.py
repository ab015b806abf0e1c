"""Atom and RSS feeds, read as feed readers read them (feedparser) and as plain XML."""

from __future__ import annotations

import dataclasses
import datetime as dt
import email.utils
import html
import xml.etree.ElementTree as ET
from collections.abc import Callable

import feedparser
import pytest

from statuspage import feeds
from statuspage.snapshot import IncidentView, Snapshot
from tests.statuspage.factory import HOSTILE, NOW, ONGOING, RESOLVED, calm, sample
from tests.statuspage.test_api import INVESTIGATING, MONITORING, RESOLVED_UPDATE, notice

A = "{http://www.w3.org/2005/Atom}"
Render = Callable[[Snapshot], str]


def tags(root: ET.Element) -> set[str]:
    return {element.tag.rsplit("}", 1)[-1] for element in root.iter()}


def no_markup_elements(root: ET.Element) -> None:
    """The hostile names and causes stayed text: no element of theirs in the tree."""
    assert not tags(root) & {"script", "b"}


def test_atom_parses_with_feedparser() -> None:
    parsed = feedparser.parse(feeds.atom(sample()))
    assert parsed.bozo == 0
    assert parsed.version == "atom10"
    assert [e.title for e in parsed.entries] == ["API is down", f"{HOSTILE} recovered after 12m"]
    assert [e.link for e in parsed.entries] == [
        "https://status.example.com/monitors/api",
        "https://status.example.com/monitors/web",
    ]
    for entry, incident in zip(parsed.entries, (ONGOING, RESOLVED), strict=True):
        assert entry.id.startswith("urn:uuid:")
        assert entry.published_parsed is not None and entry.updated_parsed is not None
        assert dt.datetime.fromisoformat(entry.published) == incident.start
        assert dt.datetime.fromisoformat(entry.updated) == (incident.end or incident.start)
        assert entry.summary_detail.type == "text/plain"
        assert f"Cause: {incident.cause}" in entry.summary
    assert "Duration: 12m" in parsed.entries[1].summary
    assert "Ended: ongoing" in parsed.entries[0].summary
    self_links = [link.href for link in parsed.feed.links if link.rel == "self"]
    assert self_links == ["https://status.example.com/feed.atom"]


def test_atom_parses_with_elementtree() -> None:
    root = ET.fromstring(feeds.atom(sample()))
    assert root.tag == f"{A}feed"
    assert root.find(f"{A}id") is not None and root.find(f"{A}updated") is not None
    assert root.find(f"{A}author/{A}name") is not None
    entries = root.findall(f"{A}entry")
    assert len(entries) == 2
    assert entries[1].findtext(f"{A}title") == f"{HOSTILE} recovered after 12m"
    assert f"body: {HOSTILE}" in (entries[1].findtext(f"{A}summary") or "")
    dt.datetime.fromisoformat(entries[0].findtext(f"{A}updated") or "")
    no_markup_elements(root)


def test_rss_parses_with_feedparser() -> None:
    parsed = feedparser.parse(feeds.rss(sample()))
    assert parsed.bozo == 0
    assert parsed.version == "rss20"
    assert [e.title for e in parsed.entries] == ["API is down", f"{HOSTILE} recovered after 12m"]
    assert parsed.entries[0].link == "https://status.example.com/monitors/api"
    for entry, incident in zip(parsed.entries, (ONGOING, RESOLVED), strict=True):
        assert entry.id.startswith("urn:uuid:")
        assert email.utils.parsedate_to_datetime(entry.published) == incident.start
    # The description is HTML to readers: the hostile cause shows as text, never as markup.
    summary = parsed.entries[1].summary
    assert "<script>" not in summary and "<b>" not in summary
    assert "&lt;script&gt;" in summary
    self_links = [link.href for link in parsed.feed.links if link.rel == "self"]
    assert self_links == ["https://status.example.com/feed.rss"]


def test_rss_parses_with_elementtree() -> None:
    root = ET.fromstring(feeds.rss(sample()))
    assert root.tag == "rss" and root.get("version") == "2.0"
    channel = root.find("channel")
    assert channel is not None
    items = channel.findall("item")
    assert len(items) == 2
    assert items[1].findtext("title") == f"{HOSTILE} recovered after 12m"
    guid = items[0].find("guid")
    assert guid is not None and guid.get("isPermaLink") == "false"
    self_link = channel.find(f"{A}link")
    assert self_link is not None and self_link.get("rel") == "self"
    email.utils.parsedate_to_datetime(channel.findtext("lastBuildDate") or "")
    no_markup_elements(root)


@pytest.mark.parametrize("render", [feeds.atom, feeds.rss])
def test_hostile_title_never_raw(render: Render) -> None:
    text = render(sample())
    assert "<script>" not in text and "<b>" not in text
    no_markup_elements(ET.fromstring(text))


@pytest.mark.parametrize("render", [feeds.atom, feeds.rss])
def test_ids_stable_across_builds(render: Render) -> None:
    later = dataclasses.replace(sample(), generated_at=NOW + dt.timedelta(hours=1))
    first = feedparser.parse(render(sample())).entries
    second = feedparser.parse(render(later)).entries
    assert [e.id for e in first] == [e.id for e in second]
    assert len({e.id for e in first}) == len(first)


@pytest.mark.parametrize("render", [feeds.atom, feeds.rss])
def test_relative_links_without_public_url(render: Render) -> None:
    text = render(dataclasses.replace(sample(), public_url=""))
    root = ET.fromstring(text)
    links = [e.get("href") or e.text for e in root.iter() if e.tag.endswith("link")]
    assert "/monitors/api" in links
    assert "/monitors/web" in links
    assert {"/feed.atom", "/feed.rss"} & set(links)
    assert feedparser.parse(text).bozo == 0


@pytest.mark.parametrize("render", [feeds.atom, feeds.rss])
def test_at_most_50_newest_first(render: Render) -> None:
    many = tuple(
        IncidentView(
            f"api-{n}",
            "api",
            "API",
            NOW - dt.timedelta(hours=n + 1),
            NOW - dt.timedelta(hours=n),
            3600.0,
            "timeout",
        )
        for n in range(60)
    )
    text = render(dataclasses.replace(sample(), incidents=many))
    parsed = feedparser.parse(text)
    assert parsed.bozo == 0
    assert len(parsed.entries) == 50
    assert parsed.entries[0].title == "API recovered after 1h"
    starts = [dt.datetime(*e.published_parsed[:6]) for e in parsed.entries]
    assert starts == sorted(starts, reverse=True)


@pytest.mark.parametrize("render", [feeds.atom, feeds.rss])
def test_empty_feed_is_valid(render: Render) -> None:
    parsed = feedparser.parse(render(calm()))
    assert parsed.bozo == 0
    assert parsed.entries == []
    assert parsed.feed.title == "Acme <Status>: incidents"


# --- incidents written by people; one monitor's feed --------------------------------------

HOSTILE_BODY = ("investigating", NOW - dt.timedelta(minutes=15), HOSTILE)


def people() -> Snapshot:
    """The sample with an incident written by people attached to API's ongoing one."""
    n = notice(INVESTIGATING, HOSTILE_BODY, MONITORING)
    n = dataclasses.replace(
        n,
        title=HOSTILE,
        updates=tuple(
            dataclasses.replace(u, html=f"<p>{html.escape(u.body)}</p>") for u in n.updates
        ),
    )
    return dataclasses.replace(sample(), notices=(n,))


def test_atom_lists_a_notice_once_with_its_updates_newest_first() -> None:
    parsed = feedparser.parse(feeds.atom(people()))
    assert parsed.bozo == 0
    assert [e.title for e in parsed.entries] == [
        f"Monitoring: {HOSTILE}",  # the detected "API is down" is part of it
        f"{HOSTILE} recovered after 12m",
    ]
    entry = parsed.entries[0]
    assert dt.datetime.fromisoformat(entry.updated) == MONITORING[1]  # its newest update
    assert dt.datetime.fromisoformat(entry.published) == ONGOING.start  # the earlier start
    assert entry.summary_detail.type == "text/plain"
    text = entry.summary
    assert text.index("A fix is out.") < text.index(HOSTILE) < text.index("We are *looking*")
    # the page's words, not the file's keys; the link is its place on the page
    assert "Impact: Major" in text and "Components: API (Partial outage)" in text
    assert entry.link == f"{people().public_url.rstrip('/')}/#notice-{people().notices[0].id}"
    (content,) = entry.content
    assert content.type == "text/html"
    assert content.value.index("Monitoring") < content.value.index("Investigating")
    assert "&lt;script&gt;" in content.value and "<script>" not in content.value
    no_markup_elements(ET.fromstring(feeds.atom(people())))


def test_rss_lists_a_notice_as_html_escaped_once_more() -> None:
    text = feeds.rss(people())
    parsed = feedparser.parse(text)
    assert parsed.bozo == 0
    assert parsed.entries[0].title == f"Monitoring: {HOSTILE}"
    description = parsed.entries[0].summary
    assert "<script>" not in description and "&lt;script&gt;" in description
    assert "<p>A fix is out.</p>" in description
    no_markup_elements(ET.fromstring(text))


def test_notice_entry_id_stable_as_it_gets_updates() -> None:
    first = feedparser.parse(feeds.atom(people())).entries[0]
    resolved = notice(INVESTIGATING, MONITORING, RESOLVED_UPDATE)
    later = feedparser.parse(feeds.atom(dataclasses.replace(sample(), notices=(resolved,))))
    assert later.entries[0].id == first.id
    assert later.entries[0].title == "Resolved: Elevated API errors <b>"


def test_one_monitors_feed() -> None:
    s = people()
    parsed = feedparser.parse(feeds.monitor_atom(s, "api"))
    assert parsed.bozo == 0
    assert [e.title for e in parsed.entries] == [f"Monitoring: {HOSTILE}"]
    assert parsed.feed.title == "Acme <Status>: API"
    links = {link.rel: link.href for link in parsed.feed.links}
    assert links == {
        "self": "https://status.example.com/monitors/api/feed.atom",
        "alternate": "https://status.example.com/monitors/api",
    }
    web = feedparser.parse(feeds.monitor_atom(s, "web"))
    assert [e.title for e in web.entries] == [f"{HOSTILE} recovered after 12m"]
    assert web.feed.id not in (parsed.feed.id, feedparser.parse(feeds.atom(s)).feed.id)
    quiet = feedparser.parse(feeds.monitor_atom(s, "cron"))
    assert quiet.bozo == 0 and quiet.entries == []
    # a notice naming db among its components is in db's feed, not in cron's
    named = dataclasses.replace(
        notice(INVESTIGATING, detected=None, components=(("db", "Database", "major_outage"),)),
    )
    s = dataclasses.replace(sample(), notices=(named,))
    assert [e.title for e in feedparser.parse(feeds.monitor_atom(s, "db")).entries] == [
        "Investigating: Elevated API errors <b>"
    ]
    assert feeds.monitor_atom(s, "nope") is None
