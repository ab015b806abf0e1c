"""Read and check a results CSV for `prober import-results`; storing it is the caller's job.

The header is exactly `monitor,timestamp,outcome,latency_ms,error`, or that and a sixth
column `location` (where the result was measured; empty: the hub's own, settings.location;
a location no hub or [[agents]] entry declares, or one that does not probe the monitor, is
an error). Every problem becomes a
`RowError` on the physical line where its record starts (lines end at \\n, \\r\\n or \\r), so
the caller can print them all and import nothing.

Speed: a 4.32-million-row file is one month of 100 monitors at 60 s. Lines without a quote
are split on commas; the csv module reads the others, including quoted fields that span
lines. A timestamp of the common shape is three cached pieces added up (prober.isotime); a
latency seen before is a cached number (a dict lookup is a quarter of float() and checks).
Anything the hot path doubts (a cache miss, a bad value) takes the careful path, which either
names the problem or fills the caches. Each monitor's rows are parallel arrays (17 bytes a
row), sorted once at the end.

Cores share big files. A file over PARALLEL_MIN_BYTES without a single quote (so each record
is one line) is cut at line ends into byte ranges that forked worker processes read with the
same code; the parent joins their rows and errors in file order, so the answer is the one a
single process gives. Any other file, one core, or a worker that fails: a single process.
"""

from __future__ import annotations

import codecs
import csv
import dataclasses
import difflib
import io
import math
import mmap
import operator
import os
import re
from array import array
from collections.abc import Callable, Collection, Iterator, Mapping
from itertools import pairwise, starmap
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from prober.isotime import DAY_MS, MAX_MS, MIN_MS, isoformat_ms
from prober.isotime import common_pieces as _common_pieces
from prober.results import Outcome
from prober.store.tables import OUTCOME_CODES

if TYPE_CHECKING:
    from _typeshed import WriteableBuffer

COLUMNS = ("monitor", "timestamp", "outcome", "latency_ms", "error")
HEADER = ",".join(COLUMNS)
LOCATION = "location"  # the optional sixth column
AT = "@"  # Parsed.rows key of a monitor's rows at a location not the default: "api@frankfurt"
MAX_ERRORS = 1000  # RowErrors listed; past it they are only counted
MAX_ERROR_TEXT = 500  # characters of error text kept, as prober.checks.runner.MAX_ERROR
NO_LATENCY = -1  # latency_us of a row whose latency_ms is empty (SQL: NULLIF(?, -1))
PROGRESS_EVERY = 100_000  # rows between progress() calls
PARALLEL_MIN_BYTES = 8 << 20  # bigger quote-free files are read by worker processes
MAX_WORKERS = 4

_RANGES_PER_WORKER = 4  # smaller ranges: steadier progress, and a slow worker holds up less
_HEADER_BYTES = HEADER.encode()

_MAX_LATENCY_MS = 1e12  # ~31 years: latency_us stays far inside SQLite's int64
_CACHE_MAX = 1 << 17  # entries per cache; past it, new keys always take the careful path
_CODES = {outcome.value: code for outcome, code in OUTCOME_CODES.items()}
_OUTCOMES = ", ".join(Outcome)
_LINE_ENDS = frozenset({"", "\n", "\r\n", "\r"})  # an empty last field, line end included
_V = TypeVar("_V")
_UNDECODABLE = re.compile("[\udc80-\udcff]")  # bytes that were not UTF-8 (surrogateescape)


@dataclasses.dataclass(frozen=True, slots=True)
class RowError:
    line: int  # 1-based physical line where the record starts
    message: str  # "timestamp: '2026-13-01T00:00:00Z' is not an ISO 8601 date-time ..."


