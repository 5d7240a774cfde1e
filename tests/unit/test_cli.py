"""The CLI's contract: verbs listed with descriptions, errors as one line + hint + exit code."""

from __future__ import annotations

import argparse
import os
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
    def boom(_ctx: object) -> int:
        raise PatchError("patch 0001-x.patch does not apply", hint="run patch check")

    parser = app.build_parser()
    monkeypatch.setattr(app, "build_parser", lambda *_: parser)
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    sub.choices["doctor"].set_defaults(func=boom)
    code = app.main(["doctor"])
    err = capsys.readouterr().err
    assert code == PatchError.exit_code
    assert err.splitlines() == ["xcpbuild: error: patch 0001-x.patch does not apply", "  hint: run patch check"]
    assert "Traceback" not in err


def test_debug_shows_the_traceback(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    def boom(_ctx: object) -> int:
        raise PatchError("nope")

    parser = app.build_parser()
    monkeypatch.setattr(app, "build_parser", lambda *_: parser)
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


def _modules_after(argv: list[str]) -> set[str]:
    code = (
        "import sys\nfrom xcpbuild.cli import app\n"
        f"try:\n    app.main({argv!r})\nexcept SystemExit:\n    pass\n"
        "print('\\n'.join(m for m in sys.modules if m.startswith('xcpbuild.')))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=PROJECT_ROOT, check=True)
    return set(done.stdout.split())


def test_help_imports_no_verb_and_a_verb_imports_only_its_own_pipeline() -> None:
    listed = _modules_after(["--help"])
    assert not {m for m in listed if m.startswith(("xcpbuild.pipeline", "xcpbuild.adapters"))}, listed
    assert not {m for m in listed if m.startswith("xcpbuild.cli.") and m != "xcpbuild.cli.app"}
    building = _modules_after(["build", "--help"])
    assert "xcpbuild.pipeline.build.build" in building
    assert not {m for m in building if m.startswith(("xcpbuild.pipeline.publish", "xcpbuild.pipeline.release"))}
    assert "xcpbuild.cli.publish" not in building


def test_the_verb_is_found_past_global_options() -> None:
    assert app.chosen_verb(["--project", "build", "-q", "doctor", "--json"]) == "doctor"
    assert app.chosen_verb(["-v", "build", "x"]) == "build"
    assert app.chosen_verb(["--help"]) is None
    assert app.chosen_verb(["nonsense"]) is None


def test_ctrl_c_while_a_verb_is_still_importing_exits_130_quietly(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def interrupted(_name: str) -> object:
        raise KeyboardInterrupt

    monkeypatch.setattr(app, "load_verb", interrupted)
    assert app.main(["release", "--help"]) == 130
    err = capsys.readouterr().err
    assert "Traceback" not in err and "KeyboardInterrupt" not in err
    assert err.strip() == "xcpbuild: interrupted"


def test_project_reaches_the_verb_in_its_context_not_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    from xcpbuild.cli.context import Context

    monkeypatch.delenv("XCPBUILD_PROJECT", raising=False)
    seen: list[Context] = []
    parser = app.build_parser()
    monkeypatch.setattr(app, "build_parser", lambda *_: parser)
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))

    def record(ctx: Context) -> int:
        seen.append(ctx)
        return 0

    sub.choices["doctor"].set_defaults(func=record)
    assert app.main(["--project", str(PROJECT_ROOT), "doctor"]) == 0
    assert "XCPBUILD_PROJECT" not in os.environ
    assert seen[0].settings.project_root == PROJECT_ROOT
    assert seen[0].settings is seen[0].settings, "settings are resolved once"


def test_inspect_refuses_a_file_that_is_not_an_rpm(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bogus = tmp_path / "bogus.rpm"
    bogus.write_bytes(b"not an rpm at all")
    assert app.main(["inspect", str(bogus)]) == 11
    assert "is not an RPM package" in capsys.readouterr().err


def _without_koji(argv: list[str]) -> subprocess.CompletedProcess[str]:
    """``xcpbuild ARGV`` in a Python where the koji library cannot be imported (the extra not installed)."""
    code = f"import sys\nsys.modules['koji'] = None\nfrom xcpbuild.cli import app\nsys.exit(app.main({argv!r}))"
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=PROJECT_ROOT)


def test_a_koji_verb_without_the_koji_extra_says_how_to_install_it(tmp_path: Path) -> None:
    repo = ["--repo", str(tmp_path / "repo"), "--release", "8.3", "--channel", "testing"]
    for argv in (
        ["koji", "build", "--srpm", "x.src.rpm", "--target", "v8.3-incoming"],
        ["koji", "watch", "--help"],
        ["repo", "diff", *repo, "--koji-tag", "v8.3-testing"],
    ):
        done = _without_koji(argv)
        assert done.returncode == 4, (argv, done.stdout, done.stderr)  # ToolMissingError
        error, hint = done.stderr.splitlines()
        assert error == "xcpbuild: error: the koji verbs need the koji client library, which is not installed"
        assert hint.startswith("  hint: pip install 'xcpbuild[koji]'"), hint
    # Every other verb works without it.
    done = _without_koji(["repo", "diff", *repo])
    assert done.returncode == 12 and "nothing is published" in done.stderr, done.stderr  # got as far as the repo
    assert _without_koji(["publish", "--help"]).returncode == 0
