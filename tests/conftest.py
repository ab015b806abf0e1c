"""Shared fixtures: the outbound check context against real loopback servers."""

from __future__ import annotations

import itertools
import pathlib
import re
import tempfile
from collections.abc import AsyncIterator, Iterator
from typing import TYPE_CHECKING

import pytest

from prober.checks.context import Shared
from prober.checks.session import open_shared

if TYPE_CHECKING:
    from tests.support.pg import Cluster


@pytest.fixture
async def shared() -> AsyncIterator[Shared]:
    async with open_shared() as value:
        yield value


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[Cluster]:
    """One throwaway PostgreSQL for the session, started by the first test asking for it
    (tests/support/pg.py). Never skipped: without Debian's binaries the test fails."""
    from tests.support.pg import MissingPostgres, start_cluster

    try:
        cluster = start_cluster(pathlib.Path(tempfile.mkdtemp(prefix="prober-pg-")))
    except MissingPostgres as e:
        pytest.fail(str(e))
    try:
        yield cluster
    finally:
        cluster.stop()


_databases = itertools.count(1)


@pytest.fixture
def pg_url(pg_cluster: Cluster, request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh, empty database of the session's cluster for this test (its URL, with the
    `prober` role's password); dropped afterwards."""
    slug = re.sub(r"[^a-z0-9_]+", "_", request.node.name.lower())[:40]
    name = f"t{next(_databases)}_{slug}"
    yield pg_cluster.new_database(name)
    pg_cluster.drop_database(name)