@dataclasses.dataclass(slots=True, eq=False)
class Series:
    """One monitor's rows as parallel columns rather than a tuple of objects per row.

    Once parse() returns they are sorted by ts_ms with one row per ts_ms: a time that
    repeats keeps the row that came last in the file.
    """

    ts_ms: array[int] = dataclasses.field(default_factory=lambda: array("q"))  # UTC epoch ms
    outcome: array[int] = dataclasses.field(default_factory=lambda: array("B"))  # OUTCOME_CODES
    latency_us: array[int] = dataclasses.field(default_factory=lambda: array("q"))  # NO_LATENCY
    errors: dict[int, str] = dataclasses.field(default_factory=dict)  # row index -> error text

    def __len__(self) -> int:
        return len(self.ts_ms)

    def rows(self) -> Iterator[tuple[int, int, int | None, str | None]]:
        """(ts_ms, outcome code, latency_us or None, error or None), in time order."""
        return zip(
            self.ts_ms,
            self.outcome,
            map(_latency_or_none, self.latency_us),
            map(self.errors.get, range(len(self.ts_ms))),
            strict=True,
        )

    def settle(self) -> None:
        """Sort by time and keep the last row of each repeated time."""
        ts = self.ts_ms
        if all(starmap(operator.lt, pairwise(ts))):
            return  # strictly increasing already: the usual export
        order = sorted(range(len(ts)), key=ts.__getitem__)  # stable: file order within a time
        keep = [i for i, j in pairwise(order) if ts[i] != ts[j]] + order[-1:]
        self.ts_ms = array("q", map(ts.__getitem__, keep))
        self.outcome = array("B", map(self.outcome.__getitem__, keep))
        self.latency_us = array("q", map(self.latency_us.__getitem__, keep))
        old_errors = self.errors
        self.errors = {new: old_errors[old] for new, old in enumerate(keep) if old in old_errors}

    def extend(self, other: Series) -> None:
        """Append other's rows (then settle() again unless the times still go up)."""
        shift = len(self.ts_ms)
        self.errors.update({shift + index: text for index, text in other.errors.items()})
        self.ts_ms.extend(other.ts_ms)
        self.outcome.extend(other.outcome)
        self.latency_us.extend(other.latency_us)


@dataclasses.dataclass(frozen=True, slots=True)
class Places:
    """Where rows may come from: `default` (settings.location) for rows without a location,
    the `declared` locations (the hub's and every [[agents]] entry's) and each monitor's
    own `locations` (a monitor not listed, or with none: any declared location)."""

    default: str
    declared: tuple[str, ...]
    probed: Mapping[str, Collection[str]] = dataclasses.field(default_factory=dict)


_NOWHERE = Places("", ())  # no location declared: rows only at the default


def located(key: str, default: str) -> tuple[str, str]:
    """(monitor, location) of a Parsed.rows key."""
    monitor, _, location = key.partition(AT)
    return monitor, location or default


@dataclasses.dataclass(slots=True)
class Parsed:
    """What a file holds. Import it only when `errors` is empty: nothing half-imported."""

    rows: dict[str, Series]  # monitor id -> its valid rows; "id@location" elsewhere (located)
    count: int  # data rows read, valid or not (blank lines are not rows)
    errors: list[RowError]  # in line order, at most MAX_ERRORS
    unlisted_errors: int = 0  # errors past MAX_ERRORS, counted only

    @property
    def error_count(self) -> int:
        return len(self.errors) + self.unlisted_errors


def parse(
    path: Path,
    known: Collection[str],
    progress: Callable[[int, int], None] | None = None,
    places: Places | None = None,
) -> Parsed:
    """Read a results CSV; `known` are the config's monitor ids, `places` where results may
    come from (None: from nowhere but the default; a `location` value is an error).

    Times become UTC epoch ms, floored (a .9999 s fraction is 999 ms); latencies µs, rounded.
    progress(rows_read, bytes_read) is called every PROGRESS_EVERY rows and once at the end;
    when worker processes read the file, as their ranges finish, with bytes_read estimated.
    """
    report = progress or _no_progress
    where = places or _NOWHERE
    parsed = _parse_parallel(path, frozenset(known), report, where)
    return _parse_single(path, known, report, where) if parsed is None else parsed


def _parse_single(
    path: Path,
    known: Collection[str],
    progress: Callable[[int, int], None],
    places: Places = _NOWHERE,
) -> Parsed:
    reader = _Reader(known, places)
    with (
        path.open("rb") as raw,
        io.TextIOWrapper(raw, encoding="utf-8-sig", errors="surrogateescape", newline="") as lines,
    ):
        if reader.header(next(lines, None)):
            reader.read(lines, progress, raw.tell)
    rows = {monitor: series for monitor, series in reader.finish() if series}
    return Parsed(rows, reader.count, reader.errors, reader.unlisted)


