"""A real Alertmanager (Debian's prometheus-alertmanager, on loopback, its own config and
storage) hears of a real `prober run`'s incident: active while the target is down, across
a restart of the prober without a second notification, resolved after recovery; and a
maintenance window becomes one silence. Never skipped: scripts/check installs it."""

from __future__ import annotations

import contextlib
import json
import pathlib
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from tests.support.alertmanager import alertmanager, api
from tests.support.net import free_port
from tests.support.proc import ProberRun, until


class Receiver:
    """Alertmanager's webhook receiver on loopback: keeps every notification it gets."""

    def __init__(self) -> None:
        self.notifications: list[dict[str, Any]] = []
        received = self.notifications

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                received.append(json.loads(self.rfile.read(length)))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = int(self.server.server_address[1])
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def statuses(self, alertname: str) -> list[tuple[str, str]]:
        """(status, monitor) of every notification about `alertname`, in order."""
        return [
            (n["status"], a["labels"].get("monitor", ""))
            for n in list(self.notifications)
            for a in n["alerts"]
            if a["labels"]["alertname"] == alertname
        ]


@contextlib.contextmanager
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    r.thread.start()
    try:
        yield r
    finally:
        r.server.shutdown()
        r.server.server_close()


def hook_config(hook: int) -> str:
    """Every alert to the webhook `hook`, grouped per monitor, notified within a second."""
    return json.dumps(  # JSON is YAML
        {
            "route": {
                "receiver": "hook",
                "group_by": ["alertname", "monitor"],
                "group_wait": "1s",
                "group_interval": "1s",
                "repeat_interval": "1h",
            },
            "receivers": [
                {
                    "name": "hook",
                    "webhook_configs": [
                        {"url": f"http://127.0.0.1:{hook}/", "send_resolved": True}
                    ],
                }
            ],
        }
    )


def probe_down(port: int) -> list[dict[str, Any]]:
    """ProbeDown alerts Alertmanager holds (active, silenced or inhibited; not resolved)."""
    return list(api(port, "alerts", filter='alertname="ProbeDown"'))


class Target:
    """A TCP target on loopback: up while it listens (the kernel completes the handshake)."""

    def __init__(self) -> None:
        self.port = free_port()
        self.sock: socket.socket | None = None

    def up(self) -> None:
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", self.port))
        sock.listen(64)
        self.sock = sock

    def down(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None


def write_config(tmp_path: pathlib.Path, am: int, target: int) -> None:
    (tmp_path / "monitors.toml").write_text(
        f"""
[settings]
listen = "127.0.0.1:{free_port()}"
metrics = {{ listen = "" }}
database = "sqlite:///data/prober.db"
alert_group_wait = "0s"
location = "here"

[defaults]
interval = "1s"
timeout = "900ms"
down_after = 1
notify = ["am"]

[[notifiers]]
id = "am"
type = "alertmanager"
url = "http://127.0.0.1:{am}"
repeat = "1s"
silences = true
labels = {{ team = "web" }}

[[monitors]]
id = "svc"
name = "Service"
type = "tcp"
host = "127.0.0.1"
port = {target}

[[monitors]]
id = "quiet"
type = "tcp"
host = "127.0.0.1"
port = {target}

[[maintenance]]
title = "Quiet hours"
monitors = ["quiet"]
start = "2026-01-01T00:00:00Z"
end = "2099-01-01T00:00:00Z"
"""
    )


def test_alertmanager_hears_an_incident_across_a_restart(tmp_path: pathlib.Path) -> None:
    target = Target()
    target.up()
    with receiver() as hook, alertmanager(tmp_path, hook_config(hook.port)) as am:
        write_config(tmp_path, am, target.port)
        prober = ProberRun(["run"], tmp_path)
        try:
            prober.wait_for("prober running")
            # the window running since January: one silence, matching `quiet` here
            until(lambda: api(am, "silences"), within=30)
            target.down()
            until(lambda: probe_down(am), within=30)
            [alert] = probe_down(am)
            assert alert["status"]["state"] == "active"
            assert alert["labels"] == {
                "alertname": "ProbeDown",
                "monitor": "svc",
                "location": "here",
                "severity": "critical",
                "team": "web",
            }
            assert alert["annotations"]["monitor_name"] == "Service"
            until(lambda: hook.statuses("ProbeDown") == [("firing", "svc")], within=30)
            assert prober.stop() == 0, prober.log

            prober = ProberRun(["run"], tmp_path)  # restarted while the target is down
            start = prober.wait_for("prober running")
            sends = prober.lines()
            prober.wait_for("alert sent notifier=am kind=reminder", after=start)
            prober.wait_for("alert sent notifier=am kind=reminder", after=sends + 1)
            [again] = probe_down(am)
            assert again["fingerprint"] == alert["fingerprint"]
            assert again["startsAt"] == alert["startsAt"]
            assert again["status"]["state"] == "active"

            target.up()
            until(lambda: probe_down(am) == [], within=30)
            until(lambda: ("resolved", "svc") in hook.statuses("ProbeDown"), within=30)
        finally:
            assert prober.stop() == 0, prober.log
            target.down()
        # one firing and one resolved notification: the restart and the re-sends added none
        assert hook.statuses("ProbeDown") == [("firing", "svc"), ("resolved", "svc")]
        [silence] = api(am, "silences")  # the restart did not add a second one
    assert silence["status"]["state"] == "active"
    assert silence["createdBy"] == "prober"
    assert silence["comment"] == "Maintenance: Quiet hours"
    assert silence["endsAt"].startswith("2099-01-01T00:00:00")
    assert sorted((m["name"], m["value"], m["isRegex"]) for m in silence["matchers"]) == [
        ("location", "here", False),
        ("monitor", "quiet", True),
    ]
