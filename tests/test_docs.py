"""The README is the user's contract: every config key, check and notifier type, command,
option, environment variable and public route the code has is documented there, and
everything its tables document exists. Its tables parse as tables on any GFM renderer."""

from __future__ import annotations

import argparse
import itertools
import pathlib
import re
import types
import typing

import pytest
from aiohttp import web
from pydantic import BaseModel

from prober.alerts.channels import SENDERS
from prober.checks import CHECKS
from prober.cli import build_parser
from prober.config import load_config
from prober.config.load import TOP_LEVEL, Config
from prober.config.monitors import MONITOR_TYPES, field_names
from prober.config.settings import NOTIFIER_TYPES, Maintenance, NotifierBase, Settings
from statuspage.app import create_app, create_metrics_app
from statuspage.health import Health
from statuspage.publisher import Publisher
from tests.support.markdown import (
    Table,
    anchor,
    cells,
    code_spans,
    lines_outside_code,
    read_markdown,
)

ROOT = pathlib.Path(__file__).resolve().parent.parent
README = ROOT / "README.md"


TABLES, SECTIONS, RENDER_PROBLEMS = read_markdown(README.read_text(encoding="utf-8"))


def without_parentheses(text: str) -> str:
    """`port` (443), `record` (A AAAA ...; A): what is in parentheses is values, not keys."""
    out, depth = [], 0
    for char in text:
        depth += char == "("
        if depth == 0:
            out.append(char)
        depth -= char == ")" and depth > 0
    return "".join(out)


def tables_under(marker: str, first: str) -> list[Table]:
    return [
        t
        for t in TABLES
        if t.header and t.header[0] == first and any(marker in h for h in t.headings)
    ]


def section_text(marker: str) -> str:
    return "".join(s.text for s in SECTIONS if s.headings and marker in s.headings[-1])


def key_rows(marker: str) -> dict[str, str]:
    """`key | meaning | default` tables: each key named in the first column -> its row."""
    found: dict[str, str] = {}
    for table in tables_under(marker, "key"):
        for row in table.rows:
            for span in code_spans(row[0]):
                name = re.match(r"[A-Za-z_][A-Za-z0-9_]*", span)
                if name:
                    found[name.group(0)] = " | ".join(row)
    return found


def type_row(marker: str, kind: str) -> str | None:
    """`type | keys (defaults) | ...` tables: the row of one type."""
    for table in tables_under(marker, "type"):
        for row in table.rows:
            if row[0].strip("` ") == kind:
                return " | ".join(row)
    return None


def nested_models(annotation: object) -> list[type[BaseModel]]:
    args = typing.get_args(annotation) if isinstance(annotation, types.UnionType) else ()
    return [
        a
        for a in (*args, annotation)
        if isinstance(a, type) and issubclass(a, BaseModel) and a is not BaseModel
    ]


def undocumented_nested(owner: str, model: type[BaseModel], rows: dict[str, str]) -> list[str]:
    """A key whose value is a table (`metrics`, `basic_auth`) names its keys in its row."""
    missing = []
    for name, field in model.model_fields.items():
        key = field.alias or name
        for inner in nested_models(field.annotation):
            for sub in field_names(inner):
                if key in rows and not re.search(rf"\b{sub}\b", rows[key]):
                    missing.append(f"{owner} key `{key}.{sub}` is not in the README row of `{key}`")
    return missing


# --- the documents render, and their links land ------------------------------------------


DOCS = [README, *sorted((ROOT / "docs").glob("*.md"))]


def test_readme_tables_render_as_tables() -> None:
    assert not RENDER_PROBLEMS, "\n".join(RENDER_PROBLEMS)
    assert len(TABLES) >= 10


