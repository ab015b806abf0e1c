"""Table tests for the config's building blocks: durations, sizes, ${VAR}, key lines, conditions."""

from __future__ import annotations

import re
import textwrap
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from prober.config.conditions import parse_json_assertion, parse_status_set
from prober.config.durations import format_duration, parse_duration, parse_size
from prober.config.envsubst import MissingVariable, interpolate, substitute
from prober.config.tomlpos import KeyLines

# --- durations and sizes ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("500ms", 0.5),
        ("1ms", 0.001),
        ("30s", 30.0),
        ("1.5s", 1.5),
        ("5m", 300.0),
        ("1h", 3600.0),
        ("1h30m", 5400.0),
        (" 1h 30m ", 5400.0),
        ("1d", 86400.0),
        ("1d2h3m4s", 93784.0),
        ("2m500ms", 120.5),
        ("0s", 0.0),
    ],
)
def test_parse_duration(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (60, 'a duration needs a unit, such as "30s", "5m" or "1h"; got 60'),
        (1.5, 'a duration needs a unit, such as "30s", "5m" or "1h"; got 1.5'),
        (True, 'a duration needs a unit, such as "30s", "5m" or "1h"; got True'),
        (None, 'a duration needs a unit, such as "30s", "5m" or "1h"; got None'),
        ("60", "'60' is not a duration"),
        ("", "'' is not a duration"),
        ("10 seconds", "'10 seconds' is not a duration"),
        ("5x", "'5x' is not a duration"),
        ("m5", "'m5' is not a duration"),
        ("-5s", "'-5s' is not a duration"),
        ("5s!", "'5s!' is not a duration"),
        (".5s", "'.5s' is not a duration"),
    ],
)
def test_parse_duration_refuses(value: object, message: str) -> None:
    with pytest.raises(ValueError, match="^" + re.escape(message)):
        parse_duration(value)


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0, "0ms"),
        (0.0004, "0ms"),
        (0.5, "500ms"),
        (0.001, "1ms"),
        (0.9996, "1s"),
        (1, "1s"),
        (1.5, "1.5s"),
        (2.37, "2.37s"),
        (30, "30s"),
        (60, "1m"),
        (60.5, "1m0.5s"),
        (90, "1m30s"),
        (3600, "1h"),
        (5400, "1h30m"),
        (86400, "1d"),
        (86401, "1d1s"),
        (93784, "1d2h3m4s"),
    ],
)
def test_format_duration(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text


@given(st.integers(min_value=0, max_value=10 * 365 * 86400))
def test_format_duration_round_trips_whole_seconds(seconds: int) -> None:
    text = format_duration(seconds)
    assert parse_duration(text) == seconds
    assert format_duration(parse_duration(text)) == text


_UNITS = st.sampled_from(["d", "h", "m", "s"])


@given(st.lists(st.tuples(st.integers(min_value=0, max_value=5000), _UNITS), min_size=1))
def test_parsed_whole_second_durations_round_trip(parts: list[tuple[int, str]]) -> None:
    text = "".join(f"{n}{unit}" for n, unit in parts)
    seconds = parse_duration(text)
    assert parse_duration(format_duration(seconds)) == seconds
    assert format_duration(parse_duration(format_duration(seconds))) == format_duration(seconds)


@given(st.integers(min_value=0, max_value=10**9))
def test_format_duration_keeps_milliseconds(millis: int) -> None:
    assert round(parse_duration(format_duration(millis / 1000)) * 1000) == millis


@pytest.mark.parametrize(
    ("value", "size"),
    [
        (1, 1),
        (1048576, 1048576),
        ("10", 10),
        ("10B", 10),
        ("64KB", 64_000),
        ("64KiB", 65_536),
        ("64 KiB", 65_536),
        ("1MB", 1_000_000),
        ("1MiB", 1_048_576),
        ("1mib", 1_048_576),
        ("2GB", 2_000_000_000),
        ("1GiB", 1 << 30),
    ],
)
def test_parse_size(value: object, size: int) -> None:
    assert parse_size(value) == size


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (0, "must be more than 0 bytes"),
        (-1, "must be more than 0 bytes"),
        (True, 'expected a size such as 1048576 or "1MiB"; got True'),
        ("0", "'0' is not a size"),
        ("0MiB", "'0MiB' is not a size"),
        ("1.5MiB", "'1.5MiB' is not a size"),
        ("lots", "'lots' is not a size"),
        ("1TB", "'1TB' is not a size"),
        (1.5, "1.5 is not a size"),
        (None, "None is not a size"),
    ],
)
def test_parse_size_refuses(value: object, message: str) -> None:
    with pytest.raises(ValueError, match="^" + re.escape(message)):
        parse_size(value)