def _parse_parallel(
    path: Path,
    known: frozenset[str],
    progress: Callable[[int, int], None],
    places: Places = _NOWHERE,
) -> Parsed | None:
    """parse() by worker processes; None where a single process must read the file (see
    _ranges), on one core, or when a worker failed."""
    try:
        if path.stat().st_size <= PARALLEL_MIN_BYTES:
            return None
        workers = _workers()
        ranges = _ranges(path, workers * _RANGES_PER_WORKER) if workers > 1 else []
    except (OSError, ValueError):  # no such file, mmap refused it...: the single path says
        return None
    if len(ranges) < 2:
        return None
    try:
        return _gather(path, known, ranges, workers, progress, places)
    except Exception:  # a worker died or its part could not travel: never a wrong answer
        return None


def _workers() -> int:
    import multiprocessing

    if "fork" not in multiprocessing.get_all_start_methods():
        return 1  # spawned workers would import everything again: not worth it
    return min(os.cpu_count() or 1, MAX_WORKERS)


def _ranges(path: Path, count: int) -> list[tuple[int, int]]:
    """The lines after the header cut at line ends into at most `count` byte ranges
    [start, end); none unless the first line is exactly the header (a BOM before it allowed)
    ending in \\n or \\r\\n, and the file holds no quote: a quoted field may span lines, so
    only then is every line a record."""
    with path.open("rb") as file:
        size = os.fstat(file.fileno()).st_size
        with mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ) as data:
            head = data[: len(codecs.BOM_UTF8) + len(_HEADER_BYTES) + 2]
            body = head.removeprefix(codecs.BOM_UTF8)
            for line_end in (b"\n", b"\r\n"):
                if body.startswith(_HEADER_BYTES + line_end):
                    break
            else:
                return []
            start = len(head) - len(body) + len(_HEADER_BYTES) + len(line_end)
            if data.find(b'"') != -1:
                return []
            cuts = [start]
            for i in range(1, count):
                at = data.find(b"\n", max(cuts[-1], start + (size - start) * i // count))
                if at == -1 or at + 1 >= size:
                    break
                cuts.append(at + 1)
    return list(pairwise([*cuts, size]))


def _gather(
    path: Path,
    known: frozenset[str],
    ranges: list[tuple[int, int]],
    workers: int,
    progress: Callable[[int, int], None],
    places: Places,
) -> Parsed:
    """Every range read by a worker, then joined in file order: each monitor's rows one
    range after the other (the last row of a repeated time still wins), error lines counted
    from the file's start, only the first MAX_ERRORS listed."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    rows: dict[str, Series] = {}
    unsorted: set[str] = set()  # monitors whose rows go back in time across ranges
    errors: list[RowError] = []
    unlisted = count = lines = 0
    mark = PROGRESS_EVERY  # the next row count to report
    done = ranges[0][0]  # bytes read by finished ranges (and the header)
    pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork"))
    try:
        futures = [
            pool.submit(_parse_range, path, start, end, known, places) for start, end in ranges
        ]
        futures.reverse()  # pop() gives them in file order, and frees each part once joined
        for _, end in ranges:
            part = futures.pop().result()
            for monitor, piece in part.series:
                whole = rows.setdefault(monitor, piece)
                if whole is not piece:
                    if whole and piece and whole.ts_ms[-1] >= piece.ts_ms[0]:
                        unsorted.add(monitor)
                    whole.extend(piece)
            for line, message in part.errors:
                if len(errors) < MAX_ERRORS:
                    errors.append(RowError(lines + line, message))
                else:
                    unlisted += 1
            unlisted += part.unlisted
            lines += part.lines
            before, count = count, count + part.count
            while mark < count:  # rows of this range: the bytes read then are a guess
                progress(mark, done + (end - done) * (mark - before) // (count - before))
                mark += PROGRESS_EVERY
            done = end
    finally:
        pool.shutdown(cancel_futures=True)
    for monitor in unsorted:
        rows[monitor].settle()
    progress(count, done)
    kept = {monitor: series for monitor, series in rows.items() if series}
    return Parsed(kept, count, errors, unlisted)


@dataclasses.dataclass(slots=True)
class _Part:
    """What a worker read in one range. Lines are numbered as if the header came just
    before the range: its first line is line 2."""

    series: list[tuple[str, Series]]  # every monitor met, in order; each series settled
    count: int
    lines: int  # physical lines in the range
    errors: list[tuple[int, str]]  # (line, message)
    unlisted: int


def _parse_range(path: Path, start: int, end: int, known: frozenset[str], places: Places) -> _Part:
    """A worker process's job: the lines in bytes [start, end) of a file without quotes
    (and without a location column: _ranges)."""
    reader = _Reader(known, places)
    with path.open("rb", buffering=0) as raw:
        raw.seek(start)
        buffer = io.BufferedReader(_Slice(raw, end - start), 1 << 16)
        with io.TextIOWrapper(
            buffer, encoding="utf-8", errors="surrogateescape", newline=""
        ) as lines:
            reader.read(lines, _no_progress, raw.tell)
    errors = [(error.line, error.message) for error in reader.errors]
    return _Part(reader.finish(), reader.count, reader.lines, errors, reader.unlisted)


class _Slice(io.RawIOBase):
    """The next `left` bytes of a file, then its end."""

    def __init__(self, raw: io.FileIO, left: int) -> None:
        super().__init__()
        self.raw = raw
        self.left = left

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: WriteableBuffer) -> int:
        got = self.raw.readinto(memoryview(buffer)[: self.left]) or 0
        self.left -= got
        return got


class _Problem(Exception):
    """What is wrong with one row; the message is what the user reads."""


class _Builder:
    """One monitor's rows while reading. A list append costs a quarter of an array append,
    so rows wait in lists and move into the Series' arrays every PROGRESS_EVERY rows."""

    __slots__ = ("errors", "latency_us", "moved", "outcome", "series", "ts_ms")

    def __init__(self) -> None:
        self.series = Series()
        self.errors = self.series.errors  # keyed by the row's index in the Series
        self.moved = 0  # rows moved into the Series so far
        self.ts_ms: list[int] = []
        self.outcome: list[int] = []
        self.latency_us: list[int] = []

    def add(self, ts_ms: int, code: int, latency_us: int, error: str | None) -> None:
        if error is not None:
            self.errors[self.moved + len(self.ts_ms)] = error
        self.ts_ms.append(ts_ms)
        self.outcome.append(code)
        self.latency_us.append(latency_us)

    def move(self) -> None:
        series = self.series
        series.ts_ms.fromlist(self.ts_ms)
        series.outcome.fromlist(self.outcome)
        series.latency_us.fromlist(self.latency_us)
        self.moved += len(self.ts_ms)
        self.ts_ms.clear()
        self.outcome.clear()
        self.latency_us.clear()

    def finish(self) -> Series:
        self.move()
        self.series.settle()
        return self.series


class _Reader:
    def __init__(self, known: Collection[str], places: Places) -> None:
        self.known = frozenset(known)
        self.places = places
        self.columns: tuple[str, ...] = COLUMNS  # and LOCATION when the header has it
        self.builders: dict[str, _Builder] = {}  # by Parsed.rows key
        self.placed: dict[tuple[str, str], _Builder] = {}  # by (monitor, location as written)
        self.count = 0
        self.lines = 0  # physical lines after the header
        self.blanks = 0
        self.errors: list[RowError] = []
        self.unlisted = 0
        self.unknown: dict[str, str] = {}  # monitor id not in the config -> its message
        # Timestamp pieces in ms, whose sum is UTC epoch ms (see _common_pieces)
        self.hours: dict[str, int] = {}  # "2026-11-01T09" -> the hour, as if it were UTC
        self.clocks: dict[str, int] = {}  # ":05:30" -> into the hour
        self.rests: dict[str, int] = {}  # ".250+09:00" -> fraction minus offset
        self.texts: dict[str, str] = {}  # error field -> the text kept
        self.latencies: dict[str, int] = {}  # latency_ms field -> latency_us

    def header(self, line: str | None) -> bool:
        if line is None:
            self.fail(1, f"the file is empty; the first line must be the header {HEADER}")
            return False
        names = next(csv.reader([line]), [])
        if tuple(names) == COLUMNS:
            return True
        if tuple(names) == (*COLUMNS, LOCATION):
            self.columns = (*COLUMNS, LOCATION)
            return True
        try:
            for name in names:
                _check_decodable("header", name)
            self.fail(1, _header_problem(names))
        except _Problem as problem:
            self.fail(1, str(problem))
        return False

    def read(
        self, lines: Iterator[str], progress: Callable[[int, int], None], tell: Callable[[], int]
    ) -> None:
        if len(self.columns) > len(COLUMNS):
            self.read_located(lines, progress, tell)
            return
        quoted = _QuotedRecords(lines)
        builders, texts, codes = self.builders, self.texts, _CODES
        hours, clocks, rests, latencies = self.hours, self.clocks, self.rests, self.latencies
        line_ends, max_latency, no_latency = _LINE_ENDS, _MAX_LATENCY_MS, NO_LATENCY
        n = 0
        for n, line in enumerate(lines, 1):  # n counts records; line n + 1 + quoted.extra
            if not n % PROGRESS_EVERY:
                for builder in builders.values():
                    builder.move()
                progress(n - self.blanks, tell())
            if '"' in line:
                self.quoted(quoted, line, n + 1 + quoted.extra)
                continue
            try:  # the hot path: every KeyError or ValueError goes the careful way
                monitor, stamp, outcome, latency, error = line.split(",")
                builder = builders[monitor]
                ts_ms = hours[stamp[:13]] + clocks[stamp[13:19]] + rests[stamp[19:]]
                code = codes[outcome]
                if latency:
                    latency_us = latencies.get(latency, no_latency)
                    if latency_us == no_latency:  # a dict beats float() fourfold
                        latency_ms = float(latency)
                        if not 0.0 <= latency_ms <= max_latency:
                            raise ValueError(latency)
                        latency_us = round(latency_ms * 1000)
                        _remember(latencies, latency, latency_us)
                else:
                    latency_us = no_latency
                text = None if error in line_ends else texts[error.rstrip("\r\n")]
            except (KeyError, ValueError):
                self.careful(line.rstrip("\r\n").split(","), n + 1 + quoted.extra)
                continue
            if text is not None:
                builder.errors[builder.moved + len(builder.ts_ms)] = text
            builder.ts_ms.append(ts_ms)
            builder.outcome.append(code)
            builder.latency_us.append(latency_us)
        self.count = n - self.blanks
        self.lines = n + quoted.extra
        progress(self.count, tell())

    def read_located(
        self, lines: Iterator[str], progress: Callable[[int, int], None], tell: Callable[[], int]
    ) -> None:
        """read() for a file with the location column: the same hot path, with a builder
        per (monitor, location as written) and the error field no longer last."""
        quoted = _QuotedRecords(lines)
        placed, texts, codes = self.placed, self.texts, _CODES
        hours, clocks, rests, latencies = self.hours, self.clocks, self.rests, self.latencies
        max_latency, no_latency = _MAX_LATENCY_MS, NO_LATENCY
        n = 0
        for n, line in enumerate(lines, 1):
            if not n % PROGRESS_EVERY:
                for builder in self.builders.values():
                    builder.move()
                progress(n - self.blanks, tell())
            if '"' in line:
                self.quoted(quoted, line, n + 1 + quoted.extra)
                continue
            try:
                monitor, stamp, outcome, latency, error, place = line.split(",")
                builder = placed[monitor, place.rstrip("\r\n")]
                ts_ms = hours[stamp[:13]] + clocks[stamp[13:19]] + rests[stamp[19:]]
                code = codes[outcome]
                if latency:
                    latency_us = latencies.get(latency, no_latency)
                    if latency_us == no_latency:  # as read() does
                        latency_ms = float(latency)
                        if not 0.0 <= latency_ms <= max_latency:
                            raise ValueError(latency)
                        latency_us = round(latency_ms * 1000)
                        _remember(latencies, latency, latency_us)
                else:
                    latency_us = no_latency
                text = texts[error] if error else None
            except (KeyError, ValueError):
                self.careful(line.rstrip("\r\n").split(","), n + 1 + quoted.extra)
                continue
            builder.add(ts_ms, code, latency_us, text)
        self.count = n - self.blanks
        self.lines = n + quoted.extra
        progress(self.count, tell())

    def finish(self) -> list[tuple[str, Series]]:
        """Every monitor met, in order, with its rows settled (none if all were errors)."""
        return [(monitor, builder.finish()) for monitor, builder in self.builders.items()]

    def quoted(self, records: _QuotedRecords, line: str, number: int) -> None:
        try:
            fields = records.read(line)
        except csv.Error as exc:
            self.fail(number, f"not valid CSV: {exc}")
            return
        if records.at_end:
            self.fail(number, "a quoted field that starts on this line is never closed")
            return
        self.careful(fields, number)

    def careful(self, fields: list[str], number: int) -> None:
        """The exact path: keep the row (its pieces are cached now) or say what is wrong."""
        if fields == [""]:
            self.blanks += 1
            return
        try:
            builder, ts_ms, code, latency_us, text = self.check_row(fields)
        except _Problem as problem:
            self.fail(number, str(problem))
            return
        builder.add(ts_ms, code, latency_us, text)

    def check_row(self, fields: list[str]) -> tuple[_Builder, int, int, int, str | None]:
        columns = self.columns
        if len(fields) != len(columns):
            hint = "; quote an error text that holds commas" if len(fields) > len(columns) else ""
            raise _Problem(
                f"expected {len(columns)} fields ({','.join(columns)}), got {len(fields)}{hint}"
            )
        for name, value in zip(columns, fields, strict=True):
            _check_decodable(name, value)
        monitor, stamp, outcome, latency, error = fields[: len(COLUMNS)]
        place = fields[len(COLUMNS)] if len(fields) > len(COLUMNS) else ""
        return (
            self.monitor(monitor, place),
            self.timestamp(stamp),
            _outcome_code(outcome),
            _latency_us(latency),
            self.text(error),
        )

    def monitor(self, monitor: str, place: str = "") -> _Builder:
        """The builder of the monitor's rows at `place` (as written; empty: the default)."""
        builder = self.placed.get((monitor, place))
        if builder is None:
            if monitor not in self.known:
                raise _Problem(self.unknown_monitor(monitor))
            location = self.location(monitor, place)
            key = monitor if location == self.places.default else monitor + AT + location
            builder = self.builders.get(key)
            if builder is None:
                builder = self.builders[key] = _Builder()
            self.placed[monitor, place] = builder
        return builder

    def location(self, monitor: str, place: str) -> str:
        places = self.places
        if place and place not in places.declared:
            close = difflib.get_close_matches(place, places.declared, n=1, cutoff=0.6)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            declared = ", ".join(places.declared) or "none"
            raise _Problem(
                f"location: no hub or [[agents]] entry declares {place!r}{hint}; declared: "
                f"{declared}"
            )
        location = place or places.default
        probed = places.probed.get(monitor)
        if probed and location not in probed:
            raise _Problem(
                f"location: monitor {monitor!r} is not probed from {location!r} (its "
                f"locations: {', '.join(probed)})"
            )
        return location

    def unknown_monitor(self, monitor: str) -> str:
        if not monitor:
            return "monitor: empty"
        message = self.unknown.get(monitor)
        if message is None:
            close: list[str] = []
            if len(self.errors) < MAX_ERRORS:  # difflib is slow; unlisted messages go unread
                close = difflib.get_close_matches(monitor.lower(), self.known, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            message = f"monitor: no monitor has id {monitor!r} in the config{hint}"
            _remember(self.unknown, monitor, message)
        return message

    def timestamp(self, text: str) -> int:
        pieces = _common_pieces(text)
        if pieces is None:
            ts_ms = _isoformat_ms(text)
        else:
            ts_ms = sum(pieces)
            hour, clock, rest = pieces
            if MIN_MS + DAY_MS <= hour <= MAX_MS - 2 * DAY_MS:  # else an offset may cross
                _remember(self.hours, text[:13], hour)  # the edge: check those every time
            _remember(self.clocks, text[13:19], clock)
            _remember(self.rests, text[19:], rest)
        if not MIN_MS <= ts_ms <= MAX_MS:
            raise _Problem(f"timestamp: {text!r} is outside the years 0001 to 9999 in UTC")
        return ts_ms

    def text(self, error: str) -> str | None:
        if not error:
            return None
        if "\x00" in error:
            raise _Problem("error: holds a NUL character")
        text = error if len(error) <= MAX_ERROR_TEXT else error[: MAX_ERROR_TEXT - 1] + "…"
        _remember(self.texts, error, text)
        return text

    def fail(self, line: int, message: str) -> None:
        if len(self.errors) < MAX_ERRORS:
            self.errors.append(RowError(line, message))
        else:
            self.unlisted += 1


class _QuotedRecords:
    """csv.reader over the lines that hold a quote: it gets a record's first line, then
    pulls more from the file while a quoted field goes on past the line's end."""

    def __init__(self, lines: Iterator[str]) -> None:
        self.lines = lines
        self.first: str | None = None
        self.extra = 0  # lines pulled past a record's first: later records start lower
        self.at_end = False  # the file ended inside a quoted field
        self.reader = csv.reader(self)

    def __iter__(self) -> Iterator[str]:
        return self

    def __next__(self) -> str:
        line, self.first = self.first, None
        if line is None:
            line = next(self.lines, None)
            if line is None:
                self.at_end = True
                raise StopIteration
            self.extra += 1
        return line

    def read(self, line: str) -> list[str]:
        self.first = line
        return next(self.reader, [])


def _isoformat_ms(text: str) -> int:
    try:
        return isoformat_ms(text)
    except ValueError as reason:
        raise _Problem(f"timestamp: {text!r} {reason}") from None


def _outcome_code(text: str) -> int:
    code = _CODES.get(text)
    if code is None:
        hint = "; use lower case" if text.lower() in _CODES else ""
        raise _Problem(f"outcome: {text!r} is not one of {_OUTCOMES}{hint}")
    return code


def _latency_us(text: str) -> int:
    if not text:
        return NO_LATENCY
    try:
        latency_ms = float(text)
    except ValueError:
        raise _Problem(f"latency_ms: {text!r} is not a number") from None
    if not math.isfinite(latency_ms):
        raise _Problem(f"latency_ms: {text!r} is not a finite number")
    if latency_ms < 0:
        raise _Problem(f"latency_ms: {text!r} is negative")
    if latency_ms > _MAX_LATENCY_MS:
        raise _Problem(f"latency_ms: {text!r} is more than {_MAX_LATENCY_MS:,.0f}")
    return round(latency_ms * 1000)


def _check_decodable(name: str, value: str) -> None:
    bad = _UNDECODABLE.search(value)
    if bad is not None:
        byte = ord(bad.group()) - 0xDC00
        raise _Problem(f"{name}: not valid UTF-8 (byte 0x{byte:02x}); save the file as UTF-8")


def _header_problem(names: list[str]) -> str:
    missing = [name for name in COLUMNS if name not in names]
    details = [f"missing {', '.join(missing)}"] if missing else []
    for name in names:
        if name not in (*COLUMNS, LOCATION):
            close = difflib.get_close_matches(name, (*COLUMNS, LOCATION), n=1)
            details.append(
                f"unknown {name!r}" + (f" (did you mean {close[0]!r}?)" if close else "")
            )
    if not details:
        details.append("a column repeats" if len(set(names)) < len(names) else "wrong order")
    got = ",".join(names)
    return f"header: expected {HEADER!r}, got {got!r} ({'; '.join(details)})"


def _remember(cache: dict[str, _V], key: str, value: _V) -> None:
    if len(cache) < _CACHE_MAX:
        cache[key] = value


def _latency_or_none(latency_us: int) -> int | None:
    return None if latency_us == NO_LATENCY else latency_us


def _no_progress(rows: int, size: int) -> None:
    pass