@pytest.mark.parametrize("path", DOCS[1:], ids=lambda p: p.name)
def test_docs_tables_render_as_tables(path: pathlib.Path) -> None:
    _, _, problems = read_markdown(path.read_text(encoding="utf-8"), f"docs/{path.name}")
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("path", DOCS, ids=lambda p: p.name)
def test_relative_links_resolve_inside_the_repository(path: pathlib.Path) -> None:
    """Every link to a file or a heading lands; nothing points outside the repository
    (the contracts a user relies on are in docs/REFERENCE.md, not in a file they lack)."""
    problems = []
    text = path.read_text(encoding="utf-8")
    for number, line in lines_outside_code(text):
        if "../shared" in line or "DESIGN.md" in line:
            problems.append(f"{path.name}:{number}: points outside the repository: {line.strip()}")
        for target in re.findall(r"\]\(([^)\s]+)\)", line):
            if re.match(r"[a-z]+:", target):
                continue  # https:, mailto:
            file_part, _, fragment = target.partition("#")
            linked = (path.parent / file_part).resolve() if file_part else path
            if not linked.is_relative_to(ROOT) or not linked.exists():
                problems.append(f"{path.name}:{number}: {target}: no such file in the repository")
            elif fragment and linked.suffix == ".md":
                _, sections, _ = read_markdown(linked.read_text(encoding="utf-8"), linked.name)
                if fragment not in {anchor(s.headings[-1]) for s in sections if s.headings}:
                    problems.append(f"{path.name}:{number}: {target}: no such heading")
    assert not problems, "\n".join(problems)


def test_anchor_is_githubs() -> None:
    assert anchor("`[[monitors]]` and `[defaults]`") == "monitors-and-defaults"
    assert anchor("How the numbers are computed") == "how-the-numbers-are-computed"


def test_table_reader_sees_a_split_table_and_a_short_row() -> None:
    text = "| a | b |\n|---|---|\n| 1 | 2 |\n\n| 3 | 4 |\n\n| x | y |\n|---|---|\n| 5 |\n"
    tables, _, problems = read_markdown(text)
    assert [len(t.rows) for t in tables] == [2, 1]
    assert problems == [
        "README.md:5: a blank line splits the table of line 1: the rows after it render as a "
        "paragraph",
        "README.md:9: a row of 1 cells in a table of 2 columns (line 7); escape | as \\|",
    ]
    assert cells(r"| `a \| b` | c |") == ["`a | b`", "c"]


# --- configuration keys -------------------------------------------------------------------

SETTINGS = "`[settings]`"
EVERY_MONITOR = "`[defaults]`"
NOTIFIERS = "`[[notifiers]]`"
ALERTS = "Alerts"


def monitor_rows(kind: str) -> dict[str, str]:
    """The keys documented for one monitor type: its own table, or its row of the shared one."""
    rows = key_rows(f'type = "{kind}"')
    row = type_row(f'"{kind}"', kind)
    if row is not None:
        for span in code_spans(row.split(" | ", 1)[1]):
            rows.setdefault(span, row)
    return rows


def test_every_settings_key_is_documented_and_no_other() -> None:
    rows = key_rows(SETTINGS)
    keys = field_names(Settings)
    problems = [
        f"settings key `{k}` is not in the README's [settings] table" for k in keys - rows.keys()
    ]
    problems += [
        f"README's [settings] table documents `{k}`, which Settings does not have"
        for k in rows.keys() - keys
    ]
    problems += undocumented_nested("settings", Settings, rows)
    assert not problems, "\n".join(problems)


def test_every_monitor_key_of_every_type_is_documented_and_no_other() -> None:
    common = key_rows(EVERY_MONITOR)
    problems = []
    for kind, model in MONITOR_TYPES.items():
        own = monitor_rows(kind)
        if not own:
            problems.append(f"monitor type {kind!r} has no README table or row of its own")
        rows = own | common
        for key in sorted(field_names(model) - rows.keys()):
            problems.append(f"monitor key `{key}` of type {kind!r} is not in the README")
        problems += undocumented_nested(f"monitor ({kind})", model, rows)
        listed = set(key_rows(f'type = "{kind}"'))
        row = type_row(f'"{kind}"', kind)
        if row is not None:
            listed |= set(code_spans(without_parentheses(row.split(" | ", 1)[1])))
        for key in sorted(listed - field_names(model)):
            problems.append(f"README documents `{key}` for type {kind!r}, which it does not have")
    every = set().union(*(field_names(m) for m in MONITOR_TYPES.values()))
    for key in sorted(common.keys() - every - {"type"}):
        problems.append(f"README's monitor table documents `{key}`, which no monitor type has")
    assert not problems, "\n".join(problems)


