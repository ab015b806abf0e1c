"""deploy/prometheus/: the scrape config, rules, rule tests and Alertmanager example pass
Debian's promtool and amtool, and a real Prometheus scraping a real `prober run` shows the
relabelling at work and answers every query of the Grafana dashboard with a series.

promtool, amtool and prometheus come from Debian's `prometheus` and
`prometheus-alertmanager` packages (scripts/check installs them): never skipped."""

from __future__ import annotations

import contextlib
import json
import pathlib
import re
import shutil
import socket
import ssl
import subprocess
import threading
import urllib.parse
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from tests.support.alertmanager import alertmanager, api
from tests.support.net import free_port
from tests.support.pki import Pki
from tests.support.proc import ProberRun, http_target, until

ROOT = pathlib.Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy" / "prometheus"
DASHBOARD = DEPLOY / "grafana-dashboard.json"
# Grafana's variables, as the checks read them: every monitor, a range long enough
VARIABLES = {
    "$monitor": ".+",
    "$job": ".+",
    "$__range": "1m",
    "$__rate_interval": "30s",
    "$__interval": "15s",
}


def tool(name: str) -> str:
    found = shutil.which(name) or shutil.which(name, path="/usr/bin")
    if found is None:
        pytest.fail(f"{name} is missing: scripts/check installs Debian's prometheus packages")
    return found


def run(*args: str, cwd: pathlib.Path = DEPLOY) -> str:
    done = subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, f"{' '.join(args)}:\n{done.stdout}\n{done.stderr}"
    return done.stdout


# --- the files, checked by the tools --------------------------------------------------


def test_prometheus_config_and_rules_are_valid() -> None:
    out = run(tool("promtool"), "check", "config", "prometheus.yml")
    assert "SUCCESS: 1 rule files found" in out
    out = run(tool("promtool"), "check", "rules", "rules/prober.rules.yml")
    assert re.search(r"SUCCESS: \d+ rules found", out)


def test_rule_unit_tests_pass() -> None:
    out = run(tool("promtool"), "test", "rules", "prober.tests.yml", cwd=DEPLOY / "rules")
    assert "SUCCESS" in out


def test_every_alert_is_unit_tested() -> None:
    rules = (DEPLOY / "rules" / "prober.rules.yml").read_text()
    alerts = set(re.findall(r"^\s*- alert: (\w+)$", rules, re.MULTILINE))
    tests = (DEPLOY / "rules" / "prober.tests.yml").read_text()
    tested = set(re.findall(r"^\s*alertname: (\w+)$", tests, re.MULTILINE))
    assert len(alerts) >= 8 and alerts - tested == set()


def test_scrape_config_targets_the_metrics_listener() -> None:
    text = (DEPLOY / "prometheus.yml").read_text()
    assert 'targets: ["127.0.0.1:9108"]' in text  # settings.metrics.listen's default
    assert "source_labels: [monitor]" in text and "target_label: instance" in text


def test_alertmanager_example_is_valid_and_routes_by_severity() -> None:
    amtool = tool("amtool")
    out = run(amtool, "check-config", "alertmanager.yml")
    assert "SUCCESS" in out
    for labels, receiver in [
        (["alertname=ProbeDown", "severity=critical", "monitor=api"], "pager"),
        (["alertname=ProbeCertificateExpiring", "severity=warning"], "tickets"),
        (["alertname=Other"], "tickets"),
    ]:
        out = run(amtool, "config", "routes", "test", "--config.file=alertmanager.yml", *labels)
        assert out.split() == [receiver], labels


