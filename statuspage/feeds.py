"""Incidents as Atom (RFC 4287) and RSS 2.0 feeds, built with ElementTree.

One entry per incident, newest first by start, at most 50: detected incidents, and
incidents written by people (one attached to a detected incident stands for both, as in
the APIs). A detected incident's title follows it ("API is down", then "API recovered after
12m") under the same id, so readers update the entry in place; one written by people is
"Investigating: TITLE", then "Resolved: TITLE", updated at its newest update, its updates
newest first as plain text (Atom summary) and as HTML (Atom content, RSS description: the
bodies rendered safely by statuspage.notices, everything else escaped here). `monitor_atom`
is one monitor's feed (/monitors/{id}/feed.atom): its detected incidents and the incidents
written by people that name it. Ids are `urn:uuid:` (UUID 5 of the page's URL and the
incident id): stable across snapshots and restarts, distinct between two status pages.
Links go to the monitor's page (or the status page, for one written by people), absolute
when settings.public_url is set, else relative ("/monitors/api"). Every text is set as
element text or an attribute, so ElementTree escapes it: names and causes are never markup.
RSS descriptions, which readers take as HTML, are HTML-escaped first. Times: RFC 3339 in
Atom, RFC 822 in RSS, in settings.timezone.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import email.utils
import html
import uuid
import xml.etree.ElementTree as ET

from statuspage.api import covered, duration_text, incident_title, monitor_url, started
from statuspage.i18n import Translator
from statuspage.snapshot import IncidentView, NoticeView, Snapshot

ATOM_NS = "http://www.w3.org/2005/Atom"
FEED_LIMIT = 50
XML_LANG = "{http://www.w3.org/XML/1998/namespace}lang"


@dataclasses.dataclass(frozen=True, slots=True)
class Entry:
    key: str  # the urn's key: stable for the incident
    title: str
    link: str
    published: dt.datetime
    updated: dt.datetime
    text: str  # plain text
    html: str | None  # HTML for readers that show it (None: the text, escaped, for RSS)


def entries(s: Snapshot, monitor_id: str | None = None) -> list[Entry]:
    """The newest FEED_LIMIT incidents (only those of `monitor_id`, if given), newest first
    by start; a detected incident attached to one written by people is part of that one."""
    attached = covered(s)
    found = [
        (started(n), _notice(s, n)) for n in s.notices if monitor_id is None or names(n, monitor_id)
    ]
    found += [
        (i.start, _incident(s, i))
        for i in s.incidents
        if i.id not in attached and monitor_id in (None, i.monitor_id)
    ]
    found.sort(key=lambda pair: pair[0], reverse=True)  # stable: ties keep their order
    return [entry for _, entry in found[:FEED_LIMIT]]


def names(n: NoticeView, monitor_id: str) -> bool:
    """Whether an incident written by people is about that monitor."""
    detected = n.detected is not None and n.detected.monitor_id == monitor_id
    return detected or any(mid == monitor_id for mid, _, _ in n.components)


def atom(s: Snapshot) -> str:
    return _atom(s, entries(s), f"{s.title}: incidents", "/feed.atom", "/")


def monitor_atom(s: Snapshot, monitor_id: str) -> str | None:
    """One monitor's feed; None for a monitor the page does not show (the route: 404)."""
    m = s.monitor(monitor_id)
    if m is None:
        return None
    path = f"/monitors/{monitor_id}"
    return _atom(s, entries(s, monitor_id), f"{s.title}: {m.name}", f"{path}/feed.atom", path)


def _atom(s: Snapshot, found: list[Entry], title: str, self_path: str, page: str) -> str:
    feed = ET.Element("feed", {"xmlns": ATOM_NS, XML_LANG: s.language})
    _text(feed, "id", _urn(s, "feed" if self_path == "/feed.atom" else f"feed:{self_path}"))
    _text(feed, "title", title)
    _text(feed, "updated", _iso(max((e.updated for e in found), default=s.generated_at)))
    ET.SubElement(feed, "link", rel="self", type="application/atom+xml", href=_url(s, self_path))
    ET.SubElement(feed, "link", rel="alternate", type="text/html", href=_url(s, page))
    author = ET.SubElement(feed, "author")
    _text(author, "name", s.title)
    _text(feed, "generator", "prober")
    for e in found:
        entry = ET.SubElement(feed, "entry")
        _text(entry, "id", _urn(s, e.key))
        _text(entry, "title", e.title)
        ET.SubElement(entry, "link", rel="alternate", type="text/html", href=e.link)
        _text(entry, "published", _iso(e.published))
        _text(entry, "updated", _iso(e.updated))
        _text(entry, "summary", e.text).set("type", "text")
        if e.html is not None:
            _text(entry, "content", e.html).set("type", "html")
    return _serialize(feed)


def rss(s: Snapshot) -> str:
    found = entries(s)
    root = ET.Element("rss", {"version": "2.0", "xmlns:atom": ATOM_NS})
    channel = ET.SubElement(root, "channel")
    _text(channel, "title", f"{s.title}: incidents")
    _text(channel, "link", _url(s, "/"))
    _text(channel, "description", f"Incidents on {s.title}")
    _text(channel, "language", s.language)
    updated = max((e.updated for e in found), default=s.generated_at)
    _text(channel, "lastBuildDate", email.utils.format_datetime(updated))
    _text(channel, "generator", "prober")
    self_link = {"href": _url(s, "/feed.rss"), "rel": "self", "type": "application/rss+xml"}
    ET.SubElement(channel, "atom:link", self_link)
    for e in found:
        item = ET.SubElement(channel, "item")
        _text(item, "title", e.title)
        _text(item, "link", e.link)
        _text(item, "guid", _urn(s, e.key)).set("isPermaLink", "false")
        _text(item, "pubDate", email.utils.format_datetime(e.published))
        _text(item, "description", e.html if e.html is not None else _escaped(e.text))
    return _serialize(root)


def _incident(s: Snapshot, incident: IncidentView) -> Entry:
    return Entry(
        key=f"incident:{incident.id}",
        title=incident_title(incident),
        link=monitor_url(s, incident.monitor_id),
        published=incident.start,
        updated=_updated(incident),
        text=summary(incident),
        html=None,
    )


def _notice(s: Snapshot, n: NoticeView) -> Entry:
    """Its updates newest first: the plain text has each body's Markdown source; the HTML
    each body as statuspage.notices rendered it (raw HTML off, links http(s) only) and
    everything else escaped here."""
    words = Translator("en")  # the feeds' words are English, as "Started:" and "Cause:"
    components = ", ".join(
        f"{name} ({words('notice.component.' + status)})" for _, name, status in n.components
    )
    impact = words(f"notice.impact.{n.impact}")
    head = [f"Impact: {impact}"] + ([f"Components: {components}"] if components else [])
    text = [*head, *(f"\n{u.status.capitalize()} ({_iso(u.at)})\n{u.body}" for u in n.updates)]
    markup = [f"<p>{html.escape(line)}</p>" for line in head]
    for u in n.updates:
        when = html.escape(_iso(u.at))
        markup.append(f"<h3>{html.escape(u.status.capitalize())} <small>{when}</small></h3>")
        markup.append(u.html)
    return Entry(
        key=f"notice:{n.id}",
        title=f"{n.status.capitalize()}: {n.title}",
        link=_url(s, f"/#notice-{n.id}"),  # its place in the page's list
        published=started(n),
        updated=n.updated_at,
        text="\n".join(text),
        html="\n".join(markup),
    )


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
    return _escaped(summary(incident))


def _escaped(text: str) -> str:
    return "<br>\n".join(html.escape(line) for line in text.splitlines())


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
