"""A month's latency percentiles (issue 17) on a real database written by import-results,
against the nearest rank computed here from the same latencies: from the rollups'
histograms, within 0.5 % (1/256), the same before and after prune. The latencies
are web-like (most 100 ms to 1 s, a tail to 30 s, a few below 1 ms), where the old
histogram reported 270 ms for an exact 279."""

from __future__ import annotations

import csv
import datetime as dt
import math
import random
import textwrap

import pytest

from prober import history
from prober.config import Config, load_config
from prober.report import compute
from prober.report.model import LatencyStats
from prober.report.monthly import open_existing

START = dt.datetime(2026, 10, 1, tzinfo=dt.UTC)
MINUTES = 31 * 24 * 60  # October, one result a minute
NOW = dt.datetime(2026, 12, 3, 6, 0, tzinfo=dt.UTC)  # retention (7 days) reaches October


def _latency_us(rng: random.Random) -> int:
    roll = rng.random()
    if roll < 0.01:
        return rng.randrange(50, 1_000)  # below 1 ms (a cache in front)
    if roll < 0.05:
        return rng.randrange(1_000_000, 30_000_000)  # the slow tail, up to 30 s
    return int(rng.lognormvariate(math.log(280_000), 0.45))  # around 280 ms


def _rows() -> list[tuple[dt.datetime, str, int | None]]:
    rng = random.Random(17)
    rows = []
    for minute in range(MINUTES):
        at = START + dt.timedelta(minutes=minute)
        outcome = rng.choices(["up", "degraded", "down", "unknown"], [90, 6, 3, 1])[0]
        latency = None if outcome == "unknown" else _latency_us(rng)
        rows.append((at, outcome, latency))
    rows += rows[:: MINUTES // 40]  # repeated rows: imported once
    return rows


def _nearest_rank_ms(latencies_us: list[int], p: int) -> float:
    ordered = sorted(latencies_us)
    return ordered[max(1, math.ceil(p * len(ordered) / 100)) - 1] / 1000


@pytest.fixture(scope="module")
def config(tmp_path_factory: pytest.TempPathFactory) -> Config:
    root = tmp_path_factory.mktemp("percentiles")
    (root / "monitors.toml").write_text(
        textwrap.dedent(
            """
            [settings]
            timezone = "Europe/Berlin"
            database = "sqlite:///data/prober.db"
            retention_days = 7

            [[monitors]]
            id = "api"
            type = "tcp"
            host = "127.0.0.1"
            port = 9
            """
        )
    )
    with (root / "history.csv").open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["monitor", "timestamp", "outcome", "latency_ms", "error"])
        for at, outcome, latency_us in _rows():
            latency = "" if latency_us is None else f"{latency_us / 1000:.3f}"
            error = "HTTP 503" if outcome == "down" else ""
            writer.writerow(["api", at.strftime("%Y-%m-%dT%H:%M:%SZ"), outcome, latency, error])
    loaded = load_config(str(root / "monitors.toml"))
    history.import_results(loaded, root / "history.csv", now=NOW)
    return loaded


def _latency(config: Config) -> LatencyStats:
    conn = open_existing(config)
    try:
        (monitor,) = compute.build(conn, config, "2026-10", now=NOW).monitors
    finally:
        conn.close()
    return monitor.latency


def _in_the_month() -> list[int]:
    """The successful checks' latencies of October in Berlin, each minute once."""
    start, end = (
        dt.datetime(2026, 9, 30, 22, tzinfo=dt.UTC),
        dt.datetime(2026, 10, 31, 23, tzinfo=dt.UTC),
    )
    seen = {at: (outcome, latency) for at, outcome, latency in _rows()}
    return [
        latency
        for at, (outcome, latency) in seen.items()
        if start <= at < end and outcome in ("up", "degraded") and latency is not None
    ]


def test_percentiles_are_within_half_a_percent_and_the_same_after_prune(config: Config) -> None:
    latencies = _in_the_month()
    exact = {p: _nearest_rank_ms(latencies, p) for p in (50, 95, 99)}
    assert 250 < exact[50] < 350 and exact[99] > 1_000  # above 100 ms, with a tail

    kept = _latency(config)
    for p, got in ((50, kept.p50), (95, kept.p95), (99, kept.p99)):
        assert got is not None
        assert abs(got - exact[p]) <= exact[p] * 0.005, p  # DESIGN.md: within 0.5 %
        assert abs(got - exact[p]) <= exact[p] / 256, p  # what the buckets promise
    assert (kept.min, kept.max) == (min(latencies) / 1000, max(latencies) / 1000)
    assert kept.avg == pytest.approx(sum(latencies) / len(latencies) / 1000)

    assert history.prune(config, now=NOW) > 40_000  # October's raw results are gone
    assert _latency(config) == kept