def test_every_monitor_type_is_named_in_the_type_row() -> None:
    row = key_rows(EVERY_MONITOR).get("type", "")
    listed = set(code_spans(row.split(" | ", 1)[-1]))
    assert set(CHECKS) <= set(MONITOR_TYPES), "a check kind without a monitor model"
    assert listed == set(MONITOR_TYPES), (
        f"README `type` row {sorted(listed)} != code {sorted(MONITOR_TYPES)}"
    )


def test_every_notifier_type_and_key_is_documented_and_no_other() -> None:
    assert set(SENDERS) == set(NOTIFIER_TYPES), "a notifier type without a sender, or the reverse"
    problems = []
    base = field_names(NotifierBase) | {"type"}
    prose = set(code_spans(section_text(NOTIFIERS)))
    problems += [
        f"notifier key `{k}` is not in the README's [[notifiers]] section"
        for k in sorted(base - prose)
    ]
    documented = {row[0].strip("`") for t in tables_under(ALERTS, "type") for row in t.rows}
    for kind, model in NOTIFIER_TYPES.items():
        row = type_row(ALERTS, kind)
        if row is None:
            problems.append(f"notifier type {kind!r} has no row in the README's Alerts table")
            continue
        keys_cell = row.split(" | ")[1]
        for key in sorted(field_names(model) - base - set(code_spans(keys_cell))):
            problems.append(f"notifier key `{key}` of type {kind!r} is not in its README row")
        for key in sorted(set(code_spans(without_parentheses(keys_cell))) - field_names(model)):
            problems.append(
                f"README documents `{key}` for notifier {kind!r}, which it does not have"
            )
    problems += [
        f"README's Alerts table has type {k!r}, which the code does not"
        for k in sorted(documented - set(NOTIFIER_TYPES))
    ]
    assert not problems, "\n".join(problems)


def test_every_maintenance_key_is_documented() -> None:
    prose = set(code_spans(section_text("`[[maintenance]]`")))
    assert sorted(field_names(Maintenance) - prose) == []


DEDICATED = {"settings", "defaults", "monitors", "notifiers", "maintenance"}  # tests above


def section_model(section: str) -> type[BaseModel] | None:
    """The model of a `Config` field named after a top-level section (`agents` -> Agent)."""
    hint = typing.get_type_hints(Config).get(section)
    for candidate in (hint, *typing.get_args(hint)):
        if isinstance(candidate, type) and issubclass(candidate, BaseModel):
            return candidate
    return None


def test_every_config_section_and_its_keys_are_documented() -> None:
    problems = []
    for section in TOP_LEVEL:
        marker = next((m for m in (f"`[[{section}]]`", f"`[{section}]`") if section_text(m)), None)
        if marker is None:
            problems.append(f"config section {section!r} has no README heading naming it")
            continue
        model = None if section in DEDICATED else section_model(section)
        if model is None:
            continue
        named = set(code_spans(section_text(marker)))
        for key in sorted(field_names(model) - named):
            problems.append(f"{section} key `{key}` is not in the README's {marker} section")
    assert not problems, "\n".join(problems)


def test_every_environment_variable_is_documented() -> None:
    read = set()
    for path in [*(ROOT / "prober").rglob("*.py"), *(ROOT / "statuspage").rglob("*.py")]:
        read |= set(
            re.findall(r"""(?:\.get\(|\[|getenv\()\s*["'](PROBER_\w+)["']""", path.read_text())
        )
    assert read >= {"PROBER_CONFIG", "PROBER_DATABASE", "PROBER_LISTEN"}
    text = README.read_text(encoding="utf-8")
    assert sorted(v for v in read if f"`{v}`" not in text and f"`${v}`" not in text) == []


# --- the command line -----------------------------------------------------------------------

COMMON_OPTIONS = {"-h", "--help", "-c", "--config"}


def subcommands() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    raise AssertionError("prober has no subcommands")


def command_rows() -> dict[str, str]:
    rows: dict[str, str] = {}
    for table in TABLES:
        if table.header[0] != "command":
            continue
        for row in table.rows:
            for span in code_spans(row[0]):
                name = re.match(r"prober ([a-z][a-z-]*)", span)
                if name:
                    rows[name.group(1)] = row[0]
    return rows


