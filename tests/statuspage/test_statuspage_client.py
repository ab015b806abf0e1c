"""Statuspage's own clients read our /api/v2 unchanged.

Two client libraries from npm, installed here from the registry (node and npm are on the
machine; scripts/check needs nothing more), run by node against the status page app
serving a real database on loopback:
- `statuspage.js` (Benricheson101): every public v2 endpoint, and a JSON reviver that turns
  each timestamp into a JavaScript Date. Its constructor takes a page id and builds an
  axios instance for `https://ID.statuspage.io/api/v2`; it has no option for another
  host, so the test sets that instance's `defaults.baseURL` (axios's own documented way
  to change it) before any request: nothing leaves loopback.
- `statuspage.io` (ffflorian): a documented `setApiUrl(url)`; its maintenance getters all
  read `upcoming.json` (its own bug), so only that one of them is asked.
(PyPI's candidates are clients of Statuspage's manage API at api.statuspage.io, which
needs a key, not of a page's public /api/v2.)

What the clients parsed must be what we served: every value equal, every timestamp a
valid Date at the same millisecond.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import pathlib
import re
import shutil
import subprocess
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from prober.config import load_config
from prober.config.load import Config
from prober.results import CheckResult, Outcome
from prober.store.db import open_engine
from prober.store.ledger import TrackSpec
from prober.store.writer import Observation, ResultWriter
from statuspage.app import create_app
from statuspage.health import Health

PACKAGES = ("statuspage.js@1.0.17", "statuspage.io@3.2.10")
NOW = dt.datetime.now(dt.UTC).replace(microsecond=0)
SEOUL = dt.timezone(dt.timedelta(hours=9))


def _at(delta: dt.timedelta) -> str:
    return (NOW + delta).astimezone(SEOUL).isoformat()


CONFIG = f"""
[settings]
title = "Acme Status"
public_url = "https://status.example.com"
timezone = "Asia/Seoul"

[[monitors]]
id = "api"
name = "API"
group = "Backend"
type = "http"
url = "http://127.0.0.1:9/"
interval = "1m"

[[monitors]]
id = "db"
name = "Database"
group = "Backend"
type = "tcp"
host = "127.0.0.1"
port = 9
interval = "1m"

[[monitors]]
id = "secret-db"
name = "Internal DB"
type = "tcp"
host = "127.0.0.1"
port = 9
interval = "1m"
public = false

[[maintenance]]
title = "DB upgrade"
monitors = ["db"]
start = "{_at(dt.timedelta(minutes=-10))}"
end = "{_at(dt.timedelta(minutes=50))}"

[[maintenance]]
title = "Network work"
monitors = ["api", "db"]
start = "{_at(dt.timedelta(days=1))}"
end = "{_at(dt.timedelta(days=1, hours=1))}"

[[maintenance]]
title = "Old upgrade"
monitors = ["db", "secret-db"]
start = "{_at(dt.timedelta(minutes=-28))}"
end = "{_at(dt.timedelta(minutes=-25))}"
"""
INCIDENT = f"""
title = "Elevated API errors"
impact = "major"
components = {{ api = "partial_outage" }}
detected = "api"

[[updates]]
at = "{_at(dt.timedelta(minutes=-15))}"
status = "investigating"
body = "We are looking into **elevated** error rates."

[[updates]]
at = "{_at(dt.timedelta(minutes=-5))}"
status = "identified"
body = "A bad deploy; rolling back."
notify = false
"""
# statuspage.js's reviver: a string matching this becomes a Date (JavaScript's rules)
JS_DATE = re.compile(
    r"^(\d{4})(-(\d{2}))??(-(\d{2}))??(T(\d{2}):(\d{2})(:(\d{2}))??(\.(\d+))??"
    r"(([+-]{1}\d{2}:\d{2})|Z)??)??$"
)
SCRIPT = r"""
const {Statuspage} = require('statuspage.js');
const io = require('statuspage.io');

// A Date as {"$date": epoch ms} (null: Invalid Date), so the test can compare it.
const mark = value => {
  if (value instanceof Date) return {$date: isNaN(value.getTime()) ? null : value.getTime()};
  if (Array.isArray(value)) return value.map(mark);
  if (value && typeof value === 'object') {
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, mark(v)]));
  }
  return value;
};

