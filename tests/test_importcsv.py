"""The import file reader: good files round-trip, every error has its message and line.

The parse rate is measured by hand, not by a timed test (this generates 1,000,000 rows of
100 monitors, then parses them three times; at 45 MB the file goes to worker processes,
so time it by the wall clock; importcsv._parse_single(path, known, lambda *_: None) gives
the single-process rate)::

    .venv/bin/python - <<'EOF'
    import datetime as dt, pathlib, random, time
    from prober.importcsv import parse
    path, rnd = pathlib.Path("/tmp/rows.csv"), random.Random(1)
    t0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    with path.open("w", newline="") as f:
        f.write("monitor,timestamp,outcome,latency_ms,error\\r\\n")
        for i in range(1_000_000):
            at = t0 + dt.timedelta(seconds=60 * (i // 100) + (i % 100) * 0.5)
            stamp = at.strftime("%Y-%m-%dT%H:%M:%S.") + f"{at.microsecond // 1000:03d}Z"
            if rnd.random() < 0.99:
                f.write(f"svc-{i % 100:03d},{stamp},up,{rnd.uniform(5, 300):.3f},\\r\\n")
            else:
                f.write(f"svc-{i % 100:03d},{stamp},down,,status 503 not in [200]\\r\\n")
    known = [f"svc-{i:03d}" for i in range(100)]
    for _ in range(3):
        start = time.perf_counter()
        parsed = parse(path, known)
        print(f"{parsed.count / (time.perf_counter() - start):,.0f} rows/s")
    EOF
"""

from __future__ import annotations

import bisect
import codecs
import collections
import datetime as dt
import itertools
import os
import pathlib
import random
import re
from typing import NoReturn

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from prober import importcsv
from prober.importcsv import (
    HEADER,
    MAX_ERRORS,
    NO_LATENCY,
    Parsed,
    RowError,
    _common_pieces,
    _isoformat_ms,
    parse,
)

KNOWN = ("api", "web", "db-primary")
T0 = "2026-11-01T00:00:00Z"
T0_MS = 1_793_491_200_000  # 2026-11-01T00:00:00Z
GOOD = f"api,{T0},up,12.5,"


def _parse(tmp_path: pathlib.Path, content: str | bytes) -> Parsed:
    path = tmp_path / "results.csv"
    if isinstance(content, str):
        path.write_text(content, encoding="utf-8", newline="")
    else:
        path.write_bytes(content)
    return parse(path, KNOWN)


def _rows(parsed: Parsed, monitor: str) -> list[tuple[int, int, int | None, str | None]]:
    return list(parsed.rows[monitor].rows())


# --- good files --------------------------------------------------------------------------


def test_good_file_round_trips(tmp_path: pathlib.Path) -> None:
    long_error = "x" * 600
    parsed = _parse(
        tmp_path,
        f"{HEADER}\n"
        "api,2026-11-01T00:02:00Z,down,,connection refused\n"
        "api,2026-11-01T09:00:00+09:00,up,12.5,\n"  # T0, written in Seoul time
        "api,2026-11-01T00:01:00.9999Z,degraded,1500.0006,slow\n"
        'web,2026-10-31T19:00:00-05:00,unknown,,"canaries down, too"\n'  # T0 again
        f'web,2026-11-01T00:00:30Z,down,0,"HTTP 503\nbody: {long_error}"\n'
        f"api,{T0},up,7,\n",  # the same monitor and time as line 3: this one wins
    )
    assert parsed.errors == []
    assert parsed.count == 6
    assert _rows(parsed, "api") == [
        (T0_MS, 1, 7000, None),
        (T0_MS + 60_999, 2, 1_500_001, "slow"),  # .9999 s floors to 999 ms; µs round
        (T0_MS + 120_000, 3, None, "connection refused"),
    ]
    web = _rows(parsed, "web")
    assert web[0] == (T0_MS, 0, None, "canaries down, too")
    ts_ms, code, latency_us, error = web[1]
    assert (ts_ms, code, latency_us) == (T0_MS + 30_000, 3, 0)
    assert error is not None and len(error) == 500
    assert error.startswith("HTTP 503\nbody: xxx") and error.endswith("x…")
    assert set(parsed.rows) == {"api", "web"}