def test_alertmanager_example_inhibits_as_it_says(tmp_path: pathlib.Path) -> None:
    """The shipped file in a real Alertmanager: a parent's ProbeDown inhibits its
    dependents (`depends_on`, also in a list) and the rules' ProbeFailed of the same
    monitor; a critical certificate alert inhibits the warning one."""
    config = (DEPLOY / "alertmanager.yml").read_text()
    assert "127.0.0.1:5001" in config  # receivers on loopback: nothing leaves the machine
    with alertmanager(tmp_path, config) as am:

        def alert(name: str, monitor: str, severity: str = "critical", **more: str) -> object:
            labels = {"alertname": name, "monitor": monitor, "location": "here"}
            return {"labels": {**labels, "severity": severity, **more}}

        api(am, "alerts", [
            alert("ProbeDown", "db"),
            alert("ProbeDown", "api", depends_on="db"),
            alert("ProbeDown", "web", depends_on="cache,db"),
            alert("ProbeDown", "dbx", depends_on="dbx2"),  # not "db": a whole name only
            alert("ProbeFailed", "db"),
            alert("ProbeFailed", "mail"),
            alert("ProbeCertificateExpiring", "mail", "warning"),
            alert("ProbeCertificateExpiring", "mail", "critical"),
        ])  # fmt: skip

        def states() -> list[tuple[str, str, str, str]]:
            return sorted(
                (
                    a["labels"]["alertname"],
                    a["labels"]["monitor"],
                    a["labels"]["severity"],
                    a["status"]["state"],
                )
                for a in api(am, "alerts")
            )

        expected = [
            ("ProbeCertificateExpiring", "mail", "critical", "active"),
            ("ProbeCertificateExpiring", "mail", "warning", "suppressed"),
            ("ProbeDown", "api", "critical", "suppressed"),
            ("ProbeDown", "db", "critical", "active"),
            ("ProbeDown", "dbx", "critical", "active"),
            ("ProbeDown", "web", "critical", "suppressed"),
            ("ProbeFailed", "db", "critical", "suppressed"),
            ("ProbeFailed", "mail", "critical", "active"),
        ]
        until(lambda: states() == expected, within=30, every=0.2)


# --- the dashboard's queries ----------------------------------------------------------


