"""A real Alertmanager (Debian's prometheus-alertmanager) on loopback for a test: its own
config and storage, a free port, no cluster port; ready when `/-/ready` answers."""

from __future__ import annotations

import contextlib
import json
import pathlib
import shutil
import subprocess
import urllib.parse
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest

from tests.support.net import free_port
from tests.support.proc import until


@contextlib.contextmanager
def alertmanager(tmp_path: pathlib.Path, config: str) -> Iterator[int]:
    """Alertmanager running `config` (YAML text); yields its port."""
    binary = shutil.which("prometheus-alertmanager", path="/usr/bin:/usr/local/bin")
    if binary is None:
        pytest.fail("prometheus-alertmanager is missing: scripts/check installs Debian's package")
    port = free_port()
    path = tmp_path / "alertmanager.yml"
    path.write_text(config)
    proc = subprocess.Popen(
        [
            binary,
            f"--config.file={path}",
            f"--storage.path={tmp_path / 'am-data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--cluster.listen-address=",  # no gossip port, no peers
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        until(lambda: _ready(port), within=30, every=0.1)
        yield port
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=30)
        assert proc.returncode == 0, err[-3000:]


def _ready(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/-/ready", timeout=1) as r:
            return bool(r.status == 200)
    except OSError:
        return False


def api(port: int, path: str, body: object = None, **params: str) -> Any:
    """GET (or, with `body`, POST as JSON) Alertmanager's `/api/v2/PATH`."""
    query = f"?{urllib.parse.urlencode(params)}" if params else ""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/api/v2/{path}{query}",
        data=data,
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=5) as r:
        text = r.read()
    return json.loads(text) if text else None
