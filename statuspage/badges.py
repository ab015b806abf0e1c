"""shields.io-style flat SVG badges: a grey label on the left, a coloured value on the right.

Built with ElementTree, so labels (monitor names) are escaped. Widths come from a table of
Verdana 11px advance widths (approximate, from the font's metrics in thousandths of an em);
`textLength` pins each text to its computed width, so a renderer without Verdana still
fits the box. `role="img"`, `aria-label` and `<title>` say "label: value" to screen readers.
"""

from __future__ import annotations

import hashlib
import math
import unicodedata
import xml.etree.ElementTree as ET

from statuspage.snapshot import MonitorView, State

SVG_NS = "http://www.w3.org/2000/svg"
FONT = "Verdana,Geneva,DejaVu Sans,sans-serif"
FONT_SIZE = 11
HEIGHT = 20
PADDING = 6  # each side of a text

GREY = "#555"
BRIGHTGREEN = "#4c1"
GREEN = "#97ca00"
YELLOWGREEN = "#a4a61d"
YELLOW = "#dfb317"
ORANGE = "#fe7d37"
RED = "#e05d44"
BLUE = "#007ec6"
LIGHTGREY = "#9f9f9f"

STATE_COLOR = {
    State.UP: BRIGHTGREEN,
    State.DEGRADED: YELLOW,
    State.DOWN: RED,
    State.MAINTENANCE: BLUE,
    State.UNKNOWN: LIGHTGREY,
}
UPTIME_COLOR = ((99.9, BRIGHTGREEN), (99.0, GREEN), (97.0, YELLOWGREEN), (95.0, YELLOW))
LATENCY_COLOR = ((200.0, BRIGHTGREEN), (500.0, GREEN), (1000.0, YELLOW), (2000.0, ORANGE))
WINDOWS = ("24h", "7d", "30d", "90d")
NO_DATA = "no data"

# Verdana advance widths in thousandths of an em; other characters: _WIDE or _OTHER.
_EM: dict[str, int] = {
    " ": 352, "!": 394, '"': 460, "#": 818, "$": 636, "%": 1076, "&": 727, "'": 269,
    "(": 454, ")": 454, "*": 636, "+": 818, ",": 364, "-": 454, ".": 364, "/": 454,
    ":": 454, ";": 454, "<": 818, "=": 818, ">": 818, "?": 545, "@": 1000, "[": 454,
    "\\": 454, "]": 454, "^": 818, "_": 636, "`": 636, "{": 636, "|": 454, "}": 636,
    "~": 818,
    "A": 684, "B": 686, "C": 698, "D": 771, "E": 632, "F": 575, "G": 775, "H": 751,
    "I": 421, "J": 455, "K": 693, "L": 557, "M": 843, "N": 748, "O": 787, "P": 603,
    "Q": 787, "R": 695, "S": 684, "T": 616, "U": 732, "V": 684, "W": 989, "X": 685,
    "Y": 615, "Z": 685,
    "a": 601, "b": 623, "c": 521, "d": 623, "e": 596, "f": 352, "g": 623, "h": 633,
    "i": 274, "j": 344, "k": 592, "l": 274, "m": 973, "n": 633, "o": 607, "p": 623,
    "q": 623, "r": 427, "s": 521, "t": 394, "u": 633, "v": 592, "w": 818, "x": 592,
    "y": 592, "z": 525,
} | dict.fromkeys("0123456789", 636)  # fmt: skip
_WIDE = 1000  # CJK and other full-width characters (Hangul names)
_OTHER = 640  # other letters: about an average Verdana letter


def text_width(text: str) -> float:
    """The width in pixels of `text` in Verdana 11px (approximate)."""
    units = 0
    for char in text:
        if char in _EM:
            units += _EM[char]
        elif unicodedata.combining(char):
            continue
        elif unicodedata.east_asian_width(char) in ("W", "F"):
            units += _WIDE
        else:
            units += _OTHER
    return units * FONT_SIZE / 1000


def status_badge(m: MonitorView, label: str | None = None) -> str:
    return badge(m.name if label is None else label, m.state.value, STATE_COLOR[m.state])


