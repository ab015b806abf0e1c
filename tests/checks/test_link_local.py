"""Link-local and cloud-metadata addresses: refused by the guard on every hop of every
check type, in every spelling (mapped, NAT64, 6to4, behind a name), unless the monitor
sets `allow_link_local = true`.

Every case runs in one child process inside a network namespace made here (`unshare`:
a user, network and mount namespace) whose only interface is its own loopback. The
metadata addresses live on that loopback with a sentinel behind them that counts what
reaches it, and /etc/hosts is bind-mounted to name them, so even a broken guard sends
nothing off the machine and shows up as a hit instead. The assertions are the guard's
own refusal (not "network unreachable") and zero hits; the allowed cases show the same
targets are really reachable without the guard.
"""

from __future__ import annotations

import ipaddress
import json
import pathlib
import subprocess
import sys
from typing import Any

import pytest

from tests.checks.linklocal_child import HOSTS, SENTINELS

ROOT = pathlib.Path(__file__).resolve().parents[2]
META = "169.254.169.254"
NAT64 = "64:ff9b::a9fe:a9fe"
SIXTOFOUR = "2002:a9fe:a9fe::1"
MAPPED = ipaddress.ip_address(f"::ffff:{META}")  # Python < 3.13 prints ::ffff:a9fe:a9fe


def refused(shown: str) -> str:
    return (
        f"refused to connect to {shown}: link-local and cloud-metadata addresses are not "
        "probed (allow_link_local = true on this monitor allows it)"
    )


def http(url: str, **fields: Any) -> dict[str, Any]:
    return {"type": "http", "url": url, **fields}


def redirect(to: str, **fields: Any) -> dict[str, Any]:
    return http(f"{{internal}}/go?to={to}", **fields)


# name: (monitor fields, the exact error, or its "; "-separated parts in any order)
REFUSED: dict[str, tuple[dict[str, Any], str | set[str]]] = {
    "http literal": (http(f"http://{META}/latest/meta-data/"), refused(META)),
    "https literal": (http(f"https://{META}/"), refused(META)),
    "http mapped": (http(f"http://[::ffff:{META}]/"), refused(f"{MAPPED} ({META})")),
    "http nat64": (http(f"http://[{NAT64}]/"), refused(f"{NAT64} ({META})")),
    "http 6to4": (http(f"http://[{SIXTOFOUR}]/"), refused(f"{SIXTOFOUR} ({META})")),
    "http alibaba metadata": (http("http://100.100.100.200/"), refused("100.100.100.200")),
    "http name": (http("http://metadata.test/"), refused(META)),
    # 127.0.0.1 first (nothing listens there), then the metadata address, which is refused
    "http name with two addresses": (http("http://mixed.test/"), refused(META)),
    "tcp literal": ({"type": "tcp", "host": META, "port": 80}, refused(META)),
    "tcp nat64": ({"type": "tcp", "host": NAT64, "port": 80}, refused(f"{NAT64} ({META})")),
    "tcp name": ({"type": "tcp", "host": "metadata.test", "port": 80}, refused(META)),
    # both addresses tried, in the resolver's order (RFC 6724 may put either first)
    "tcp name with two addresses": (
        {"type": "tcp", "host": "mixed.test", "port": 80},
        {"connection refused", refused(META)},
    ),
    "tls literal": ({"type": "tls", "host": META}, refused(META)),
    "tls 6to4": ({"type": "tls", "host": SIXTOFOUR}, refused(f"{SIXTOFOUR} ({META})")),
    "tls name": ({"type": "tls", "host": "metadata.test"}, refused(META)),
    "dns literal": (
        {"type": "dns", "query": "example.test", "nameservers": [META]},
        refused(META),
    ),
    "dns nat64": (
        {"type": "dns", "query": "example.test", "nameservers": [f"[{NAT64}]:53"]},
        refused(f"{NAT64} ({META})"),
    ),
}
REDIRECTED = {
    "redirect to literal": (f"http://{META}/latest/meta-data/", refused(META)),
    "redirect to nat64": (f"http://[{NAT64}]/latest/meta-data/", refused(f"{NAT64} ({META})")),
    "redirect to 6to4": (f"http://[{SIXTOFOUR}]/", refused(f"{SIXTOFOUR} ({META})")),
    "redirect to name": ("http://metadata.test/latest/meta-data/", refused(META)),
}
# name: (monitor fields, outcome, error, sentinel hits)
ALLOWED: dict[str, tuple[dict[str, Any], str, str | None, int]] = {
    "http literal": (http(f"http://{META}/latest/meta-data/", contains="metadata"), "up", None, 1),
    "http redirect to nat64": (redirect(f"http://[{NAT64}]/", contains="metadata"), "up", None, 1),
    "tcp name": (
        {"type": "tcp", "host": "metadata.test", "port": 80, "send": "GET / HTTP/1.0\r\n\r\n"}
        | {"expect": "metadata"},
        "up",
        None,
        1,
    ),
    "tls literal": (
        {"type": "tls", "host": META},
        "down",
        "TLS handshake failed: the server closed the connection",
        1,
    ),
    "dns literal": ({"type": "dns", "query": "example.test", "nameservers": [META]}, "up", None, 1),
    # a link-local address with nothing behind it: the attempt is made and fails as such
    "http unroutable": (
        http("http://169.254.1.1/"),
        "down",
        "connect failed: Network is unreachable",
        0,
    ),
    "tcp unroutable": (
        {"type": "tcp", "host": "169.254.1.1", "port": 80},
        "down",
        "connect failed: Network is unreachable",
        0,
    ),
}