# --- ${VAR} ------------------------------------------------------------------------------

ENV = {"A": "alpha", "EMPTY": "", "URL": "http://127.0.0.1:9/x", "lower_1": "low"}


@pytest.mark.parametrize(
    ("text", "result"),
    [
        ("plain", "plain"),
        ("${A}", "alpha"),
        ("pre-${A}-post", "pre-alpha-post"),
        ("${A}${A}", "alphaalpha"),
        ("${lower_1}", "low"),
        ("${A:-default}", "alpha"),
        ("${MISSING:-default}", "default"),
        ("${MISSING:-}", ""),
        ("${EMPTY:-default}", "default"),  # set but empty counts as unset with a default
        ("${EMPTY}", ""),  # set but empty, no default: the empty value
        ("${MISSING:-http://127.0.0.1:9}", "http://127.0.0.1:9"),
        ("${MISSING:-a b}", "a b"),
        ("${URL}/health", "http://127.0.0.1:9/x/health"),
        ("$${A}", "${A}"),
        ("$${MISSING}", "${MISSING}"),
        ("$${A:-x}", "${A:-x}"),
        ("$$${A}", "$${A}"),  # a lone "$", then the "$${" escape
        ("$A", "$A"),
        ("$", "$"),
        ("${1A}", "${1A}"),  # not a variable name: left alone
        ("${A:-x}}", "alpha}"),
        ("cost: $5", "cost: $5"),
    ],
)
def test_substitute(text: str, result: str) -> None:
    assert substitute(text, ENV, ("k",)) == result


def test_substitute_missing_variable() -> None:
    with pytest.raises(MissingVariable) as caught:
        substitute("Bearer ${TOKEN}", ENV, ("monitors", 0, "headers", "Authorization"))
    assert caught.value.name == "TOKEN"
    assert caught.value.path == ("monitors", 0, "headers", "Authorization")
    assert str(caught.value) == "environment variable TOKEN is not set (use ${TOKEN:-default})"


def test_substitute_does_not_rescan_values() -> None:
    assert substitute("${X}", {"X": "${A}"}, ()) == "${A}"
    assert substitute("${X}", {"X": "$${A}"}, ()) == "$${A}"


def test_interpolate_walks_tables_and_arrays_and_collects_every_missing() -> None:
    data: dict[str, Any] = {
        "settings": {"title": "${A}", "sla_target": 99.9, "public_reports": True},
        "monitors": [
            {"id": "a", "headers": {"X": "${NOPE}"}, "contains": ["${A}", "${ALSO_NOPE}"]},
            {"id": "b", "port": 80, "url": "$${A}"},
        ],
        "${A}": "keys are not interpolated",
    }
    out, missing = interpolate(data, ENV)
    assert out == {
        "settings": {"title": "alpha", "sla_target": 99.9, "public_reports": True},
        "monitors": [
            {"id": "a", "headers": {"X": "${NOPE}"}, "contains": ["alpha", "${ALSO_NOPE}"]},
            {"id": "b", "port": 80, "url": "${A}"},
        ],
        "${A}": "keys are not interpolated",
    }
    assert [(m.path, m.name) for m in missing] == [
        (("monitors", 0, "headers", "X"), "NOPE"),
        (("monitors", 0, "contains", 1), "ALSO_NOPE"),
    ]
    assert data["settings"]["title"] == "${A}"  # the input is not changed


# --- tomlpos.KeyLines --------------------------------------------------------------------

