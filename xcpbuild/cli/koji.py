"""`xcpbuild koji …`: drive a koji hub: build, watch, import, promote, publish from a tag."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TextIO, TypedDict

from xcpbuild.adapters import koji as kojilib
from xcpbuild.cli.context import Context
from xcpbuild.cli.output import add_json_flag, emit_json, print_table
from xcpbuild.cli.publish import add_key_arguments, add_repo_arguments, add_rpmv3_argument, show
from xcpbuild.errors import UsageError
from xcpbuild.model.repo import PROMOTION_ORDER
from xcpbuild.pipeline.koji import channel, importer, submit, tags, watch
from xcpbuild.pipeline.koji.watch import TaskRow
from xcpbuild.pipeline.publish import publish

EPILOG = f"""\
examples:
  xcpbuild koji build --checkout ~/src/xcp-ng-rpms/vhd-tool --target v8.3-incoming
  xcpbuild koji build --scm 'git+https://github.com/xcp-ng-rpms/vhd-tool?#0123abc...' --target v8.3-u-me --scratch
  xcpbuild koji build --srpm _work/builds/vhd-tool-*/vhd-tool-0.20.0-4.2.xcpng8.3.src.rpm --target v8.3-u-me --nowait
  xcpbuild koji import _work/builds/xcp-export-server-1.0-1.xcpng8.3-local-KEY --tag v8.3-incoming
  xcpbuild koji promote vhd-tool-0.20.0-4.2.xcpng8.3 --release 8.3           # one step: incoming -> ci
  xcpbuild koji publish --tag v8.3-testing --repo /srv/repo --release 8.3 --channel testing --sign-key KEY
  xcpbuild repo diff --koji-tag v8.3-testing --repo /srv/repo --release 8.3 --channel testing