(async () => {
  const base = process.argv[2];
  const js = new Statuspage('ours');
  js.axios.defaults.baseURL = `${base}/api/v2`;  // before any request
  const other = new io.Statuspage('ours');
  other.setApiUrl(base);
  const out = {js: {}, io: {}};
  for (const name of ['summary', 'status', 'components', 'allIncidents', 'unresolvedIncidents',
                      'allScheduledMaintenances', 'activeScheduledMaintenances',
                      'upcomingScheduledMaintenances']) {
    out.js[name] = mark(await js[name]());
  }
  out.io.summary = await other.api.getSummary();
  out.io.status = await other.api.getStatus();
  out.io.components = await other.api.getComponents();
  out.io.allIncidents = await other.api.incidents.getAll();
  out.io.unresolvedIncidents = await other.api.incidents.getUnresolved();
  out.io.upcomingScheduledMaintenances = await other.api.scheduledMaintenances.getUpcoming();
  process.stdout.write(JSON.stringify(out));
})().catch(error => { console.error(error); process.exit(1); });
"""
ROUTES = {
    "summary": "/api/v2/summary.json",
    "status": "/api/v2/status.json",
    "components": "/api/v2/components.json",
    "allIncidents": "/api/v2/incidents.json",
    "unresolvedIncidents": "/api/v2/incidents/unresolved.json",
    "allScheduledMaintenances": "/api/v2/scheduled-maintenances.json",
    "activeScheduledMaintenances": "/api/v2/scheduled-maintenances/active.json",
    "upcomingScheduledMaintenances": "/api/v2/scheduled-maintenances/upcoming.json",
}


@pytest.fixture(scope="module")
def clients(tmp_path_factory: pytest.TempPathFactory) -> pathlib.Path:
    """The npm packages, installed from the registry into a folder of their own."""
    npm = shutil.which("npm")
    if npm is None or shutil.which("node") is None:
        pytest.fail("node and npm are needed for this test: apt-get install nodejs npm")
    folder = tmp_path_factory.mktemp("statuspage-clients")
    done = subprocess.run(
        [
            npm,
            "install",
            "--prefix",
            str(folder),
            "--no-audit",
            "--no-fund",
            "--ignore-scripts",
            *PACKAGES,
        ],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    (folder / "read.js").write_text(SCRIPT)
    return folder


def _config(tmp_path: pathlib.Path) -> Config:
    (tmp_path / "incidents").mkdir()
    (tmp_path / "incidents" / "api-errors.toml").write_text(INCIDENT)
    path = tmp_path / "monitors.toml"
    path.write_text(CONFIG)
    return load_config(path)


def _write(config: Config) -> None:
    """Half an hour of results: API down for the last 20 minutes (an open incident)."""
    open_engine(config.database_path).dispose()
    writer = ResultWriter(
        config.database_path, "default", [TrackSpec.of(m) for m in config.monitors]
    )
    writer.start()
    for minutes in range(30, 0, -1):
        at = NOW - dt.timedelta(minutes=minutes)
        api = (
            CheckResult(Outcome.DOWN, 5.0, error="status: saw 503, wanted [200]")
            if minutes <= 20
            else CheckResult(Outcome.UP, 40.0, status_code=200)
        )
        writer.submit(Observation("api", at, api))
        for other in ("db", "secret-db"):
            writer.submit(Observation(other, at, CheckResult(Outcome.UP, 2.0)))
    assert writer.flush(10)
    writer.close()


def as_client_sees(value: Any) -> Any:
    """Our JSON as statuspage.js gives it back: every string its reviver takes for a date
    as that moment's epoch milliseconds (a date alone: UTC midnight, as JavaScript)."""
    if isinstance(value, dict):
        return {k: as_client_sees(v) for k, v in value.items()}
    if isinstance(value, list):
        return [as_client_sees(v) for v in value]
    if isinstance(value, str) and JS_DATE.match(value):
        moment = dt.datetime.fromisoformat(value)
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=dt.UTC)
        return {"$date": round(moment.timestamp() * 1000)}
    return value


async def _served(session: aiohttp.ClientSession, base: str) -> dict[str, Any]:
    served = {}
    for name, route in ROUTES.items():
        async with session.get(base + route) as response:
            assert response.status == 200, route
            served[name] = await response.json()
    return served


