"""The CLI's contract: verbs listed with descriptions, errors as one line + hint + exit code."""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import PROJECT_ROOT
from xcpbuild.cli import app
from xcpbuild.errors import PatchError, XcpbuildError


def test_help_lists_every_verb_with_a_description(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        app.main(["--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    parser = app.build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    assert sub.choices, "no verbs registered"
    for name in sub.choices:
        assert name in out
        helps = {a.dest: a.help for a in sub._choices_actions}
        assert helps.get(name), f"verb {name} has no one-line help"


def test_python_dash_m_runs_the_cli() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "xcpbuild", "--help"], capture_output=True, text=True, cwd=PROJECT_ROOT
    )
    assert done.returncode == 0
    assert "doctor" in done.stdout


def test_error_is_one_line_plus_hint_and_its_exit_code(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def boom(_args: argparse.Namespace) -> int:
        raise PatchError("patch 0001-x.patch does not apply", hint="run patch check")

    parser = app.build_parser()
    monkeypatch.setattr(app, "build_parser", lambda: parser)
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    sub.choices["doctor"].set_defaults(func=boom)
    code = app.main(["doctor"])
    err = capsys.readouterr().err
    assert code == PatchError.exit_code
    assert err.splitlines() == ["xcpbuild: error: patch 0001-x.patch does not apply", "  hint: run patch check"]
    assert "Traceback" not in err


def test_debug_shows_the_traceback(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    def boom(_args: argparse.Namespace) -> int:
        raise PatchError("nope")

    parser = app.build_parser()
    monkeypatch.setattr(app, "build_parser", lambda: parser)
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    sub.choices["doctor"].set_defaults(func=boom)
    assert app.main(["--debug", "doctor"]) == PatchError.exit_code
    assert "Traceback" in capsys.readouterr().err


def test_every_error_class_has_a_distinct_exit_code_and_a_hint() -> None:
    import xcpbuild.errors as errors

    classes = [
        c
        for c in vars(errors).values()
        if isinstance(c, type) and issubclass(c, XcpbuildError) and c is not XcpbuildError
    ]
    codes = [c.exit_code for c in classes]
    assert len(codes) == len(set(codes)), codes
    for cls in classes:
        assert cls.default_hint, cls.__name__
        assert cls.exit_code not in (0,)


def test_inspect_refuses_a_file_that_is_not_an_rpm(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bogus = tmp_path / "bogus.rpm"
    bogus.write_bytes(b"not an rpm at all")
    assert app.main(["inspect", str(bogus)]) == 11
    assert "is not an RPM package" in capsys.readouterr().err