DOC = textwrap.dedent(
    '''\
    # [[monitors]] in a comment is not a table
    [settings]
    title = "Status [beta]"  # [not a table]
    "quoted key" = 1
    site.name = "dotted"

    [[monitors]]
    id = "api"
    headers = { Authorization = "Bearer x", Accept = "[json]" }
    json = [
      'status == "ok"',
      "fake = 1",
      """
    [fake_table]
    """,
    ]
    body = """
    [[monitors]]
    id = "not a monitor"
    """
    pattern = \'\'\'
    [also_fake]
    \'\'\'
    escaped = "a \\" [ b"
    basic_auth.username = "u"
    nested = { a = [1,
      2], b = { c = 3 } }
    after = true

    [[monitors]]
    id = "db"

    [monitors.headers]
    X-Token = "t"

    [ monitors . basic_auth ]
    password = "p"

    [[notifiers]]
    id = "ops"

    [[monitors]]
    id = "third"

    [[monitors.steps]]
    name = "one"

    [[monitors.steps]]
    name = "two"
    '''
)


@pytest.mark.parametrize(
    ("path", "line"),
    [
        (("settings",), 2),
        (("settings", "title"), 3),
        (("settings", "quoted key"), 4),
        (("settings", "site"), 5),
        (("settings", "site", "name"), 5),
        (("monitors", 0), 7),
        (("monitors", 0, "id"), 8),
        (("monitors", 0, "headers"), 9),
        (("monitors", 0, "headers", "Authorization"), 9),  # inside an inline table: its key
        (("monitors", 0, "json"), 10),
        (("monitors", 0, "json", 1), 10),  # inside a multi-line array: the array's key
        (("monitors", 0, "body"), 17),
        (("monitors", 0, "pattern"), 21),
        (("monitors", 0, "escaped"), 24),
        (("monitors", 0, "basic_auth"), 25),
        (("monitors", 0, "basic_auth", "username"), 25),
        (("monitors", 0, "basic_auth", "password"), 25),
        (("monitors", 0, "nested", "b", "c"), 26),
        (("monitors", 0, "after"), 28),
        (("monitors", 0, "unknown"), 7),  # not in the file: the enclosing table
        (("monitors", 1), 30),
        (("monitors", 1, "id"), 31),
        (("monitors", 1, "headers"), 33),
        (("monitors", 1, "headers", "X-Token"), 34),
        (("monitors", 1, "basic_auth"), 36),
        (("monitors", 1, "basic_auth", "password"), 37),
        (("notifiers", 0), 39),
        (("notifiers", 0, "id"), 40),
        (("monitors", 2), 42),
        (("monitors", 2, "id"), 43),
        (("monitors", 2, "steps", 0), 45),
        (("monitors", 2, "steps", 0, "name"), 46),
        (("monitors", 2, "steps", 1, "name"), 49),
        (("maintenance", 0), 1),  # nothing of it in the file: line 1
        ((), 1),
    ],
)
def test_key_lines(path: tuple[str | int, ...], line: int) -> None:
    assert KeyLines(DOC).line_of(path) == line


def test_key_lines_doc_is_valid_toml() -> None:
    import tomllib

    data = tomllib.loads(DOC)
    assert [m["id"] for m in data["monitors"]] == ["api", "db", "third"]
    assert "fake_table" not in data
    assert "also_fake" not in data


def test_key_lines_fake_tables_inside_strings_are_not_tables() -> None:
    lines = KeyLines(DOC)
    assert lines.line_of(("fake_table",)) == 1
    assert lines.line_of(("also_fake",)) == 1
    assert lines.line_of(("monitors", 0, "fake")) == 7


def test_key_lines_first_occurrence_wins() -> None:
    text = "[settings]\ntitle = 'a'\n\n[settings]\nlanguage = 'en'\n"
    lines = KeyLines(text)
    assert lines.line_of(("settings",)) == 1
    assert lines.line_of(("settings", "language")) == 5


def test_key_lines_crlf() -> None:
    lines = KeyLines("[[monitors]]\r\nid = 'a'\r\n\r\n[[monitors]]\r\nid = 'b'\r\n")
    assert lines.line_of(("monitors", 1, "id")) == 5


