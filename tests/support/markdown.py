"""Markdown as GitHub renders it, read closely enough to check documents: GFM tables
(cells split on unescaped pipes, a blank line ends a table), headings and their sections,
code spans, and GitHub's heading anchors. Fenced code blocks are skipped."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterator


@dataclasses.dataclass
class Table:
    line: int  # 1-based line of the header row
    headings: tuple[str, ...]  # the headings above it, outermost first
    header: list[str]
    rows: list[list[str]]


@dataclasses.dataclass
class Section:
    headings: tuple[str, ...]
    text: str


_DELIMITER = re.compile(r"^\|?\s*:?-+:?\s*(\|\s*:?-+:?\s*)*\|?\s*$")


def cells(line: str) -> list[str]:
    """A row's cells, split on unescaped pipes (GFM splits inside code spans too)."""
    body = line.strip()
    body = body.removeprefix("|")
    if body.endswith("|") and not body.endswith("\\|"):
        body = body[:-1]
    return [c.strip().replace("\\|", "|") for c in re.split(r"(?<!\\)\|", body)]


def lines_outside_code(text: str) -> Iterator[tuple[int, str]]:
    fenced = False
    for number, line in enumerate(text.splitlines(), 1):
        if line.lstrip().startswith("```"):
            fenced = not fenced
            continue
        if not fenced:
            yield number, line


def read_markdown(
    text: str, name: str = "README.md"
) -> tuple[list[Table], list[Section], list[str]]:
    """Tables, sections (heading path and text) and what would not render as meant."""
    tables: list[Table] = []
    sections: list[Section] = [Section((), "")]
    problems: list[str] = []
    headings: list[tuple[int, str]] = []
    lines = list(lines_outside_code(text))
    table: Table | None = None
    ended: Table | None = None  # the table a blank line just ended
    delimiter_next = False
    for i, (number, line) in enumerate(lines):
        heading = re.match(r"^(#{1,6})\s+(.*)$", line)
        if heading:
            level = len(heading.group(1))
            headings = [h for h in headings if h[0] < level] + [(level, heading.group(2))]
            sections.append(Section(tuple(h for _, h in headings), ""))
            table = ended = None
            continue
        sections[-1].text += line + "\n"
        if not line.strip():
            ended, table = table or ended, None
            continue
        if not line.startswith("|"):  # an indented | continues a list item's paragraph
            table = ended = None
            continue
        row = cells(line)
        if table is not None and delimiter_next:
            delimiter_next = False
            if len(row) != len(table.header):
                problems.append(
                    f"{name}:{number}: the delimiter row has {len(row)} cells for "
                    f"{len(table.header)} header cells: not a table"
                )
        elif table is not None:
            if len(row) != len(table.header):
                problems.append(
                    f"{name}:{number}: a row of {len(row)} cells in a table of "
                    f"{len(table.header)} columns (line {table.line}); escape | as \\|"
                )
            table.rows.append(row)
        elif i + 1 < len(lines) and _DELIMITER.match(lines[i + 1][1].strip()):
            table = Table(number, tuple(h for _, h in headings), row, [])
            tables.append(table)
            ended, delimiter_next = None, True
        elif ended is not None:
            problems.append(
                f"{name}:{number}: a blank line splits the table of line {ended.line}: "
                "the rows after it render as a paragraph"
            )
            table, ended = ended, None
            table.rows.append(row)
        else:
            problems.append(f"{name}:{number}: a table row outside any table")
    return tables, sections, problems


def code_spans(text: str) -> list[str]:
    return re.findall(r"`([^`]+)`", text)


def anchor(heading: str) -> str:
    """GitHub's id for a heading: lower case, punctuation dropped, spaces as hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-")