Profiles are koji's own (--profile NAME: /etc/koji.conf.d/*.conf, ~/.koji/config; authtype
noauth, password, ssl or kerberos). Pipeline: {" -> ".join(PROMOTION_ORDER)}, tags v<X.Y>-<step>.
"""


def add_profile_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--profile", default="koji", help="koji profile to use (default: koji)")
    parser.add_argument("--koji-config", type=Path, metavar="FILE", help="read profiles from this file only")


@contextmanager
def session(args: argparse.Namespace) -> Iterator[kojilib.Hub]:
    profile = kojilib.load_profile(args.profile, args.koji_config)
    hub = kojilib.connect(profile)
    try:
        yield hub
    finally:
        hub.close()


class LiveDisplay:
    """The task tree on stderr: redrawn in place on a terminal, printed when it changes otherwise."""

    def __init__(self, stream: TextIO | None = None, quiet: bool = False) -> None:
        self.stream: TextIO = stream if stream is not None else sys.stderr
        self.quiet = quiet
        self.tty = self.stream.isatty()
        self._drawn = 0
        self._last: tuple[tuple[int, str, str | None], ...] | None = None

    def __call__(self, rows: list[TaskRow]) -> None:
        if self.quiet:
            return
        lines = watch.render(rows, watch.wall_clock_now())
        if self.tty:
            if self._drawn:
                self.stream.write(f"\x1b[{self._drawn}F\x1b[J")
            self.stream.write("\n".join(lines) + "\n")
            self._drawn = len(lines)
        elif watch.signature(rows) != self._last:
            self.stream.write(f"[{time.strftime('%H:%M:%S')}]\n" + "\n".join(lines) + "\n")
        self._last = watch.signature(rows)
        self.stream.flush()

    def excerpt(self, text: str) -> None:
        self.stream.write("--- end of the failing task's log ---\n" + text + "\n---\n")


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "koji",
        help="drive a koji hub: build, watch, import, promote through the tag pipeline, publish from a tag",
        description="Drive XCP-ng's build farm (a koji hub) with koji's own profiles and authentication.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    verbs = parser.add_subparsers(title="koji verbs", metavar="VERB")

    build = verbs.add_parser("build", help="submit a build to a koji target and watch it")
    what = build.add_mutually_exclusive_group(required=True)
    what.add_argument("--scm", metavar="URL", help="git+URL?#COMMIT to build from")
    what.add_argument("--checkout", type=Path, metavar="DIR", help="a package repository checkout (its HEAD)")
    what.add_argument("--srpm", type=Path, metavar="FILE", help="an SRPM xcpbuild built (uploaded)")
    build.add_argument("--target", required=True, help="koji build target, e.g. v8.3-incoming")
    build.add_argument("--scratch", action="store_true", help="a scratch build (no NVR reserved, not tagged)")
    build.add_argument("--nowait", action="store_true", help="print the task id and return")
    _watch_arguments(build)
    build.set_defaults(func=run_build)

    watch_p = verbs.add_parser("watch", help="watch a build task; download its RPMs and logs when it succeeds")
    watch_p.add_argument("task_id", type=int, metavar="TASK")
    _watch_arguments(watch_p)
    watch_p.set_defaults(func=run_watch)

    imp = verbs.add_parser("import", help="import a local build (SRPM + RPMs + logs) as a koji build")
    imp.add_argument("paths", nargs="+", type=Path, metavar="PATH", help="a build folder, or its files")
    imp.add_argument("--tag", help="tag the build into this tag (e.g. v8.3-incoming)")
    add_profile_arguments(imp)
    add_json_flag(imp)
    imp.set_defaults(func=run_import)

    promote = verbs.add_parser("promote", help="move builds one step along the tag pipeline")
    promote.add_argument("nvrs", nargs="+", metavar="NVR")
    promote.add_argument("--release", required=True, metavar="X.Y", help="the tags are v<X.Y>-<step>")
    promote.add_argument("--to", dest="to_step", choices=PROMOTION_ORDER, help="the step to reach (default: next)")
    promote.add_argument("--allow-skip", action="store_true", help="allow --to to skip steps, deliberately")
    promote.add_argument(
        "--method",
        choices=tags.METHODS,
        default="bypass",
        help="bypass: tag at once (admin/tag permission); task: a tagBuild task under the hub's policy",
    )
    add_profile_arguments(promote)
    add_json_flag(promote)
    promote.set_defaults(func=run_promote)

    pub = verbs.add_parser("publish", help="publish a channel from the latest builds of a koji tag")
    pub.add_argument("--tag", required=True, help="koji tag, e.g. v8.3-testing")
    add_repo_arguments(pub)
    pub.add_argument("--channel", required=True)
    add_key_arguments(pub)
    add_rpmv3_argument(pub)
    pub.add_argument(
        "--koji-key",
        action="append",
        default=[],
        metavar="SIGKEY",
        help="download the copy koji signed with this key where it has one (repeatable, in order)",
    )
    pub.add_argument(
        "--keep-signatures",
        action="store_true",
        help="publish koji's signatures as they are (they must verify against --sign-key) instead of re-signing",
    )
    pub.add_argument("--workers", type=int, default=channel.DEFAULT_WORKERS, help="parallel downloads")
    pub.add_argument("--no-dnf-check", action="store_true", help="skip the dnf install check (not recommended)")
    add_profile_arguments(pub)
    add_json_flag(pub)
    pub.set_defaults(func=run_publish)


def _watch_arguments(parser: argparse.ArgumentParser) -> None:
    """What `koji build` and `koji watch` share: how the task is watched, where its build lands, the hub, --json."""
    parser.add_argument("--out", type=Path, help="build folders go here (default: WORK/koji-builds)")
    parser.add_argument("--interval", type=float, default=5.0, metavar="SECONDS", help="poll interval (default 5)")
    parser.add_argument(
        "--watch-timeout", type=float, metavar="SECONDS", help="stop watching after this long (the task goes on)"
    )
    add_profile_arguments(parser)
    add_json_flag(parser)


class _Watching(TypedDict):
    """The keyword arguments ``submit.submit`` and ``submit.watch_task`` share."""

    out_dir: Path
    show: Callable[[list[TaskRow]], None]
    excerpt: Callable[[str], None]
    interval: float
    timeout: float | None


def _watching(ctx: Context) -> _Watching:
    """What ``_watch_arguments`` gave, as those keyword arguments."""
    args = ctx.args
    display = LiveDisplay(quiet=args.json)
    return _Watching(
        out_dir=Path(args.out) if args.out else ctx.settings.work_dir / "koji-builds",
        show=display,
        excerpt=display.excerpt,
        interval=args.interval,
        timeout=args.watch_timeout,
    )


def _show_outcome(report: submit.SubmitReport, as_json: bool) -> None:
    if as_json:
        emit_json(report)
        return
    if report.folder is None:
        print(f"created koji task {report.task_id} ({report.task_url}) on {report.target}")
        return
    print(f"{report.nvr}: koji task {report.task_id}" + (f", build {report.build_id}" if report.build_id else ""))
    print(f"{len(report.files)} file(s) and build-record.json in {report.folder}")


def run_build(ctx: Context) -> int:
    args = ctx.args
    if args.scm:
        source = submit.scm_source(args.scm)
    elif args.checkout:
        source = submit.checkout_source(args.checkout)
    else:
        source = submit.srpm_source(args.srpm)
    with session(args) as hub:
        report = submit.submit(hub, source, args.target, scratch=args.scratch, nowait=args.nowait, **_watching(ctx))
    _show_outcome(report, args.json)
    return 0


def run_watch(ctx: Context) -> int:
    args = ctx.args
    with session(args) as hub:
        report = submit.watch_task(hub, submit.report_for_task(hub, args.task_id), **_watching(ctx))
    _show_outcome(report, args.json)
    return 0


def run_import(ctx: Context) -> int:
    args = ctx.args
    with session(args) as hub:
        report = importer.import_build(hub, args.paths, args.tag)
    if args.json:
        emit_json(report)
        return 0
    word = "imported as" if report.imported else "already in koji as"
    print(f"{report.nvr}: {word} build {report.build_id} ({len(report.rpms)} RPMs, {len(report.logs)} logs)")
    if report.tagged:
        print(f"{'already tagged' if report.already_tagged else 'tagged'} {report.tagged}")
    return 0


def run_promote(ctx: Context) -> int:
    args = ctx.args
    reports = []
    with session(args) as hub:
        for nvr in args.nvrs:
            reports.append(
                tags.promote(
                    hub, nvr, args.release, to_step=args.to_step, allow_skip=args.allow_skip, method=args.method
                )
            )
    if args.json:
        emit_json(reports)
        return 0
    rows = [
        (r.nvr, r.from_tag, r.to_tag, f"task {r.task_id}" if r.task_id else "moved", ", ".join(r.skipped) or "-")
        for r in reports
    ]
    print_table(("build", "from", "to", "how", "skipped"), rows)
    return 0


def run_publish(ctx: Context) -> int:
    args = ctx.args
    if args.workers < 1:
        raise UsageError("--workers must be at least 1")
    if args.keep_signatures and not args.sign_key:
        raise UsageError("--keep-signatures needs --sign-key: the key koji's signatures must verify against")
    if args.rpmv3 and (args.keep_signatures or not args.sign_key):
        raise UsageError("--rpmv3 is how xcpbuild signs: it needs --sign-key and no --keep-signatures")
    with publish.signing_key(args.sign_key, args.gnupg_home) as key, session(args) as hub:
        report = channel.publish_tag(
            hub,
            args.tag,
            args.repo,
            args.release,
            args.channel,
            cache_dir=ctx.settings.cache_dir / "koji",
            key=key,
            sigkeys=args.koji_key,
            keep_signatures=args.keep_signatures,
            workers=args.workers,
            dnf_check=not args.no_dnf_check,
            rpmv3=args.rpmv3,
        )
    if args.json:
        emit_json(report)
        return 0
    print(
        f"{args.tag}: {report.builds} build(s), {report.rpms} RPM(s), {report.signed_by_koji} signed by koji; "
        f"{report.downloaded} downloaded, {report.reused} already here ({report.download_seconds:.2f}s)"
    )
    if report.publish is None:
        print("nothing new: every package of the tag is already live in the channel")
    else:
        show(report.publish)
    return 0