# --- conditions: status sets ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "inside", "outside", "text"),
    [
        ([200], [200], [199, 201, 204, 404], "[200]"),
        (200, [200], [201], "[200]"),
        ("2xx", [200, 250, 299], [199, 300], "[2xx]"),
        (["2XX"], [204], [300], "[2XX]"),
        (["200-299"], [200, 299], [199, 300], "[200-299]"),
        (["200 - 204", "404"], [200, 204, 404], [205, 403], "[200 - 204, 404]"),
        ([200, "3xx", 410], [200, 301, 399, 410], [201, 400, 409], "[200, 3xx, 410]"),
        (["5xx"], [500, 599], [499], "[5xx]"),
        (["1xx"], [100, 101], [200], "[1xx]"),
    ],
)
def test_status_set(spec: object, inside: list[int], outside: list[int], text: str) -> None:
    statuses = parse_status_set(spec)
    for status in inside:
        assert status in statuses
    for status in outside:
        assert status not in statuses
    assert statuses.text == text


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (["2xy"], '\'2xy\' is not a status: use 200, "2xx" or "200-299"'),
        ([700], "700 is not an HTTP status code (100-599)"),
        ([99], "99 is not an HTTP status code (100-599)"),
        (["6xx"], "'6xx' is not a status"),
        (["299-200"], "'299-200': the range is backwards"),
        ([True], "True is not a status code"),
        ([1.5], "1.5 is not a status"),
        ([], "[] is not a status"),
        ([200, None], "None is not a status"),
    ],
)
def test_status_set_refuses(spec: object, message: str) -> None:
    with pytest.raises(ValueError, match="^" + re.escape(message)):
        parse_status_set(spec)


# --- conditions: JSON assertions -------------------------------------------------------------

DOCUMENT = {
    "status": "healthy",
    "ok": True,
    "count": 3,
    "ratio": 0.5,
    "nothing": None,
    "services": {"database": {"response_time_ms": 120, "up": True}},
    "items": [{"id": 1, "name": "a"}, {"id": 2, "name": "b"}],
    "version": "1.10",
}


@pytest.mark.parametrize(
    ("assertion", "ok", "saw", "wanted"),
    [
        ('status == "healthy"', True, '"healthy"', '== "healthy"'),
        ('status == "sick"', False, '"healthy"', '== "sick"'),
        ('status != "sick"', True, '"healthy"', '!= "sick"'),
        ('status != "healthy"', False, '"healthy"', '!= "healthy"'),
        ("count == 3", True, "3", "== 3"),
        ("count == 3.0", True, "3", "== 3.0"),
        ("count < 5", True, "3", "< 5"),
        ("count < 3", False, "3", "< 3"),
        ("count <= 3", True, "3", "<= 3"),
        ("count > 3", False, "3", "> 3"),
        ("count >= 3", True, "3", ">= 3"),
        ("ratio < 1", True, "0.5", "< 1"),
        ("count>2", True, "3", "> 2"),
        ('version < "2"', True, '"1.10"', '< "2"'),  # strings compare as strings
        ("version < 2", False, '"1.10"', "< 2"),  # a string is not less than a number
        ("status < 5", False, '"healthy"', "< 5"),
        ("services.database.response_time_ms < 500", True, "120", "< 500"),
        ("services.database.response_time_ms < 100", False, "120", "< 100"),
        ("$.services.database.up == true", True, "true", "== true"),
        ("items[0].id == 1", True, "1", "== 1"),
        ('items[1].name == "b"', True, '"b"', '== "b"'),
        ("items.1.id == 2", True, "2", "== 2"),
        ("items[5].id == 1", False, "items[5].id missing", "== 1"),
        ("items.5.id == 1", False, "items.5.id missing", "== 1"),
        ("missing.path == 1", False, "missing.path missing", "== 1"),
        ("status.deeper == 1", False, "status.deeper missing", "== 1"),
        ("count[0] == 1", False, "count[0] missing", "== 1"),
        ("nothing == null", True, "null", "== null"),
        ("absent == null", False, "absent missing", "== null"),
        (
            'items[0] == {"id": 1, "name": "a"}',
            True,
            '{"id": 1, "name": "a"}',
            '== {"id": 1, "name": "a"}',
        ),
        # bool is not an int in JSON
        ("ok == true", True, "true", "== true"),
        ("ok == 1", False, "true", "== 1"),
        ("ok != 1", True, "true", "!= 1"),
        ("count == true", False, "3", "== true"),
        ("count != true", True, "3", "!= true"),
        # exists / not exists
        ("status exists", True, "present", "present"),
        ("nothing exists", True, "present", "present"),  # null is present
        ("absent exists", False, "missing", "present"),
        ("items[1] exists", True, "present", "present"),
        ("items[2] exists", False, "missing", "present"),
        ("absent not exists", True, "missing", "missing"),
        ("status not exists", False, "present", "missing"),
        ("absent  not   exists", True, "missing", "missing"),
        ("$ exists", True, "present", "present"),
    ],
)
def test_json_assertion_judge(assertion: str, ok: bool, saw: str, wanted: str) -> None:
    result = parse_json_assertion(assertion).judge(DOCUMENT)
    assert (result.ok, result.saw, result.wanted) == (ok, saw, wanted)
    assert result.name == f"json {assertion}"
    assert result.describe() == f"json {assertion}: saw {saw}, wanted {wanted}"


