"""`xcpbuild release`: the main job, from sources to an installed, promoted package."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from xcpbuild.cli.output import add_json_flag, emit_json, print_table
from xcpbuild.config import load_settings
from xcpbuild.errors import XcpbuildError
from xcpbuild.model.plan import load_plan
from xcpbuild.pipeline.release import release
from xcpbuild.pipeline.release import report as report_page

EPILOG = """\
steps (each stops the run when it fails; nothing is published before verify passes):
  sources  fetch each upstream at its pin and show the patch health table
  build    SRPMs/RPMs in containers (network none, non-root); unchanged inputs reuse the record
  verify   install the export-server RPM in a clean container, stall-test the installed server:
           the default policy must survive, --eagain-policy legacy-retry must fail as in 2018
  publish  sign and publish to the plan's channel (a key is generated once in WORK/release-key)
  install  dnf installs from the published repo (gpgcheck on), then promote to the next channel

examples:
  xcpbuild release                                   # the embedded default plan, target local, offline
  xcpbuild release --upstream vhd-tool=/src/vhd-tool # also build vhd-tool's SRPM with the fix
  xcpbuild release --json > summary.json             # for CI: every step, its time and outcome

Logs and a summary.json for every run are kept in WORK/runs/<time>/ (WORK: XCPBUILD_WORK,
default <project>/_work); the published tree is WORK/repo unless --repo says otherwise.
"""


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "release",
        help="run the whole loop: patch -> build -> verify -> publish -> install (the main job)",
        description=(
            "Run the main job from a plan: fetch and check sources, build in containers, verify the "
            "export server under a stalled client, publish signed to a local yum tree, install it with "
            "dnf and promote it. Without --plan it runs the embedded default on the offline `local` target."
        ),
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--plan", type=Path, help="plan file (TOML); default: the embedded local plan")
    parser.add_argument("--target", help="build for this target instead of the plan's")
    parser.add_argument(
        "--upstream",
        action="append",
        default=[],
        metavar="PKG=PATH_OR_URL",
        help="where a package's upstream git lives (repeatable); needed for vhd-tool offline",
    )
    parser.add_argument("--repo", type=Path, help="published repository root (default WORK/repo)")
    parser.add_argument("--sign-key", help="sign with this existing key instead of the run's own key")
    parser.add_argument("--gnupg-home", type=Path, help="GnuPG home holding --sign-key")
    parser.add_argument(
        "--stall", type=float, default=10.0, metavar="SECONDS", help="client stall in verify (default 10)"
    )
    parser.add_argument("--timeout", type=float, default=3600.0, metavar="SECONDS", help="per-build time limit")
    parser.add_argument("--keep-container", action="store_true", help="keep build/verify containers for debugging")
    add_json_flag(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    settings = load_settings()
    plan = load_plan(args.plan)
    if args.target:
        from dataclasses import replace

        plan = replace(plan, target=args.target)
    options = release.ReleaseOptions(
        plan=plan,
        upstreams=release.parse_upstreams(args.upstream),
        repo_root=args.repo,
        sign_key=args.sign_key,
        gnupg_home=args.gnupg_home,
        stall_seconds=args.stall,
        keep_container=args.keep_container,
        build_timeout=args.timeout,
    )
    report = release.run(settings, options)
    if args.json:
        payload = {"ok": report.ok, **report.__dict__}
        emit_json(payload)
    else:
        _show(report)
    page = report.run_dir / report_page.REPORT
    if page.is_file():
        print(f"report: {page}", file=sys.stderr if args.json else sys.stdout)
    if not report.ok:
        error = XcpbuildError(
            f"release stopped at step `{report.failed_step}`: {report.error}",
            hint=(report.hint or "") + f" (logs: {report.run_dir})",
        )
        error.exit_code = report.exit_code or error.exit_code  # the failing step's own code
        raise error
    return 0


def _show(report: release.ReleaseReport) -> None:
    print()
    print(f"release of plan {report.plan} on target {report.target}")
    print_table(
        ("step", "outcome", "time", "detail"),
        [(s.name, s.status, f"{s.seconds:.1f}s", s.detail) for s in report.steps],
    )
    health = next((s.data.get("health") for s in report.steps if s.name == "sources"), None)
    if health:
        print()
        print("patch health")
        print_table(
            ("package", "ref", "patch", "status"), [(h["package"], h["ref"], h["patch"], h["status"]) for h in health]
        )
    verify = next((s for s in report.steps if s.name == "verify"), None)
    if verify is not None:
        for name, data in verify.data.items():
            trials = data.get("trials", []) if isinstance(data, dict) else []
            if trials:
                print()
                print(f"verification of {name} (installed RPM, stalled client)")
                print_table(
                    ("policy", "format", "expected", "outcome", "bytes", "passed"),
                    [
                        (
                            t["policy"],
                            t["fmt"],
                            t["expected"],
                            t["outcome"],
                            f"{t['bytes_received']}/{t['content_length']}",
                            t["passed"],
                        )
                        for t in trials
                    ],
                )
    build = next((s for s in report.steps if s.name == "build"), None)
    if build is not None and build.data:
        print()
        print("build folders")
        for name, data in build.data.items():
            print(f"  {name}: {data['folder']}{' (reused)' if data['reused'] else ''}")
    print()
    print(f"logs and summary.json: {report.run_dir}")
    print(f"published repository:  {report.repo_root}")
