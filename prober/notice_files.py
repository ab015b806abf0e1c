"""Writing incident files for `prober incident`: TOML strings escaped so any text reads
back exactly, an update appended to the file's text as it is (comments kept, never
re-dumped), and files that appear or change whole (written aside, then linked or renamed).
What is written is validated by prober.notices.parse_notice first (the caller's job).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import itertools
import os
import pathlib
import re
import stat
import tempfile
import unicodedata
from collections.abc import Iterable, Iterator


def head_text(
    title: str, impact: str, components: Iterable[tuple[str, str]], detected: str | None
) -> str:
    """A new file's keys, before its first [[updates]]."""
    lines = [f"title = {basic_string(title)}", f"impact = {basic_string(impact)}"]
    pairs = [f"{_key(m)} = {basic_string(s)}" for m, s in components]
    lines.append("components = { " + ", ".join(pairs) + " }" if pairs else "components = {}")
    if detected is not None:
        lines.append(f"detected = {basic_string(detected)}")
    return "\n".join(lines) + "\n"


def update_text(at: dt.datetime, status: str, body: str, notify: bool = True) -> str:
    """One [[updates]] table, to append to a file."""
    return (
        f"\n[[updates]]\nat = {basic_string(at.isoformat())}\n"
        f"status = {basic_string(status)}\nbody = {multiline_string(body)}\n"
        f"notify = {'true' if notify else 'false'}\n"
    )


def appended(text: str, update: str) -> str:
    """`text` with `update` after it, on a line of its own."""
    return (text if not text or text.endswith("\n") else text + "\n") + update


@contextlib.contextmanager
def locked(folder: pathlib.Path) -> Iterator[None]:
    """One writer at a time in the folder (two updates at once: both kept)."""
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / ".lock", "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield


_ESCAPES = {"\\": "\\\\", '"': '\\"', "\b": "\\b", "\t": "\\t", "\n": "\\n", "\f": "\\f"}
_ESCAPES["\r"] = "\\r"


def _escape(ch: str) -> str:
    if ch in _ESCAPES:
        return _ESCAPES[ch]
    if ch < " " or ch == "\x7f":  # control characters: TOML allows none raw
        return f"\\u{ord(ch):04X}"
    return ch


def _key(text: str) -> str:
    return text if re.fullmatch(r"[A-Za-z0-9_-]+", text) else basic_string(text)


def basic_string(text: str) -> str:
    """`text` as a TOML basic string ("..."), every character as it is."""
    return '"' + "".join(_escape(ch) for ch in text) + '"'


def multiline_string(text: str) -> str:
    """`text` as a TOML multi-line basic string, readable in the file: newlines and tabs
    as they are; a quote escaped only where it would close the string (the third of a run,
    or the last character)."""
    out = ['"""\n']  # a newline right after the opening quotes is not part of the value
    run = 0  # quotes in a row, unescaped
    for i, ch in enumerate(text):
        if ch == '"':
            if run == 2 or i == len(text) - 1:
                out.append('\\"')
                run = 0
            else:
                out.append('"')
                run += 1
            continue
        run = 0
        out.append(ch if ch in "\n\t" else _escape(ch))
    out.append('"""')
    return "".join(out)


def slug(title: str) -> str:
    """A file name's part from a title: ASCII letters and digits, `-` between words."""
    ascii_text = unicodedata.normalize("NFKD", title).encode("ascii", "ignore").decode()
    words = re.findall(r"[a-z0-9]+", ascii_text.lower())
    found = ""
    for word in words:
        if len(found) + len(word) + 1 > 50:
            break
        found = f"{found}-{word}" if found else word
    return found or "incident"


def create(folder: pathlib.Path, stem: str, text: str) -> pathlib.Path:
    """A new file `STEM.toml` (or STEM-2, -3 ... when taken) holding `text`, appearing
    whole or not at all: written aside, then linked into place (a link never replaces)."""
    folder.mkdir(parents=True, exist_ok=True)
    temp = _write_aside(folder, text)
    try:
        for n in itertools.count(1):
            path = folder / (f"{stem}.toml" if n == 1 else f"{stem}-{n}.toml")
            try:
                os.link(temp, path)
            except FileExistsError:
                continue
            _sync_folder(folder)
            return path
    finally:
        temp.unlink()
    raise AssertionError("unreachable")


def replace(path: pathlib.Path, text: str) -> None:
    """`path` now holds `text`; a reader sees the old file or the new one, never half."""
    temp = _write_aside(path.parent, text)
    try:
        os.chmod(temp, stat.S_IMODE(path.stat().st_mode))
        os.replace(temp, path)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    _sync_folder(path.parent)


def _write_aside(folder: pathlib.Path, text: str) -> pathlib.Path:
    fd, name = tempfile.mkstemp(dir=folder, prefix=".", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(text.encode("utf-8"))
            out.flush()
            os.fsync(out.fileno())
        os.chmod(name, 0o644)  # public words: the page shows them
    except BaseException:
        os.unlink(name)
        raise
    return pathlib.Path(name)


def _sync_folder(folder: pathlib.Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