def test_dashboard_is_well_formed() -> None:
    board = json.loads(DASHBOARD.read_text())
    panels = board["panels"]
    assert len({p["id"] for p in panels}) == len(panels)
    variables = {v["name"] for v in board["templating"]["list"]}
    for panel in panels:
        box = panel["gridPos"]
        assert box["x"] + box["w"] <= 24 and box["w"] > 0 and box["h"] > 0
        for target in panel.get("targets", []):
            assert target["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
            used = set(re.findall(r"\$(\w+)", target["expr"])) - {"__range", "__rate_interval"}
            assert used <= variables, target["expr"]


def dashboard_queries() -> list[str]:
    """Every PromQL expression of the dashboard, Grafana's variables filled in; a
    `label_values(SELECTOR, LABEL)` variable query becomes `count by (LABEL) (SELECTOR)`."""
    board = json.loads(DASHBOARD.read_text())
    found = []
    for panel in board["panels"]:
        found += [t["expr"] for t in panel.get("targets", [])]
    for variable in board["templating"]["list"]:
        if variable["type"] == "query":
            text = variable["query"]["query"]
            match = re.fullmatch(r"label_values\((.+),\s*(\w+)\)", text)
            assert match, text
            found.append(f"count by ({match[2]}) ({match[1]})")
    filled = []
    for expr in found:
        for name, value in sorted(VARIABLES.items(), key=lambda kv: -len(kv[0])):
            expr = expr.replace(name, value)
        assert "$" not in expr, f"an unknown Grafana variable in {expr}"
        filled.append(expr)
    return filled


def test_dashboard_queries_parse(tmp_path: pathlib.Path) -> None:
    queries = dashboard_queries()
    assert len(queries) >= 20
    rules = {
        "groups": [
            {
                "name": "dashboard",
                "rules": [
                    {"record": f"dashboard:query_{i}", "expr": q} for i, q in enumerate(queries)
                ],
            }
        ]
    }
    path = tmp_path / "dashboard.rules.yml"
    path.write_text(json.dumps(rules))  # YAML reads JSON
    out = run(tool("promtool"), "check", "rules", str(path), cwd=tmp_path)
    assert f"SUCCESS: {len(queries)} rules found" in out


# --- a real Prometheus scraping a real prober -------------------------------------------


class _Ok(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = b"ok\n"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@contextlib.contextmanager
def https_target(pki: Pki) -> Iterator[int]:
    """An HTTPS target on loopback with a certificate from the test CA, in a thread."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Ok)
    context: ssl.SSLContext = pki.valid()
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


def refused_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=5) as response:
        return json.loads(response.read())


def query(port: int, expr: str) -> list[dict[str, Any]]:
    url = f"http://127.0.0.1:{port}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
    answer = get_json(url)
    assert answer["status"] == "success", answer
    result: list[dict[str, Any]] = answer["data"]["result"]
    return result


def answers(port: int, expr: str) -> bool:
    try:
        return bool(query(port, expr))
    except OSError:
        return False


@pytest.fixture
def scraped(tmp_path: pathlib.Path) -> Iterator[int]:
    """A `prober run` with an HTTP monitor up, one refused, an HTTPS one and a TCP one,
    scraped every second by a real Prometheus using deploy/prometheus/prometheus.yml (its
    target and intervals changed, its rules kept); yields Prometheus's port."""
    pki = Pki(tmp_path)
    metrics, listen, web = free_port(), free_port(), free_port()
    with http_target(tmp_path / "www") as http_port, https_target(pki) as tls_port:
        (tmp_path / "monitors.toml").write_text(
            f"""
[settings]
listen = "127.0.0.1:{listen}"
metrics = {{ listen = "127.0.0.1:{metrics}" }}
database = "sqlite:///data/prober.db"

[defaults]
interval = "1s"
timeout = "900ms"
down_after = 1

[[notifiers]]
id = "hook"
type = "webhook"
url = "http://127.0.0.1:{refused_port()}/hook"

[[monitors]]
id = "web"
name = "Web"
group = "Front"
type = "http"
url = "http://127.0.0.1:{http_port}/ok"

[[monitors]]
id = "gone"
type = "http"
url = "http://127.0.0.1:{refused_port()}/"

[[monitors]]
id = "secure"
type = "http"
url = "https://localhost:{tls_port}/"
ca_file = "{pki.ca_file}"

[[monitors]]
id = "port"
type = "tcp"
host = "127.0.0.1"
port = {http_port}
"""
        )
        prober = ProberRun(["run"], tmp_path)
        try:
            prober.wait_for("prober running")
            shutil.copytree(DEPLOY / "rules", tmp_path / "rules")
            (tmp_path / "prometheus.yml").write_text(
                (DEPLOY / "prometheus.yml")
                .read_text()
                .replace("127.0.0.1:9108", f"127.0.0.1:{metrics}")
                .replace("127.0.0.1:9093", f"127.0.0.1:{refused_port()}")
                .replace("scrape_interval: 15s", "scrape_interval: 1s")
                .replace("evaluation_interval: 15s", "evaluation_interval: 1s")
                .replace("scrape_timeout: 10s", "scrape_timeout: 1s")
            )
            proc = subprocess.Popen(
                [
                    tool("prometheus"),
                    f"--config.file={tmp_path / 'prometheus.yml'}",
                    f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                    f"--web.listen-address=127.0.0.1:{web}",
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                text=True,
            )
            try:
                try:
                    until(lambda: answers(web, 'up{job="prober"} == 1'), within=60, every=0.2)
                except AssertionError:
                    targets = get_json(f"http://127.0.0.1:{web}/api/v1/targets")["data"]
                    errors = [t.get("lastError") for t in targets["activeTargets"]]
                    raise AssertionError(f"Prometheus could not scrape prober: {errors}") from None
                yield web
            finally:
                proc.terminate()
                _, err = proc.communicate(timeout=30)
                assert proc.returncode == 0, err[-3000:]
        finally:
            assert prober.stop() == 0, prober.log


def test_real_prometheus_relabels_and_answers_every_dashboard_query(scraped: int) -> None:
    # a few scrapes, so that rate() and increase() over the dashboard's range have two points
    until(lambda: answers(scraped, 'count_over_time(up{job="prober"}[1m]) >= 5'), within=60)
    success = {r["metric"]["monitor"]: r for r in query(scraped, "probe_success")}
    assert set(success) == {"web", "gone", "secure", "port"}
    for monitor, series in success.items():
        assert series["metric"]["instance"] == monitor
        assert series["metric"]["job"] == "prober"
    assert success["gone"]["value"][1] == "0" and success["web"]["value"][1] == "1"
    [up] = query(scraped, 'up{job="prober"}')
    assert re.fullmatch(r"127\.0\.0\.1:\d+", up["metric"]["instance"])  # the prober's own
    rules = (DEPLOY / "rules" / "prober.rules.yml").read_text()
    families = set(re.findall(r"(?<![:\w])((?:probe|prober|monitor)_\w+)", rules))
    assert len(families) >= 8
    missing = [f for f in sorted(families) if not query(scraped, f"count({f})")]
    assert missing == [], "families the rules use but prober does not export"
    empty = [expr for expr in dashboard_queries() if not query(scraped, expr)]
    assert empty == [], "dashboard queries with no series (is each family exported?)"

    def evaluated() -> bool:  # every rule at least once, without error
        groups = get_json(f"http://127.0.0.1:{scraped}/api/v1/rules")["data"]["groups"]
        health = [(r["name"], r["health"], r.get("lastError")) for g in groups for r in g["rules"]]
        assert [h for h in health if h[1] == "err"] == []
        return all(h[1] == "ok" for h in health)

    until(evaluated, within=90, every=0.5)  # the recording group runs every 30 s
    # recorded from the counters, once two scrapes of them fall in a group's evaluation
    until(lambda: query(scraped, "monitor:prober_downtime:ratio_rate5m"), within=90, every=0.5)
