"""Incidents as Atom (RFC 4287) and RSS 2.0 feeds, built with ElementTree.

One entry per incident, newest first, at most 50. The title follows the incident ("API is
down", then "API recovered after 12m") under the same id, so readers update the entry in
place. Ids are `urn:uuid:` (UUID 5 of the page's URL and the incident id): stable across
snapshots and restarts, distinct between two status pages. Links go to the monitor's page,
absolute when settings.public_url is set, else relative ("/monitors/api"). Every text is
set as element text or an attribute, so ElementTree escapes it: names and causes are never
markup. RSS descriptions, which readers take as HTML, are HTML-escaped first. Times: RFC
3339 in Atom, RFC 822 in RSS, in settings.timezone.
"""

from __future__ import annotations

import datetime as dt
import email.utils
import html
import uuid
import xml.etree.ElementTree as ET

from statuspage.api import duration_text, incident_title, monitor_url
from statuspage.snapshot import IncidentView, Snapshot

ATOM_NS = "http://www.w3.org/2005/Atom"
FEED_LIMIT = 50
XML_LANG = "{http://www.w3.org/XML/1998/namespace}lang"


def atom(s: Snapshot) -> str:
    incidents = s.incidents[:FEED_LIMIT]
    feed = ET.Element("feed", {"xmlns": ATOM_NS, XML_LANG: s.language})
    _text(feed, "id", _urn(s, "feed"))
    _text(feed, "title", f"{s.title}: incidents")
    _text(feed, "updated", _iso(max((_updated(i) for i in incidents), default=s.generated_at)))
    ET.SubElement(feed, "link", rel="self", type="application/atom+xml", href=_url(s, "/feed.atom"))
    ET.SubElement(feed, "link", rel="alternate", type="text/html", href=_url(s, "/"))
    author = ET.SubElement(feed, "author")
    _text(author, "name", s.title)
    _text(feed, "generator", "prober")
    for incident in incidents:
        entry = ET.SubElement(feed, "entry")
        _text(entry, "id", _urn(s, f"incident:{incident.id}"))
        _text(entry, "title", incident_title(incident))
        link = monitor_url(s, incident.monitor_id)
        ET.SubElement(entry, "link", rel="alternate", type="text/html", href=link)
        _text(entry, "published", _iso(incident.start))
        _text(entry, "updated", _iso(_updated(incident)))
        _text(entry, "summary", summary(incident)).set("type", "text")
    return _serialize(feed)


def rss(s: Snapshot) -> str:
    incidents = s.incidents[:FEED_LIMIT]
    root = ET.Element("rss", {"version": "2.0", "xmlns:atom": ATOM_NS})
    channel = ET.SubElement(root, "channel")
    _text(channel, "title", f"{s.title}: incidents")
    _text(channel, "link", _url(s, "/"))
    _text(channel, "description", f"Incidents on {s.title}")
    _text(channel, "language", s.language)
    updated = max((_updated(i) for i in incidents), default=s.generated_at)
    _text(channel, "lastBuildDate", email.utils.format_datetime(updated))
    _text(channel, "generator", "prober")
    self_link = {"href": _url(s, "/feed.rss"), "rel": "self", "type": "application/rss+xml"}
    ET.SubElement(channel, "atom:link", self_link)
    for incident in incidents:
        item = ET.SubElement(channel, "item")
        _text(item, "title", incident_title(incident))
        _text(item, "link", monitor_url(s, incident.monitor_id))
        _text(item, "guid", _urn(s, f"incident:{incident.id}")).set("isPermaLink", "false")
        _text(item, "pubDate", email.utils.format_datetime(incident.start))
        _text(item, "description", summary_html(incident))
    return _serialize(root)


def summary(incident: IncidentView) -> str:
    """Plain text: start, end, duration, cause, one a line."""
    lines = [
        f"Started: {_iso(incident.start)}",
        f"Ended: {_iso(incident.end) if incident.end is not None else 'ongoing'}",
        f"Duration: {duration_text(incident)}",
        f"Cause: {incident.cause or 'unknown'}",
    ]
    return "\n".join(lines)


def summary_html(incident: IncidentView) -> str:
    """The summary for RSS, whose description readers take as HTML: escaped once here (and
    once more by ElementTree), so a cause holding "<script>" reads as text, never markup."""
    return "<br>\n".join(html.escape(line) for line in summary(incident).splitlines())


def _updated(incident: IncidentView) -> dt.datetime:
    return incident.end or incident.start


def _iso(moment: dt.datetime) -> str:
    return moment.isoformat()


def _url(s: Snapshot, path: str) -> str:
    return s.public_url.rstrip("/") + path


def _urn(s: Snapshot, key: str) -> str:
    return uuid.uuid5(uuid.NAMESPACE_URL, f"{s.public_url or s.title}#{key}").urn


def _text(parent: ET.Element, tag: str, text: str) -> ET.Element:
    element = ET.SubElement(parent, tag)
    element.text = text
    return element


def _serialize(root: ET.Element) -> str:
    return ET.tostring(root, encoding="unicode", xml_declaration=True)
