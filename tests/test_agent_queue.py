"""The agent's disk queue: bounded with drops counted, drained in order, acknowledged
exactly, kept across close and kill -9, private, and shared by a producer and a sender."""

from __future__ import annotations

import datetime as dt
import os
import pathlib
import sqlite3
import stat
import subprocess
import sys
import textwrap
import threading

import pytest

from prober.agent import wire
from prober.agent.queue import DiskQueue, QueueError, QueueWriter
from prober.results import AssertionResult, Certificate, Outcome

ROOT = pathlib.Path(__file__).resolve().parents[1]


def result(ts_ms: int, monitor: str = "api") -> wire.WireResult:
    return wire.WireResult(monitor, ts_ms, Outcome.UP, 12_500, status_code=200, dns_us=800)


def times(pending_or_results: object) -> list[int]:
    results = getattr(pending_or_results, "results", pending_or_results)
    assert isinstance(results, tuple | list)
    return [r.ts_ms for r in results]


@pytest.fixture
def path(tmp_path: pathlib.Path) -> pathlib.Path:
    return tmp_path / "agent.db"


def test_full_queue_drops_the_oldest_and_counts_them(path: pathlib.Path) -> None:
    disk = DiskQueue(path, "frankfurt", max_rows=5)
    disk.put([result(t) for t in range(4)])
    disk.put([result(t) for t in range(4, 7)])
    assert (disk.depth, disk.dropped) == (5, 2)
    pending = disk.peek(100)
    assert times(pending) == [2, 3, 4, 5, 6]
    assert (pending.dropped, pending.queue_depth) == (2, 0)
    disk.put([result(t) for t in range(7, 20)])  # more than fits in one put
    assert times(disk.peek(100)) == [15, 16, 17, 18, 19]
    assert disk.dropped == 15
    disk.close()
    reopened = DiskQueue(path, "frankfurt", max_rows=5)
    assert (reopened.depth, reopened.dropped) == (5, 15)
    reopened.close()


def test_drops_are_reported_until_a_batch_carrying_them_is_acknowledged(
    path: pathlib.Path,
) -> None:
    disk = DiskQueue(path, "frankfurt", max_rows=3)
    disk.put([result(t) for t in range(5)])
    told = disk.peek(1)
    assert (times(told), told.dropped) == ([2], 2)
    disk.put([result(5), result(6)])  # drops 2 (being sent) and 3 (the hub never hears it)
    assert disk.dropped == 4
    assert disk.ack(told)
    assert disk.dropped == 1
    assert disk.peek(10).dropped == 1


def test_a_result_dropped_after_the_peek_but_delivered_is_not_counted(
    path: pathlib.Path,
) -> None:
    disk = DiskQueue(path, "frankfurt", max_rows=2)
    disk.put([result(0), result(1)])
    sent = disk.peek(2)
    disk.put([result(2)])  # drops 0, which the hub is storing right now
    assert disk.dropped == 1
    assert disk.ack(sent)
    assert (disk.dropped, times(disk.peek(10))) == (0, [2])


def test_drained_in_order_and_acknowledged_exactly(path: pathlib.Path) -> None:
    disk = DiskQueue(path, "frankfurt", max_rows=1000)
    disk.put([result(t, monitor) for t in range(3) for monitor in ("web", "api")])
    first = disk.peek(4)
    assert [(r.monitor, r.ts_ms) for r in first.results] == [
        ("web", 0),
        ("api", 0),
        ("web", 1),
        ("api", 1),
    ]
    assert (first.seq, first.queue_depth) == (0, 2)
    disk.put([result(3, "web")])  # arrives between send and ack: stays
    assert disk.ack(first)
    assert not disk.ack(first)  # a second ack of the same batch removes nothing
    rest = disk.peek(10)
    assert [(r.monitor, r.ts_ms) for r in rest.results] == [("web", 2), ("api", 2), ("web", 3)]
    assert (rest.seq, rest.queue_depth, disk.depth) == (1, 0, 3)


def test_unacknowledged_batch_is_sent_again_after_a_restart(path: pathlib.Path) -> None:
    disk = DiskQueue(path, "frankfurt", max_rows=100)
    disk.put([result(t) for t in range(5)])
    sent = disk.peek(3)
    disk.close()  # as if killed between send and ack
    reopened = DiskQueue(path, "frankfurt", max_rows=100)
    again = reopened.peek(3)
    assert again == sent
    assert reopened.ack(again)
    assert times(reopened.peek(10)) == [3, 4]
    assert reopened.peek(10).seq == sent.seq + 1


def test_empty_queue_gives_a_health_batch(path: pathlib.Path) -> None:
    disk = DiskQueue(path, "frankfurt", max_rows=10)
    pending = disk.peek(10)
    assert pending.batch(sent_ms=99) == wire.Batch("frankfurt", 99, 0, 0, 0, ())
    assert disk.ack(pending)
    assert disk.peek(10).seq == 1


def test_every_field_survives_the_disk(path: pathlib.Path) -> None:
    full = wire.WireResult(
        "api",
        1_796_212_795_123,
        Outcome.DOWN,
        5_003_120,
        status_code=503,
        error="status 503 not in [200] — ünïcode",
        dns_us=1,
        connect_us=2,
        tls_us=3,
        first_byte_us=4,
        assertions=(AssertionResult("status", False, "503", "[200]"),),
        certificate=Certificate(dt.datetime(2027, 1, 1, tzinfo=dt.UTC), "CN=a", "CN=b"),
        details={"redirects": [1, 2], "note": None},
    )
    bare = wire.WireResult("db", 7, Outcome.UNKNOWN, 0)
    disk = DiskQueue(path, "frankfurt", max_rows=10)
    disk.put([full, bare])
    disk.close()
    assert DiskQueue(path, "frankfurt", max_rows=10).peek(10).results == (full, bare)