def test_columns_are_compact_arrays(tmp_path: pathlib.Path) -> None:
    parsed = _parse(tmp_path, f"{HEADER}\n{GOOD}\napi,2026-11-01T00:01:00Z,down,,\n")
    series = parsed.rows["api"]
    assert len(series) == 2
    assert (series.ts_ms.typecode, series.outcome.typecode, series.latency_us.typecode) == (
        "q",
        "B",
        "q",
    )
    assert list(series.latency_us) == [12_500, NO_LATENCY]
    assert series.errors == {}


def test_sorting_and_duplicates_keep_the_last_row_of_each_time(tmp_path: pathlib.Path) -> None:
    lines = [
        f"api,2026-11-01T00:{minute:02d}:00Z,down,,run {n}"
        for n, minute in enumerate([5, 1, 3, 1, 5, 2, 1])
    ]
    parsed = _parse(tmp_path, HEADER + "\n" + "\n".join(lines) + "\n")
    assert [(ts - T0_MS) // 60_000 for ts, *_ in _rows(parsed, "api")] == [1, 2, 3, 5]
    assert [error for *_, error in _rows(parsed, "api")] == ["run 6", "run 5", "run 2", "run 4"]
    assert parsed.count == 7


def test_bom_crlf_and_blank_lines(tmp_path: pathlib.Path) -> None:
    content = f"\ufeff{HEADER}\r\n{GOOD}\r\n\r\napi,2026-11-01T00:01:00Z,down,,refused\r\n\r\n"
    parsed = _parse(tmp_path, content.encode())
    assert parsed.errors == []
    assert parsed.count == 2  # blank lines are not rows
    assert _rows(parsed, "api") == [
        (T0_MS, 1, 12_500, None),
        (T0_MS + 60_000, 3, None, "refused"),
    ]


def test_old_mac_line_ends_and_a_missing_last_line_end(tmp_path: pathlib.Path) -> None:
    parsed = _parse(tmp_path, f"{HEADER}\r{GOOD}\rapi,2026-11-01T00:01:00Z,down,,gone")
    assert parsed.errors == []
    assert _rows(parsed, "api")[1] == (T0_MS + 60_000, 3, None, "gone")


def test_header_only_and_quoted_header(tmp_path: pathlib.Path) -> None:
    assert _parse(tmp_path, f"{HEADER}\n") == Parsed({}, 0, [])
    quoted = '"monitor","timestamp","outcome","latency_ms","error"\n'
    assert _parse(tmp_path, quoted + GOOD + "\n").count == 1


@pytest.mark.parametrize(
    ("stamp", "ts_ms"),
    [
        ("0001-01-01T00:00:00Z", -62_135_596_800_000),
        ("0001-01-01T00:30:00+00:30", -62_135_596_800_000),
        ("9999-12-31T23:59:59.999Z", 253_402_300_799_999),
        ("9999-12-31T23:59:59.999999Z", 253_402_300_799_999),
        ("1969-12-31T23:59:59.9995Z", -1),  # floored, not rounded toward zero
        ("2026-11-01 09:00:00+09:00", T0_MS),
        ("2026-11-01T00:00:00.000+00:00", T0_MS),
        ("2026-11-01T00:00:00-00:00", T0_MS),
        ("20261101T090000+0900", T0_MS),  # basic format: the fromisoformat path
        ("2026-11-01T09:00+09:00", T0_MS),
        ("2026-11-01T00:00:00.0001234Z", T0_MS),
    ],
)
def test_timestamps(tmp_path: pathlib.Path, stamp: str, ts_ms: int) -> None:
    parsed = _parse(tmp_path, f"{HEADER}\napi,{stamp},up,,\n")
    assert parsed.errors == []
    assert _rows(parsed, "api") == [(ts_ms, 1, None, None)]


# --- errors ------------------------------------------------------------------------------

ALLOWED = "up, degraded, down, unknown"
NOT_ISO = "is not an ISO 8601 date-time with an offset"
FIELDS = "expected 5 fields (monitor,timestamp,outcome,latency_ms,error)"


@pytest.mark.parametrize(
    ("row", "message"),
    [
        (f"api,{T0},up,1", f"{FIELDS}, got 4"),
        ("api", f"{FIELDS}, got 1"),
        ("   ", f"{FIELDS}, got 1"),
        (
            f"api,{T0},down,,refused, port 80",
            f"{FIELDS}, got 6; quote an error text that holds commas",
        ),
        (
            f"apii,{T0},up,1,",
            "monitor: no monitor has id 'apii' in the config (did you mean 'api'?)",
        ),
        (f"db,{T0},up,1,", "monitor: no monitor has id 'db' in the config"),
        (f"API,{T0},up,1,", "monitor: no monitor has id 'API' in the config (did you mean 'api'?)"),
        (f",{T0},up,1,", "monitor: empty"),
        ("api,2026-13-01T00:00:00Z,up,1,", f"timestamp: '2026-13-01T00:00:00Z' {NOT_ISO}"),
        ("api,2026-02-29T00:00:00Z,up,1,", f"timestamp: '2026-02-29T00:00:00Z' {NOT_ISO}"),
        ("api,2026-11-01T24:00:00Z,up,1,", f"timestamp: '2026-11-01T24:00:00Z' {NOT_ISO}"),
        ("api,2026-11-01T00:00:60Z,up,1,", f"timestamp: '2026-11-01T00:00:60Z' {NOT_ISO}"),
        ("api,2026-11-01T00:00:00z,up,1,", f"timestamp: '2026-11-01T00:00:00z' {NOT_ISO}"),
        (
            "api,2026-11-01T00:00:00+24:00,up,1,",
            f"timestamp: '2026-11-01T00:00:00+24:00' {NOT_ISO}",
        ),
        ("api,1793491200000,up,1,", f"timestamp: '1793491200000' {NOT_ISO}"),
        ("api,,up,1,", f"timestamp: '' {NOT_ISO}"),
        (
            "api,2026-11-01T00:00:00,up,1,",
            "timestamp: '2026-11-01T00:00:00' has no UTC offset; add Z or +HH:MM",
        ),
        (
            "api,2026-11-01,up,1,",
            "timestamp: '2026-11-01' has no UTC offset; add Z or +HH:MM",
        ),
        (
            "api,0001-01-01T00:00:00+01:00,up,1,",
            "timestamp: '0001-01-01T00:00:00+01:00' is outside the years 0001 to 9999 in UTC",
        ),
        (
            "api,9999-12-31T23:30:00-01:00,up,1,",
            "timestamp: '9999-12-31T23:30:00-01:00' is outside the years 0001 to 9999 in UTC",
        ),
        (f"api,{T0},UP,1,", f"outcome: 'UP' is not one of {ALLOWED}; use lower case"),
        (f"api,{T0},Down,1,", f"outcome: 'Down' is not one of {ALLOWED}; use lower case"),
        (f"api,{T0},ok,1,", f"outcome: 'ok' is not one of {ALLOWED}"),
        (f"api,{T0},,1,", f"outcome: '' is not one of {ALLOWED}"),
        (f"api,{T0},up,fast,", "latency_ms: 'fast' is not a number"),
        (f"api,{T0},up,12ms,", "latency_ms: '12ms' is not a number"),
        (f"api,{T0},up,nan,", "latency_ms: 'nan' is not a finite number"),
        (f"api,{T0},up,inf,", "latency_ms: 'inf' is not a finite number"),
        (f"api,{T0},up,-Infinity,", "latency_ms: '-Infinity' is not a finite number"),
        (f"api,{T0},up,-0.5,", "latency_ms: '-0.5' is negative"),
        (f"api,{T0},up,1e13,", "latency_ms: '1e13' is more than 1,000,000,000,000"),
        (f"api,{T0},down,,a\x00b", "error: holds a NUL character"),
        (f'api,{T0},down,,"a\x00b"', "error: holds a NUL character"),
    ],
)
def test_row_errors(tmp_path: pathlib.Path, row: str, message: str) -> None:
    # The good rows before it fill the caches, so the bad row meets the hot path first.
    warm = f"{GOOD}\napi,2026-11-01T00:00:00.5Z,down,,refused\n"
    parsed = _parse(tmp_path, f"{HEADER}\n{warm}{row}\n{GOOD}\n")
    assert parsed.errors == [RowError(4, message)]
    assert parsed.count == 4
    assert len(parsed.rows["api"]) == 2


@pytest.mark.parametrize(
    ("row", "message"),
    [
        (f"api,{T0},down,,caf\xe9".encode("latin-1"), "error: not valid UTF-8 (byte 0xe9)"),
        (f"ap\xffi,{T0},up,1,".encode("latin-1"), "monitor: not valid UTF-8 (byte 0xff)"),
        (
            f'api,{T0},down,,"caf\xe9\nau lait"'.encode("latin-1"),
            "error: not valid UTF-8 (byte 0xe9)",
        ),
        (b"api,2026-11-01T00:00:00\xa0Z,up,1,", "timestamp: not valid UTF-8 (byte 0xa0)"),
    ],
)
def test_bytes_that_are_not_utf8(tmp_path: pathlib.Path, row: bytes, message: str) -> None:
    content = f"{HEADER}\n{GOOD}\n".encode() + row + b"\nweb,2026-11-01T00:00:00Z,up,1,\n"
    parsed = _parse(tmp_path, content)
    assert parsed.errors == [RowError(3, f"{message}; save the file as UTF-8")]
    assert set(parsed.rows) == {"api", "web"}


@pytest.mark.parametrize(
    ("header", "details"),
    [
        (
            "monitor,timestamp,outcome,latency,error",
            "missing latency_ms; unknown 'latency' (did you mean 'latency_ms'?)",
        ),
        ("monitor,timestamp,outcome,latency_ms", "missing error"),
        ("monitor,timestamp,outcome,latency_ms,error,place", "unknown 'place'"),
        ("monitor,timestamp,outcome,latency_ms,error,", "unknown ''"),
        ("timestamp,monitor,outcome,latency_ms,error", "wrong order"),
        ("monitor,timestamp,outcome,latency_ms,error,error", "a column repeats"),
        (
            "monitor;timestamp;outcome;latency_ms;error",
            "missing monitor, timestamp, outcome, latency_ms, error; "
            "unknown 'monitor;timestamp;outcome;latency_ms;error'",
        ),
        ("", "missing monitor, timestamp, outcome, latency_ms, error"),
        (
            GOOD,
            f"missing monitor, timestamp, outcome, latency_ms, error; unknown 'api'; "
            f"unknown '{T0}'; unknown 'up'; unknown '12.5'; unknown ''",
        ),
    ],
)
def test_header_errors(tmp_path: pathlib.Path, header: str, details: str) -> None:
    parsed = _parse(tmp_path, f"{header}\n{GOOD}\n")
    got = header.rstrip("\n")
    assert parsed.errors == [RowError(1, f"header: expected {HEADER!r}, got {got!r} ({details})")]
    assert parsed.rows == {}
    assert parsed.count == 0


def test_header_in_utf16_and_an_empty_file(tmp_path: pathlib.Path) -> None:
    parsed = _parse(tmp_path, f"{HEADER}\n{GOOD}\n".encode("utf-16"))
    assert parsed.errors == [
        RowError(1, "header: not valid UTF-8 (byte 0xff); save the file as UTF-8")
    ]
    assert _parse(tmp_path, b"").errors == [
        RowError(1, f"the file is empty; the first line must be the header {HEADER}")
    ]
    assert _parse(tmp_path, b"\xef\xbb\xbf").errors == _parse(tmp_path, b"").errors


def test_lines_count_physical_lines_of_quoted_records(tmp_path: pathlib.Path) -> None:
    parsed = _parse(
        tmp_path,
        f"{HEADER}\r\n"  # 1
        f'api,{T0},down,,"three\r\nline\r\nerror"\r\n'  # 2-4
        "api,2026-11-01T00:00:01Z,UP,1,\r\n"  # 5
        "\r\n"  # 6
        f'web,2026-11-01T00:00:02Z,nope,,"two\nlines"\r\n'  # 7-8
        f"web,{T0},up,1,\r\n"  # 9
        "zzz,2026-11-01T00:00:03Z,up,1,\r\n",  # 10
    )
    assert parsed.errors == [
        RowError(5, f"outcome: 'UP' is not one of {ALLOWED}; use lower case"),
        RowError(7, f"outcome: 'nope' is not one of {ALLOWED}"),
        RowError(10, "monitor: no monitor has id 'zzz' in the config"),
    ]
    assert parsed.count == 5
    assert _rows(parsed, "api") == [(T0_MS, 3, None, "three\r\nline\r\nerror")]


def test_a_quote_left_open(tmp_path: pathlib.Path) -> None:
    parsed = _parse(tmp_path, f'{HEADER}\n{GOOD}\napi,{T0},down,,"open\nweb,{T0},up,1,\n')
    assert parsed.errors == [RowError(3, "a quoted field that starts on this line is never closed")]
    assert parsed.count == 2


def test_a_field_past_the_csv_limit(tmp_path: pathlib.Path) -> None:
    huge = "x" * 200_000
    parsed = _parse(tmp_path, f'{HEADER}\napi,{T0},down,,"{huge}"\n{GOOD}\n')
    assert parsed.errors == [RowError(2, "not valid CSV: field larger than field limit (131072)")]


def test_errors_past_the_cap_are_counted(tmp_path: pathlib.Path) -> None:
    rows = "".join(f"nope{n % 7},{T0},up,1,\n" for n in range(MAX_ERRORS + 5))
    parsed = _parse(tmp_path, f"{HEADER}\n{rows}{GOOD}\n")
    assert len(parsed.errors) == MAX_ERRORS
    assert parsed.errors[-1].line == MAX_ERRORS + 1
    assert parsed.unlisted_errors == 5
    assert parsed.error_count == MAX_ERRORS + 5
    assert parsed.count == MAX_ERRORS + 6


# --- the timestamp fast path agrees with datetime.fromisoformat --------------------------


@st.composite
def common_stamps(draw: st.DrawFn) -> str:
    """`YYYY-MM-DD(T| )HH:MM:SS[.f{1,6}](Z|±HH:MM)`, every year from 0001 to 9999."""
    at = draw(st.datetimes(min_value=dt.datetime(1, 1, 2), max_value=dt.datetime(9999, 12, 30)))
    separator = draw(st.sampled_from("T "))
    digits = draw(st.integers(0, 6))
    fraction = f".{at.microsecond:06d}"[: digits + 1] if digits else ""
    sign = draw(st.sampled_from(["Z", "+", "-"]))
    offset = sign if sign == "Z" else f"{sign}{draw(st.integers(0, 23)):02d}:"
    offset += "" if sign == "Z" else f"{draw(st.integers(0, 59)):02d}"
    return (
        f"{at.year:04d}-{at.month:02d}-{at.day:02d}{separator}"
        f"{at.hour:02d}:{at.minute:02d}:{at.second:02d}{fraction}{offset}"
    )


@settings(max_examples=300)
@given(common_stamps())
def test_fast_path_agrees_with_fromisoformat(text: str) -> None:
    pieces = _common_pieces(text)
    assert pieces is not None
    assert sum(pieces) == _isoformat_ms(text)


@settings(max_examples=300)
@given(common_stamps(), st.data())
def test_fast_path_refuses_what_fromisoformat_refuses(text: str, data: st.DataObject) -> None:
    at = data.draw(st.integers(0, len(text) - 1))
    mutated = text[:at] + data.draw(st.sampled_from("0123456789:-+.TZz 9")) + text[at + 1 :]
    pieces = _common_pieces(mutated)
    if pieces is not None:  # never accepts what fromisoformat refuses, never differs
        assert sum(pieces) == _isoformat_ms(mutated)


@settings(max_examples=50, deadline=None)
@given(st.lists(common_stamps(), min_size=1, max_size=30))
def test_cached_pieces_give_the_same_times(
    tmp_path_factory: pytest.TempPathFactory, stamps: list[str]
) -> None:
    """Rows that reuse cached pieces (the hot path) get the times the careful path gives."""
    lines = [f"{monitor},{stamp},up,,\n" for stamp in stamps for monitor in ("api", "web")]
    path = tmp_path_factory.mktemp("cache") / "results.csv"
    path.write_text(HEADER + "\n" + "".join(lines), encoding="utf-8")
    parsed = parse(path, KNOWN)
    wanted = sorted({_isoformat_ms(stamp) for stamp in stamps})
    assert parsed.errors == []
    assert list(parsed.rows["api"].ts_ms) == list(parsed.rows["web"].ts_ms) == wanted


# --- progress ----------------------------------------------------------------------------


def test_progress_every_100k_rows_and_at_the_end(tmp_path: pathlib.Path) -> None:
    start = dt.datetime(2026, 11, 1, tzinfo=dt.UTC)
    path = tmp_path / "big.csv"
    with path.open("w", encoding="utf-8", newline="") as out:
        out.write(HEADER + "\r\n")
        for n in range(250_000):
            at = start + dt.timedelta(seconds=20 * n)
            out.write(f"{KNOWN[n % 3]},{at:%Y-%m-%dT%H:%M:%S}Z,up,{n % 997}.25,\r\n")
    calls: list[tuple[int, int]] = []
    parsed = parse(path, KNOWN, lambda rows, size: calls.append((rows, size)))
    assert parsed.errors == []
    assert parsed.count == 250_000
    assert [rows for rows, _ in calls] == [100_000, 200_000, 250_000]
    sizes = [size for _, size in calls]
    assert 0 < sizes[0] < sizes[1] < sizes[2] == path.stat().st_size
    assert [len(parsed.rows[monitor]) for monitor in KNOWN] == [83_334, 83_333, 83_333]
    api = parsed.rows["api"]
    assert api.ts_ms[-1] - api.ts_ms[0] == 20_000 * 3 * 83_333
    assert api.latency_us[1] == 3_250


# --- worker processes: a big file without quotes -------------------------------------------

MANY = (*KNOWN, "cache", "queue", "search")  # the monitors of the big files
BAD_ROWS = (
    "apii,{stamp},up,1,",
    "svc-{n},{stamp},up,1,",  # unknown monitors, a new one now and then
    "{monitor},{stamp},UP,1,",
    "{monitor},{stamp},up,fast,",
    "{monitor},2026-13-01T00:00:00Z,up,1,",
    "{monitor},{stamp},down,,refused, port 80",
    "{monitor},{stamp},up",
    "{monitor},{stamp},down,,caf\xe9",  # latin-1: not UTF-8
    "{monitor},{stamp},down,,a\x00b",
    "   ",
)


def _big_rows(count: int, bad_every: int, seed: int) -> tuple[list[bytes], list[tuple[str, int]]]:
    """Lines (line end included) and each line's (monitor, ms of its time). Each monitor's
    times mostly go up a minute at a time, but 3% of rows are anywhere: back in time, and
    repeats of times far away in the file. About one row in `bad_every` is bad; blank lines;
    \\n, \\r\\n and a few bare \\r line ends."""
    rnd = random.Random(seed)
    start = dt.datetime(2026, 11, 1, tzinfo=dt.UTC)
    minutes = count // len(MANY)
    lines: list[bytes] = []
    keys: list[tuple[str, int]] = []
    for n in range(count):
        monitor = MANY[n % len(MANY)]
        at = start + dt.timedelta(
            minutes=n // len(MANY) if rnd.random() < 0.97 else rnd.randrange(minutes)
        )
        shape = rnd.random()
        if shape < 0.9:
            stamp = f"{at:%Y-%m-%dT%H:%M:%S}Z"
        elif shape < 0.95:
            stamp = f"{at + dt.timedelta(hours=9):%Y-%m-%dT%H:%M:%S}+09:00"  # the same time
        else:
            at += dt.timedelta(milliseconds=rnd.randrange(1, 1000))
            stamp = f"{at:%Y-%m-%dT%H:%M:%S}.{at.microsecond // 1000:03d}Z"
        outcome = rnd.choice(("up", "up", "up", "degraded", "down", "unknown"))
        latency = "" if outcome == "unknown" else f"{rnd.uniform(1, 900):.3f}"
        error = "" if outcome == "up" else rnd.choice(("status 503", "timed out", "refused"))
        if not rnd.randrange(500):
            error = "x" * 600  # kept as 499 x and …
        row = f"{monitor},{stamp},{outcome},{latency},{error}"
        if not rnd.randrange(bad_every):
            row = rnd.choice(BAD_ROWS).format(monitor=monitor, stamp=stamp, n=rnd.randrange(300))
        if not rnd.randrange(300):
            lines.append(b"\n")  # a blank line
            keys.append(("", 0))
        end = rnd.choices(("\n", "\r\n", "\r"), (60, 39, 1))[0]
        lines.append((row + end).encode("latin-1"))
        keys.append((monitor, int(at.timestamp() * 1000)))
    return lines, keys


def _write_big(
    path: pathlib.Path, lines: list[bytes], head: bytes = HEADER.encode() + b"\n"
) -> None:
    path.write_bytes(head + b"".join(lines))


def _ranges_of(path: pathlib.Path, errors: list[RowError]) -> set[int]:
    """Which of the 12 ranges (1 to 12) the errors' lines are in."""
    line_ends = [match.end() for match in re.finditer(rb"\r\n|\r|\n", path.read_bytes())]
    firsts = [bisect.bisect_right(line_ends, start) + 1 for start, _ in importcsv._ranges(path, 12)]
    return {bisect.bisect_right(firsts, error.line) for error in errors}


def _single(path: pathlib.Path) -> Parsed:
    return importcsv._parse_single(path, MANY, importcsv._no_progress)


def _workers(path: pathlib.Path) -> Parsed:
    parsed = importcsv._parse_parallel(path, frozenset(MANY), importcsv._no_progress)
    assert parsed is not None
    return parsed


def _refuse(*args: object) -> NoReturn:
    raise AssertionError("the single-process path was taken")


def _die(*args: object) -> NoReturn:
    os._exit(3)


def _assert_same(got: Parsed, want: Parsed) -> None:
    assert (got.count, got.unlisted_errors) == (want.count, want.unlisted_errors)
    assert got.errors == want.errors
    assert list(got.rows) == list(want.rows)  # the same monitors, in the same order
    for monitor, series in want.rows.items():
        other = got.rows[monitor]
        assert other.ts_ms == series.ts_ms
        assert other.outcome == series.outcome
        assert other.latency_us == series.latency_us
        assert other.errors == series.errors


@pytest.fixture
def small_big(monkeypatch: pytest.MonkeyPatch) -> None:
    """Files over 1 MiB count as big, and three workers read them (twelve ranges)."""
    monkeypatch.setattr(importcsv, "PARALLEL_MIN_BYTES", 1 << 20)
    monkeypatch.setattr(importcsv, "_workers", lambda: 3)


@pytest.mark.usefixtures("small_big")
def test_workers_give_the_single_process_answer(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    lines, keys = _big_rows(30_000, bad_every=60, seed=1)
    lines[-1] = lines[-1].rstrip(b"\r\n")  # no line end at the end
    path = tmp_path / "big.csv"
    head = codecs.BOM_UTF8 + HEADER.encode() + b"\r\n"
    _write_big(path, lines, head)
    want = _single(path)
    assert want.errors and want.unlisted_errors == 0

    # What makes it hard: times that repeat in other ranges, errors in every range.
    ranges = importcsv._ranges(path, 12)
    assert len(ranges) == 12 and ranges[0][0] == len(head) and ranges[-1][1] > 1 << 20
    starts = [start for start, _ in ranges]
    offsets = itertools.accumulate((len(line) for line in lines), initial=len(head))
    seen: dict[tuple[str, int], set[int]] = collections.defaultdict(set)
    for key, offset in zip(keys, offsets, strict=False):
        seen[key].add(bisect.bisect_right(starts, offset))
    assert sum(len(where) > 1 for key, where in seen.items() if key[0]) > 100
    assert _ranges_of(path, want.errors) == set(range(1, 13))

    monkeypatch.setattr(importcsv, "PROGRESS_EVERY", 5_000)
    monkeypatch.setattr(importcsv, "_parse_single", _refuse)
    calls: list[tuple[int, int]] = []
    got = parse(path, MANY, lambda rows, size: calls.append((rows, size)))
    _assert_same(got, want)
    assert [rows for rows, _ in calls] == [*range(5_000, got.count, 5_000), got.count]
    sizes = [size for _, size in calls]
    assert sizes == sorted(set(sizes)) and sizes[0] > len(head)
    assert sizes[-1] == path.stat().st_size


@pytest.mark.usefixtures("small_big")
@pytest.mark.parametrize(
    ("bad_every", "ranges"),
    [(8, {1, 2, 3, 4}), (2, {1})],  # 2: every range has more than MAX_ERRORS of its own
)
def test_workers_list_the_same_first_errors(
    tmp_path: pathlib.Path, bad_every: int, ranges: set[int]
) -> None:
    path = tmp_path / "bad.csv"
    _write_big(path, _big_rows(30_000, bad_every, seed=2)[0])
    want = _single(path)
    assert len(want.errors) == MAX_ERRORS and want.unlisted_errors > 2 * MAX_ERRORS
    assert _ranges_of(path, want.errors) == ranges  # the listed ones: the first ranges'
    _assert_same(_workers(path), want)


@pytest.mark.usefixtures("small_big")
def test_workers_keep_the_last_row_of_a_time_that_spans_ranges(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "repeats.csv"
    rows = (f"api,2026-11-01T00:{n // 3000:02d}:00Z,up,{n},\n" for n in range(33_000))
    _write_big(path, [row.encode() for row in rows])
    want = _single(path)
    assert [latency // 1000 for latency in want.rows["api"].latency_us] == [
        *range(2999, 33_000, 3000)
    ]
    _assert_same(_workers(path), want)


@pytest.mark.usefixtures("small_big")
def test_a_quote_anywhere_leaves_it_to_one_process(tmp_path: pathlib.Path) -> None:
    lines, _ = _big_rows(30_000, bad_every=60, seed=3)
    row = len(lines) // 2
    lines[row] = b"api,2027-01-01T00:00:00Z,down,,refused twice\n"
    plain = tmp_path / "plain.csv"
    _write_big(plain, lines)
    lines[row] = b'api,2027-01-01T00:00:00Z,down,,"refused, twice"\n'
    quoted = tmp_path / "quoted.csv"
    _write_big(quoted, lines)
    assert importcsv._ranges(quoted, 12) == []
    assert importcsv._parse_parallel(quoted, frozenset(MANY), importcsv._no_progress) is None

    want = _workers(plain)  # the same file but for one error text
    api = want.rows["api"]
    assert api.ts_ms[-1] == 1_798_761_600_000  # 2027-01-01: the last time
    assert api.errors[len(api) - 1] == "refused twice"
    api.errors[len(api) - 1] = "refused, twice"
    _assert_same(parse(quoted, MANY), want)


@pytest.mark.usefixtures("small_big")
def test_a_worker_that_dies_leaves_it_to_one_process(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "big.csv"
    _write_big(path, _big_rows(30_000, bad_every=60, seed=4)[0])
    assert path.stat().st_size > importcsv.PARALLEL_MIN_BYTES
    want = _single(path)
    monkeypatch.setattr(importcsv, "_parse_range", _die)
    assert importcsv._parse_parallel(path, frozenset(MANY), importcsv._no_progress) is None
    _assert_same(parse(path, MANY), want)


@pytest.mark.parametrize(
    ("head", "start"),
    [
        (f"{HEADER}\n", len(HEADER) + 1),
        (f"\ufeff{HEADER}\r\n", len(HEADER) + 5),
        (f"{HEADER}\r", None),  # a bare \r ends the header: one process
        (f"{HEADER},\n", None),
        ('"monitor","timestamp","outcome","latency_ms","error"\n', None),
    ],
)
def test_ranges_cut_after_line_ends(tmp_path: pathlib.Path, head: str, start: int | None) -> None:
    path = tmp_path / "results.csv"
    path.write_bytes(head.encode() + "".join(f"{GOOD}\n" for _ in range(100)).encode())
    ranges = importcsv._ranges(path, 4)
    if start is None:
        assert ranges == []
        return
    data = path.read_bytes()
    assert len(ranges) == 4 and ranges[0][0] == start and ranges[-1][1] == len(data)
    for (_, end), (next_start, _) in itertools.pairwise(ranges):
        assert end == next_start and data[end - 1 : end] == b"\n"


# --- the location column ---------------------------------------------------------------

PLACES = importcsv.Places("seoul", ("seoul", "frankfurt"), {"web": ("frankfurt",)})


def test_a_location_column_keeps_each_locations_rows_apart(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "results.csv"
    lines = [
        f"api,{T0},up,12.5,,",  # empty: the default location
        f"api,{T0},down,,refused,frankfurt",  # the same time elsewhere: another row
        'api,2026-11-01T00:01:00Z,down,,"HTTP 503, twice",frankfurt',  # careful path
        "api,2026-11-01T00:02:00Z,up,12.5,,seoul\r",  # written out: the default too
        f"web,{T0},up,7,,frankfurt",
    ]
    path.write_text(f"{HEADER},location\n" + "\n".join(lines) + "\n", newline="")
    parsed = parse(path, KNOWN, places=PLACES)
    assert parsed.errors == []
    assert set(parsed.rows) == {"api", "api@frankfurt", "web@frankfurt"}
    assert importcsv.located("api@frankfurt", "seoul") == ("api", "frankfurt")
    assert importcsv.located("api", "seoul") == ("api", "seoul")
    assert _rows(parsed, "api") == [(T0_MS, 1, 12_500, None), (T0_MS + 120_000, 1, 12_500, None)]
    assert _rows(parsed, "api@frankfurt") == [
        (T0_MS, 3, None, "refused"),
        (T0_MS + 60_000, 3, None, "HTTP 503, twice"),
    ]


def test_a_location_nobody_declares_is_a_line_error(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "results.csv"
    lines = [f"api,{T0},up,12.5,,frankfurt", f"api,{T0},up,12.5,,berlin", f"web,{T0},up,1,,"]
    path.write_text(f"{HEADER},location\n" + "\n".join(lines) + "\n")
    parsed = parse(path, KNOWN, places=PLACES)
    assert parsed.errors == [
        RowError(
            3, "location: no hub or [[agents]] entry declares 'berlin'; declared: seoul, frankfurt"
        ),
        RowError(
            4, "location: monitor 'web' is not probed from 'seoul' (its locations: frankfurt)"
        ),
    ]
    assert parse(path, KNOWN).errors[0] == RowError(  # no places: only the default
        2, "location: no hub or [[agents]] entry declares 'frankfurt'; declared: none"
    )