def test_every_command_and_option_is_documented_and_no_other() -> None:
    rows = command_rows()
    problems = []
    for name, parser in subcommands().items():
        if name not in rows:
            problems.append(f"`prober {name}` is not in the README's Commands table")
            continue
        options = {o for a in parser._actions for o in a.option_strings} - COMMON_OPTIONS
        for action in parser._actions:
            names = set(action.option_strings) - COMMON_OPTIONS
            if names and not any(
                re.search(rf"(?<![\w-]){re.escape(o)}(?![\w-])", rows[name]) for o in names
            ):
                problems.append(
                    f"`prober {name}` option {'/'.join(sorted(names))} is not in its README row"
                )
        for written in re.findall(r"(?<![\w-])(--?[a-z][\w-]*)", rows[name]):
            if written not in options | COMMON_OPTIONS:
                problems.append(
                    f"README's `prober {name}` row names {written}, which it does not take"
                )
    problems += [
        f"README documents `prober {n}`, which does not exist"
        for n in sorted(rows.keys() - subcommands().keys())
    ]
    assert not problems, "\n".join(problems)


# --- the routes ---------------------------------------------------------------------------


def _expand(path: str) -> list[str]:
    """`/x/{a,b}.json` -> both; `{id}`, `{YYYY-MM}` -> a sample value; the query dropped."""
    path = path.split("?", 1)[0]
    alternation = re.search(r"\{([^{}]*,[^{}]*)\}", path)
    if alternation:
        return [
            p
            for choice in alternation.group(1).split(",")
            for p in _expand(path[: alternation.start()] + choice + path[alternation.end() :])
        ]
    return [re.sub(r"\{[^{}]+\}", "x1", path)]


def documented_paths() -> dict[str, str]:
    """Every path in a README route table (first column `route` or `URL`) -> as written.
    A name without a leading slash is relative to the path before it (`status.json`)."""
    paths: dict[str, str] = {}
    for table in TABLES:
        if table.header[0] not in ("route", "URL"):
            continue
        for row in table.rows:
            base = "/"
            for span in code_spans(row[0]):
                if span.startswith("/"):
                    full = base = span
                elif re.fullmatch(r"[\w{},.-][\w{},./-]*", span):
                    full = base.split("?", 1)[0].rsplit("/", 1)[0] + "/" + span
                else:
                    continue
                for path in _expand(full):
                    paths[path] = span
    return paths


@pytest.fixture
def apps(tmp_path: pathlib.Path) -> list[web.Application]:
    path = tmp_path / "monitors.toml"
    path.write_text('[settings]\ntitle = "T"\n')
    config = load_config(path, env={})
    publisher = Publisher(config)
    return [
        create_app(config, Health(lambda: True, lambda: True), publisher=publisher),
        create_metrics_app(publisher),
    ]


def _matches(resource: web.AbstractResource, path: str) -> bool:
    """Whether the resource serves `path`: plain, dynamic (`{id}`) and static resources."""
    info = resource.get_info()
    if "path" in info:
        return info["path"] == path
    if "pattern" in info:
        return bool(info["pattern"].fullmatch(path))
    return path.startswith(f"{info['prefix']}/")


def test_every_route_is_documented_and_no_other(apps: list[web.Application]) -> None:
    resources = [r for app in apps for r in app.router.resources()]
    paths = documented_paths()
    problems = []
    for resource in resources:
        if not any(_matches(resource, p) for p in paths):
            problems.append(f"route {resource.canonical} is not in a README route table")
    for path, written in paths.items():
        if not any(_matches(r, path) for r in resources):
            problems.append(
                f"README documents route `{written}` ({path}), which no listener serves"
            )
    assert not problems, "\n".join(problems)


def test_route_paths_expand() -> None:
    assert _expand("/reports/{YYYY-MM}.{json,csv,html}") == [
        "/reports/x1.json",
        "/reports/x1.csv",
        "/reports/x1.html",
    ]
    assert _expand("/badge/{id}/uptime.svg?window=24h|7d") == ["/badge/x1/uptime.svg"]
    assert list(itertools.islice(documented_paths(), 1)) == ["/"]