def test_json_assertion_on_a_top_level_array() -> None:
    check = parse_json_assertion("$[1] == 20")
    assert check.path == (1,)
    assert check.judge([10, 20]).ok
    assert not check.judge({"1": 20}).ok


def test_json_assertion_shows_long_values_shortened() -> None:
    result = parse_json_assertion('s == "short"').judge({"s": "x" * 200})
    assert not result.ok
    assert len(result.saw) == 80
    assert result.saw.endswith("…")


@pytest.mark.parametrize(
    ("assertion", "path", "op", "expected"),
    [
        ('status == "ok"', ("status",), "==", "ok"),
        ("a.b.c != 1", ("a", "b", "c"), "!=", 1),
        ("$.a <= 1.5", ("a",), "<=", 1.5),
        ("a[0][1].b >= -2", ("a", 0, 1, "b"), ">=", -2),
        ("a.0 > 0", ("a", "0"), ">", 0),
        ("a-b_c exists", ("a-b_c",), "exists", None),
        ("a not exists", ("a",), "not exists", None),
        ("$ exists", (), "exists", None),
        ('a == ["x", 1]', ("a",), "==", ["x", 1]),
        ('a == "with spaces and == inside"', ("a",), "==", "with spaces and == inside"),
    ],
)
def test_parse_json_assertion(
    assertion: str, path: tuple[str | int, ...], op: str, expected: object
) -> None:
    check = parse_json_assertion(assertion)
    assert (check.path, check.op, check.expected, check.text) == (path, op, expected, assertion)


@pytest.mark.parametrize(
    ("assertion", "message"),
    [
        ("status == healthy", "'status == healthy': healthy is not a JSON value (strings need"),
        ("status == 'ok'", "\"status == 'ok'\": 'ok' is not a JSON value"),
        ("status", "'status' is not an assertion; write `path op value`"),
        ("== 1", "'== 1' is not an assertion"),
        ("status = 1", "'status = 1' is not an assertion"),
        ("status ~= 1", "'status ~= 1' is not an assertion"),
        ("", "'' is not an assertion"),
        ("a..b == 1", "'a..b == 1': cannot read the path 'a..b'"),
        (".a == 1", "'.a == 1': cannot read the path '.a'"),
        ("a[x] == 1", "'a[x] == 1': cannot read the path 'a[x]'"),
        ("a[-1] == 1", "'a[-1] == 1': cannot read the path 'a[-1]'"),
        ("a < null", "'a < null': < compares numbers or strings, not null"),
        ("a > [1]", "'a > [1]': > compares numbers or strings, not [1]"),
        ("a < true", "'a < true': < compares numbers or strings, not true"),
        ("a >= false", "'a >= false': >= compares numbers or strings, not false"),
    ],
)
def test_parse_json_assertion_refuses(assertion: str, message: str) -> None:
    with pytest.raises(ValueError, match="^" + re.escape(message)):
        parse_json_assertion(assertion)
