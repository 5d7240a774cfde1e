"""The koji verbs' own logic with fakes: watching a task tree, its display, promotion rules, error mapping."""

from __future__ import annotations

import io

import koji
import pytest
import requests

from xcpbuild.adapters import koji as kojilib
from xcpbuild.cli.koji import LiveDisplay
from xcpbuild.errors import KojiError, UsageError
from xcpbuild.pipeline.koji import submit, tags
from xcpbuild.pipeline.koji.watch import TaskRow, failed_task, render, watch


class FakeTree:
    """Snapshots handed out one per poll; the last repeats."""

    def __init__(self, snapshots: list[list[TaskRow]]) -> None:
        self.snapshots, self.polls = snapshots, 0

    def tree(self, root: int) -> list[TaskRow]:
        snap = self.snapshots[min(self.polls, len(self.snapshots) - 1)]
        self.polls += 1
        assert snap[0].id == root
        return snap


def row(id: int, state: str, parent: int | None = None, method: str = "build", **kw: object) -> TaskRow:
    return TaskRow(id=id, parent=parent, method=method, state=state, host=kw.pop("host", None), created=100.0, **kw)  # type: ignore[arg-type]


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def test_watch_polls_until_the_root_is_done_and_shows_every_snapshot() -> None:
    snapshots = [
        [row(1, "FREE")],
        [row(1, "OPEN", host="b1", started=101.0), row(2, "OPEN", 1, "buildArch", host="b2", started=102.0)],
        [row(1, "CLOSED", started=101.0, completed=150.0), row(2, "CLOSED", 1, "buildArch", completed=149.0)],
    ]
    shown: list[list[TaskRow]] = []
    clock = Clock()
    result = watch(FakeTree(snapshots), 1, show=shown.append, interval=5, clock=clock, sleep=clock.sleep)
    assert result.finished and result.root.state == "CLOSED"
    assert [s[0].state for s in shown] == ["FREE", "OPEN", "CLOSED"]
    assert clock.now == 10.0


def test_watch_gives_up_at_its_timeout_and_says_the_task_is_still_queued() -> None:
    clock = Clock()
    result = watch(
        FakeTree([[row(7, "FREE")]]), 7, show=lambda _: None, interval=2, timeout=5, clock=clock, sleep=clock.sleep
    )
    assert not result.finished and result.root.state == "FREE" and clock.now == 5.0


def test_the_failing_task_is_the_deepest_failed_one() -> None:
    rows = [
        row(1, "FAILED"),
        row(2, "FAILED", 1, "buildArch"),
        row(3, "CLOSED", 1, "buildSRPMFromSCM"),
        row(4, "FAILED", 2, "createrepo"),
    ]
    assert failed_task(rows) == rows[3]
    assert failed_task([row(1, "CLOSED")]) is None


def test_render_indents_children_and_shows_state_host_and_elapsed() -> None:
    rows = [
        row(10, "OPEN", host="builder-1", started=100.0),
        row(11, "FREE", 10, "buildArch", arch="x86_64"),
        row(12, "CLOSED", 10, "tagBuild", started=100.0, completed=165.0),
    ]
    lines = render(rows, now=190.0)
    assert "running" in lines[0] and "builder-1" in lines[0] and lines[0].endswith("1:30")
    assert "  buildArch (x86_64)" in lines[1] and "queued" in lines[1]
    assert lines[2].endswith("1:05")  # a finished task's time stops at its completion


def test_display_prints_only_changes_when_not_a_terminal() -> None:
    out = io.StringIO()
    display = LiveDisplay(out)
    display([row(1, "FREE")])
    display([row(1, "FREE")])
    display([row(1, "OPEN", host="b")])
    assert out.getvalue().count("build") == 2


def test_finish_raises_a_timeout_naming_the_queued_task() -> None:
    from xcpbuild.errors import StepTimeoutError
    from xcpbuild.pipeline.koji.watch import WatchResult

    report = submit.SubmitReport(5, "v8.3-incoming", "git+x?#abc", False, "task 5")
    result = WatchResult(row(5, "FREE"), [row(5, "FREE")], False, 3.0)
    with pytest.raises(StepTimeoutError, match=r"still queued .*no builder"):
        submit.finish(None, report, result, out_dir=None, excerpt=print)  # type: ignore[arg-type]


