"""Golden invalid configs: each `fixtures/invalid/NAME.toml` fails with exactly `NAME.expected`.

The expected lines are what `prober validate` prints to stderr when run in the config's
folder with the default `-c monitors.toml`: the fixture is copied to `monitors.toml` in a
temporary directory, loaded by that relative name, with an empty environment.
"""

from __future__ import annotations

import pathlib
import shutil

import pytest

from prober.config import ConfigError, load_config

FIXTURES = pathlib.Path(__file__).parent / "fixtures" / "invalid"
CASES = sorted(p.stem for p in FIXTURES.glob("*.toml"))


def _expected(name: str) -> list[str]:
    return (FIXTURES / f"{name}.expected").read_text(encoding="utf-8").splitlines()


def _errors(name: str, folder: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    shutil.copyfile(FIXTURES / f"{name}.toml", folder / "monitors.toml")
    monkeypatch.chdir(folder)
    with pytest.raises(ConfigError) as caught:
        load_config("monitors.toml", env={})
    return caught.value.errors


@pytest.mark.parametrize("name", CASES)
def test_invalid_config_reports_exactly_the_expected_lines(
    name: str, tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert _errors(name, tmp_path, monkeypatch) == _expected(name)


@pytest.mark.parametrize("name", CASES)
def test_errors_are_sorted_by_line_and_name_the_file(
    name: str, tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    errors = _errors(name, tmp_path, monkeypatch)
    lines = [int(e.split(":")[1]) for e in errors]
    assert lines == sorted(lines)
    assert all(e.startswith("monitors.toml:") for e in errors)


@pytest.mark.parametrize("name", CASES)
def test_str_of_the_error_is_the_lines(
    name: str, tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    shutil.copyfile(FIXTURES / f"{name}.toml", tmp_path / "monitors.toml")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError) as caught:
        load_config("monitors.toml", env={})
    assert str(caught.value) == "\n".join(_expected(name))


def test_absolute_path_is_named_as_given(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "monitors.toml"
    shutil.copyfile(FIXTURES / "unknown_monitor_key.toml", path)
    with pytest.raises(ConfigError) as caught:
        load_config(path, env={})
    assert caught.value.errors == [
        line.replace("monitors.toml:", f"{path}:", 1) for line in _expected("unknown_monitor_key")
    ]


def test_every_fixture_has_expected_lines() -> None:
    assert len(CASES) >= 20
    for name in CASES:
        lines = _expected(name)
        assert len(lines) >= 1, name
        assert all(line.strip() for line in lines), name
    orphans = {p.stem for p in FIXTURES.glob("*.expected")} - set(CASES)
    assert not orphans


def test_secret_in_a_bad_url_is_not_printed(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    errors = _errors("url_password_hidden", tmp_path, monkeypatch)
    assert "hunter2" not in "\n".join(errors)


def test_cli_validate_prints_the_same_lines(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from prober.cli import main

    shutil.copyfile(FIXTURES / "several_errors.toml", tmp_path / "monitors.toml")
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("PROBER_CONFIG", raising=False)
    monkeypatch.delenv("PROBER_DATABASE", raising=False)
    assert main(["validate"]) == 1
    assert capsys.readouterr().err.splitlines() == _expected("several_errors")