def test_repeated_extras_are_kept_once_and_swept_when_unused(path: pathlib.Path) -> None:
    def noted(t: int) -> wire.WireResult:
        return wire.WireResult("api", t, Outcome.UP, 1, details={"n": t % 4})

    def extras() -> int:
        with sqlite3.connect(path) as conn:
            return int(conn.execute("SELECT count(*) FROM extra").fetchone()[0])

    disk = DiskQueue(path, "frankfurt", max_rows=3)
    for t in range(20):  # drops turn the queue over again and again: sweeps between puts
        disk.put([noted(t)])
    assert disk.peek(10).results == (noted(17), noted(18), noted(19))
    assert extras() <= 4
    disk.put([noted(20), noted(21), noted(22)])  # extras the sweep forgot, written again
    pending = disk.peek(10)
    assert pending.results == (noted(20), noted(21), noted(22))
    assert disk.ack(pending)
    assert extras() == 0
    disk.put([noted(23)])
    assert disk.peek(10).results == (noted(23),)


def test_a_renamed_location_drains_its_old_results_under_their_own_name(
    path: pathlib.Path,
) -> None:
    old = DiskQueue(path, "frankfurt", max_rows=10)
    old.put([result(0), result(1)])
    old.close()
    renamed = DiskQueue(path, "fra-1", max_rows=10)
    renamed.put([result(2)])
    first = renamed.peek(10)
    assert (first.location, times(first), first.queue_depth) == ("frankfurt", [0, 1], 1)
    assert renamed.ack(first)
    second = renamed.peek(10)
    assert (second.location, times(second)) == ("fra-1", [2])


def test_file_and_its_wal_are_private(path: pathlib.Path) -> None:
    disk = DiskQueue(path, "frankfurt", max_rows=10)
    disk.put([result(0)])
    for name in ("agent.db", "agent.db-wal", "agent.db-shm"):
        assert stat.S_IMODE(os.stat(path.with_name(name)).st_mode) == 0o600, name
    disk.close()


def test_refuses_a_file_that_is_not_its_queue(path: pathlib.Path) -> None:
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE result (monitor_id INTEGER)")
    conn.commit()
    conn.close()
    with pytest.raises(QueueError, match="is not an agent's queue"):
        DiskQueue(path, "frankfurt", max_rows=10)
    newer = path.with_name("newer.db")
    DiskQueue(newer, "frankfurt", max_rows=10).close()
    conn = sqlite3.connect(newer)
    conn.execute("PRAGMA user_version=2")
    conn.close()
    with pytest.raises(QueueError, match="a queue of a newer prober"):
        DiskQueue(newer, "frankfurt", max_rows=10)


def test_writer_thread_and_sender_share_the_queue(path: pathlib.Path) -> None:
    """One producer (through the writer thread) and one sender at once: each result
    arrives once, in order."""
    disk = DiskQueue(path, "frankfurt", max_rows=100_000)
    writer = QueueWriter(disk, linger=0.001)
    writer.start()
    total = 3000
    received: list[int] = []
    produced = threading.Event()

    def send() -> None:
        while True:
            done = produced.is_set()
            pending = disk.peek(50)
            received.extend(times(pending))
            assert disk.ack(pending)
            if done and not pending.results:
                return

    sender = threading.Thread(target=send)
    sender.start()
    for t in range(total):
        writer.submit(result(t))
    assert writer.flush(timeout=60)
    produced.set()
    sender.join(timeout=60)
    writer.close()
    assert received == list(range(total))
    assert (disk.depth, disk.dropped) == (0, 0)


def test_writer_counts_what_it_could_not_hold(path: pathlib.Path) -> None:
    disk = DiskQueue(path, "frankfurt", max_rows=10)
    writer = QueueWriter(disk, max_waiting=0)  # nothing may wait: every result is lost
    writer.start()
    for t in range(3):
        writer.submit(result(t))
    assert writer.flush(timeout=60)
    writer.close()
    assert (disk.depth, disk.dropped, disk.peek(10).dropped) == (0, 3, 3)


CHILD = textwrap.dedent(
    """
    import pathlib, sys
    from prober.agent import wire
    from prober.agent.queue import DiskQueue, QueueWriter
    from prober.results import Outcome

    writer = QueueWriter(DiskQueue(pathlib.Path(sys.argv[1]), "frankfurt", 1_000_000), 0.001)
    writer.start()
    sent = 0
    while True:
        for _ in range(10):
            writer.submit(wire.WireResult("api", sent, Outcome.UP, 1000))
            sent += 1
        writer.flush()
        print(sent, flush=True)  # every result up to here is committed
    """
)


def test_kill_9_keeps_every_committed_result(path: pathlib.Path) -> None:
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(path)],
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    try:
        assert child.stdout is not None
        committed = 0
        while committed < 2000:  # the child writes until killed; pytest's timeout bounds it
            line = child.stdout.readline()
            assert line, "the child stopped writing"
            committed = int(line)
    finally:
        child.kill()  # SIGKILL, in the middle of writing
        child.wait(timeout=60)
        if child.stdout is not None:
            child.stdout.close()
    disk = DiskQueue(path, "frankfurt", max_rows=1_000_000)
    assert disk.depth >= committed
    kept = times(disk.peek(disk.depth))
    assert kept == list(range(len(kept)))  # in order, none missing
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    disk.close()