def test_promotion_moves_one_step_and_refuses_skips_unless_asked() -> None:
    pipeline = tags.pipeline_tags("8.3")
    assert pipeline == ["v8.3-incoming", "v8.3-ci", "v8.3-testing", "v8.3-candidates", "v8.3-updates"]
    assert tags.plan_step(0, None, pipeline, allow_skip=False) == 1
    with pytest.raises(UsageError, match=r"skips v8\.3-ci"):
        tags.plan_step(0, 2, pipeline, allow_skip=False)
    assert tags.plan_step(0, 2, pipeline, allow_skip=True) == 2
    with pytest.raises(UsageError, match="not after"):
        tags.plan_step(2, 1, pipeline, allow_skip=True)
    with pytest.raises(UsageError, match="last step"):
        tags.plan_step(4, None, pipeline, allow_skip=False)


def test_scm_urls_must_name_a_commit() -> None:
    assert submit.scm_source("git+https://github.com/xcp-ng-rpms/vhd-tool?#" + "a" * 40).scm
    for bad in ("https://github.com/x/y", "git+https://github.com/x/y?#master", "git+https://h/r"):
        with pytest.raises(UsageError):
            submit.scm_source(bad)


@pytest.mark.parametrize(
    ("exc", "words"),
    [
        (koji.AuthExpired("session expired"), "expired"),
        (koji.AuthError("invalid username or password"), "refused the login"),
        (koji.ActionNotAllowed("admin permission required"), "not allowed"),
        (koji.ServerOffline("offline"), "offline"),
        (requests.exceptions.ConnectionError("refused"), "cannot reach"),
        (requests.exceptions.SSLError("bad cert"), "TLS"),
        (koji.GenericError("No such tag: v9\nTraceback..."), "the hub said"),
    ],
)
def test_every_koji_failure_becomes_one_line_with_a_hint(exc: Exception, words: str) -> None:
    error = kojilib.translate(exc, "getTag", "https://user:secret@hub.example.invalid/kojihub")
    assert isinstance(error, KojiError)
    assert words in error.message and "\n" not in error.message and error.hint
    assert "secret" not in error.message


def test_profiles_never_show_credentials(tmp_path) -> None:  # type: ignore[no-untyped-def]
    conf = tmp_path / "koji.conf"
    conf.write_text(
        "[p]\nserver = https://u:pw@hub.example.invalid/kojihub\ntopurl = https://f\n"
        "authtype = password\nuser = me\npassword = hunter2\n"
    )
    profile = kojilib.load_profile("p", conf)
    assert profile.options["password"] == "hunter2"
    assert "hunter2" not in repr(profile) and "pw@" not in str(profile.public())
    with pytest.raises(Exception, match="profile 'nope'"):
        kojilib.load_profile("nope", conf)
    conf.write_text("[p]\nserver = https://hub\nauthtype = magic\n")
    with pytest.raises(Exception, match="authtype 'magic'"):
        kojilib.load_profile("p", conf)


def test_koji_build_and_watch_take_the_same_watch_options(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from xcpbuild.cli import app
    from xcpbuild.cli import koji as koji_cli
    from xcpbuild.cli.context import Context

    parser = app.build_parser(["koji"])
    shared = ["--out", str(tmp_path), "--interval", "2", "--watch-timeout", "30", "--profile", "p", "--json"]
    built = parser.parse_args(["koji", "build", "--srpm", "x.src.rpm", "--target", "t", *shared])
    watched = parser.parse_args(["koji", "watch", "7", *shared])
    options = [koji_cli._watching(Context(args, project=tmp_path)) for args in (built, watched)]
    for found in options:
        assert (found["out_dir"], found["interval"], found["timeout"]) == (tmp_path, 2.0, 30.0)
        display = found["show"]
        assert isinstance(display, koji_cli.LiveDisplay) and display.quiet  # --json: no live tree on stderr
    assert (built.profile, built.json, built.func) == ("p", True, koji_cli.run_build)
    assert (watched.profile, watched.json, watched.func) == ("p", True, koji_cli.run_watch)