def uptime_badge(m: MonitorView, window: str) -> str | None:
    """Uptime over 24h, 7d, 30d or 90d; None for any other window (the route answers 400)."""
    if window not in WINDOWS:
        return None
    percent = m.uptime.get(window)
    label = f"uptime {window}"
    if percent is None or not math.isfinite(percent):
        return badge(label, NO_DATA, LIGHTGREY)
    return badge(label, uptime_text(percent), _scale(percent, UPTIME_COLOR, higher_is_better=True))


def response_badge(m: MonitorView) -> str:
    """The last check's latency ("123 ms"), or "no data"."""
    latency = m.latency_ms
    if latency is None or not math.isfinite(latency):
        return badge("response time", NO_DATA, LIGHTGREY)
    value = f"{round(latency)} ms"
    return badge("response time", value, _scale(latency, LATENCY_COLOR, higher_is_better=False))


def uptime_text(percent: float) -> str:
    """Cut to two decimals, never rounded up: 99.999 reads "99.99%", not "100%"."""
    cut = math.floor(round(percent * 100, 6)) / 100
    return f"{cut:.2f}".rstrip("0").rstrip(".") + "%"


def _scale(value: float, steps: tuple[tuple[float, str], ...], *, higher_is_better: bool) -> str:
    for bound, color in steps:
        if (value >= bound) if higher_is_better else (value < bound):
            return color
    return RED


def badge(label: str, value: str, color: str) -> str:
    """A flat badge: `label` on grey, `value` on `color`."""
    label_text, value_text = text_width(label), text_width(value)
    label_box = math.ceil(label_text) + 2 * PADDING
    value_box = math.ceil(value_text) + 2 * PADDING
    width = label_box + value_box
    title = f"{label}: {value}"
    # ids unique per badge: several badges inlined in one page must not share a clip path.
    suffix = hashlib.sha256(f"{title}\0{color}".encode()).hexdigest()[:8]
    svg = ET.Element(
        "svg",
        {"xmlns": SVG_NS, "width": str(width), "height": str(HEIGHT)},
        role="img",
        viewBox=f"0 0 {width} {HEIGHT}",
    )
    svg.set("aria-label", title)
    ET.SubElement(svg, "title").text = title
    gradient = ET.SubElement(svg, "linearGradient", id=f"s{suffix}", x2="0", y2="100%")
    ET.SubElement(gradient, "stop", {"offset": "0", "stop-color": "#bbb", "stop-opacity": ".1"})
    ET.SubElement(gradient, "stop", {"offset": "1", "stop-opacity": ".1"})
    clip = ET.SubElement(svg, "clipPath", id=f"r{suffix}")
    ET.SubElement(clip, "rect", width=str(width), height=str(HEIGHT), rx="3", fill="#fff")
    boxes = ET.SubElement(svg, "g", {"clip-path": f"url(#r{suffix})"})
    ET.SubElement(boxes, "rect", width=str(label_box), height=str(HEIGHT), fill=GREY)
    ET.SubElement(
        boxes, "rect", x=str(label_box), width=str(value_box), height=str(HEIGHT), fill=color
    )
    ET.SubElement(boxes, "rect", width=str(width), height=str(HEIGHT), fill=f"url(#s{suffix})")
    texts = ET.SubElement(
        svg,
        "g",
        {"fill": "#fff", "text-anchor": "middle", "font-family": FONT, "font-size": "11"},
    )
    texts.set("aria-hidden", "true")
    _text(texts, label, label_box / 2, label_text)
    _text(texts, value, label_box + value_box / 2, value_text)
    return ET.tostring(svg, encoding="unicode")


def _text(parent: ET.Element, text: str, center: float, length: float) -> None:
    """The text with its shadow, as shields draws it."""
    for y, extra in (("15", {"fill": "#010101", "fill-opacity": ".3"}), ("14", {})):
        element = ET.SubElement(parent, "text", {"x": f"{center:g}", "y": y, **extra})
        if length > 0:
            element.set("textLength", f"{length:.1f}")
        element.text = text