def _node_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
    return env | {"NO_PROXY": "127.0.0.1", "no_proxy": "127.0.0.1"}


async def _read_with_clients(folder: pathlib.Path, base: str) -> dict[str, Any]:
    node = await asyncio.create_subprocess_exec(
        "node",
        "read.js",
        base,
        cwd=folder,
        env=_node_env(),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(node.communicate(), timeout=120)
    assert node.returncode == 0, err.decode()
    parsed: dict[str, Any] = json.loads(out)
    return parsed


@pytest.mark.timeout(900)  # the first run installs the clients from the registry
async def test_statuspage_clients_parse_every_endpoint(
    clients: pathlib.Path, tmp_path: pathlib.Path
) -> None:
    config = _config(tmp_path)
    _write(config)
    app = create_app(config, Health(lambda: True, lambda: True))
    async with TestServer(app, host="127.0.0.1") as server, aiohttp.ClientSession() as session:
        base = f"http://127.0.0.1:{server.port}"
        for _ in range(5):  # the page may refresh between two reads (every 60 s): read again
            served = await _served(session, base)
            read = await _read_with_clients(clients, base)
            if await _served(session, base) == served:
                break
        else:
            pytest.fail("the page changed under every attempt")

    for name, body in served.items():
        assert read["js"][name] == as_client_sees(body), name
        if name in read["io"]:
            assert read["io"][name] == body, name
    text = json.dumps(read)
    assert "Internal DB" not in text and "secret-db" not in text

    js = read["js"]
    dates = [v for k, v in _pairs(js) if k == "$date"]
    assert len(dates) > 50 and None not in dates  # every timestamp a valid Date
    # API down and Database in maintenance: half of the known monitors down
    assert js["status"]["status"] == {"indicator": "critical", "description": "Major System Outage"}
    components = {c["name"]: c["status"] for c in js["components"]["components"]}
    assert components == {
        "Backend": "major_outage",  # the worst of its members
        "API": "major_outage",  # an open incident: worse than the declared partial_outage
        "Database": "under_maintenance",
    }

    (incident,) = js["unresolvedIncidents"]["incidents"]  # one: the detected one is part of it
    assert (incident["id"], incident["name"]) == ("api-errors", "Elevated API errors")
    assert (incident["status"], incident["impact"]) == ("identified", "major")
    assert incident["started_at"]["$date"] == _ms(NOW - dt.timedelta(minutes=20))
    updates = incident["incident_updates"]
    assert [u["status"] for u in updates] == ["identified", "investigating"]
    assert [u["deliver_notifications"] for u in updates] == [False, True]  # newest first
    assert updates[1]["created_at"]["$date"] == _ms(NOW - dt.timedelta(minutes=15))
    assert (updates[0]["custom_tweet"], updates[0]["tweet_id"]) == (None, None)
    assert updates[1]["affected_components"][0]["new_status"] == "partial_outage"
    assert js["summary"]["incidents"] == js["unresolvedIncidents"]["incidents"]
    assert [i["name"] for i in js["allIncidents"]["incidents"]] == ["Elevated API errors"]

    every = js["allScheduledMaintenances"]["scheduled_maintenances"]
    assert [(m["name"], m["status"]) for m in every] == [
        ("Network work", "scheduled"),
        ("DB upgrade", "in_progress"),
        ("Old upgrade", "completed"),
    ]
    served_at = js["summary"]["page"]["updated_at"]["$date"]
    for m in every:
        assert m["created_at"]["$date"] <= served_at  # never in the future
        assert [c["name"] for c in m["components"]] in (["API", "Database"], ["Database"])
        for u in m["incident_updates"]:
            assert u["affected_components"], m["name"]
    assert [m["name"] for m in js["activeScheduledMaintenances"]["scheduled_maintenances"]] == [
        "DB upgrade"
    ]
    assert [m["name"] for m in js["upcomingScheduledMaintenances"]["scheduled_maintenances"]] == [
        "Network work"
    ]


def _ms(moment: dt.datetime) -> int:
    return round(moment.timestamp() * 1000)


def _pairs(value: Any) -> list[tuple[str, Any]]:
    if isinstance(value, dict):
        return [pair for k, v in value.items() for pair in [(k, v), *_pairs(v)]]
    if isinstance(value, list):
        return [pair for v in value for pair in _pairs(v)]
    return []