def _cases() -> dict[str, dict[str, Any]]:
    cases = {f"refused {name}": {"monitor": fields} for name, (fields, _) in REFUSED.items()}
    for name, (to, _) in REDIRECTED.items():
        cases[f"refused {name}"] = {"monitor": redirect(to)}
    for name, (fields, *_) in ALLOWED.items():  # last: the sentinel answers these
        cases[f"allowed {name}"] = {"monitor": fields | {"allow_link_local": True}}
    return cases


def _setup(hosts: pathlib.Path) -> list[str]:
    """The namespace's loopback (up, plus the sentinel addresses) and /etc/hosts."""
    steps = ["ip link set lo up"]
    for address in SENTINELS:
        if ipaddress.ip_address(address).version == 4:
            steps.append(f"ip addr add {address}/32 dev lo")
        else:
            steps.append(f"ip -6 addr add {address}/128 dev lo nodad")
    steps.append(f"mount --bind {hosts} /etc/hosts")
    return [*steps, 'exec "$0" -m tests.checks.linklocal_child']


@pytest.fixture(scope="module")
def namespace(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Any]]:
    """Every case's result, from one child inside a namespace with only its own loopback."""
    hosts = tmp_path_factory.mktemp("netns") / "hosts"
    hosts.write_text(HOSTS)
    # unshare missing or refused is a failure, never a skip: CI has it as this machine does
    script = " && ".join(_setup(hosts))
    child = subprocess.run(
        [
            "unshare",
            "--user",
            "--map-root-user",
            "--net",
            "--mount",
            "sh",
            "-c",
            script,
            sys.executable,
        ],
        input=json.dumps(_cases()),
        capture_output=True,
        text=True,
        timeout=90,
        cwd=ROOT,
        check=False,
    )
    assert child.returncode == 0, child.stderr
    assert "Traceback" not in child.stderr, child.stderr  # a sentinel or redirector broke
    lines = [json.loads(line) for line in child.stdout.splitlines()]
    results = {line["name"]: line for line in lines if "name" in line}
    results["namespace"] = lines[0]
    assert set(results) == {*_cases(), "namespace"}, child.stdout + child.stderr
    return results


def test_the_namespace_has_only_its_own_loopback(namespace: dict[str, dict[str, Any]]) -> None:
    assert namespace["namespace"]["interfaces"] == [[1, "lo"]]


@pytest.mark.parametrize("name", list(REFUSED))
def test_every_check_type_refuses_link_local_and_metadata_addresses(
    namespace: dict[str, dict[str, Any]], name: str
) -> None:
    result, error = namespace[f"refused {name}"], REFUSED[name][1]
    if isinstance(error, set):
        assert set(result["error"].split("; ")) == error
    else:
        assert result["error"] == error
    assert (result["outcome"], result["hits"]) == ("down", 0)


@pytest.mark.parametrize("name", list(REDIRECTED))
def test_a_redirect_from_an_internal_origin_to_link_local_is_refused(
    namespace: dict[str, dict[str, Any]], name: str
) -> None:
    to, error = REDIRECTED[name]
    result = namespace[f"refused {name}"]
    assert (result["outcome"], result["error"]) == ("down", error)
    assert result["redirects"] == [f"302 -> {to}"]
    assert result["hits"] == 0


@pytest.mark.parametrize("name", list(ALLOWED))
def test_allow_link_local_lets_the_attempt_through(
    namespace: dict[str, dict[str, Any]], name: str
) -> None:
    _, outcome, error, hits = ALLOWED[name]
    result = namespace[f"allowed {name}"]
    assert (result["outcome"], result["error"]) == (outcome, error)
    assert result["hits"] == hits
