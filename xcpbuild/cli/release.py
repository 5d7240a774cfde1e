"""`xcpbuild release`: the main job, from sources to an installed, promoted package."""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path
from typing import Any

from xcpbuild.cli.context import Context
from xcpbuild.cli.output import add_json_flag, emit_json, print_table
from xcpbuild.cli.publish import add_rpmv3_argument, add_upgrade_from_argument
from xcpbuild.errors import XcpbuildError
from xcpbuild.model.plan import load_plan
from xcpbuild.pipeline.release import release, summary
from xcpbuild.pipeline.release import report as report_page

EPILOG = """\
steps (each stops the run when it fails; nothing is published before verify passes):
  sources  fetch each upstream at its pin (sha256-checked), show the patch health there and where
           upstream reworked the code; an unreachable upstream the plan allows is left out, said so
  build    SRPMs/RPMs in containers (network none, non-root); unchanged inputs reuse the record
  verify   all at once: install the export-server RPM in a clean container and stall-test it (the
           default policy must survive, --eagain-policy legacy-retry must fail as in 2018); probe
           vhd-tool's upstream code without its series (must fail with the 2018 EAGAIN) and with it
           (must survive byte-exact)
  publish  sign and publish to the plan's channel (a key is generated once in WORK/release-key)
  install  dnf installs from the published repo (gpgcheck on), then promote to the next channel

examples:
  xcpbuild release                                   # the embedded default plan, target local, offline
  xcpbuild release --upstream vhd-tool=/src/vhd-tool # vhd-tool from a clone, a bare mirror or a URL
  xcpbuild release --json > summary.json             # for CI: every step, its time and outcome

Logs and a summary.json for every run are kept in WORK/runs/<time>/ (WORK: XCPBUILD_WORK,
default <project>/_work); the published tree is WORK/repo unless --repo says otherwise.
"""


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "release",
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
        help="where a package's upstream git lives: a path, a bare mirror or a URL (repeatable)",
    )
    parser.add_argument("--repo", type=Path, help="published repository root (default WORK/repo)")
    add_upgrade_from_argument(parser, "the plan's upgrade_from, else the channel published")
    parser.add_argument("--sign-key", help="sign with this existing key instead of the run's own key")
    parser.add_argument("--gnupg-home", type=Path, help="GnuPG home holding --sign-key")
    add_rpmv3_argument(parser)
    parser.add_argument(
        "--stall", type=float, default=10.0, metavar="SECONDS", help="client stall in verify (default 10)"
    )
    parser.add_argument("--timeout", type=float, default=3600.0, metavar="SECONDS", help="per-build time limit")
    parser.add_argument("--keep-container", action="store_true", help="keep build/verify containers for debugging")
    add_json_flag(parser)
    parser.set_defaults(func=run)


def run(ctx: Context) -> int:
    args = ctx.args
    settings = ctx.settings
    plan = load_plan(args.plan)
    if args.target and args.target != plan.target:
        # The plan's refs name its own target's pins; another target builds at its own pins.
        packages = tuple(dataclasses.replace(p, ref=None) for p in plan.packages)
        plan = dataclasses.replace(plan, target=args.target, packages=packages)
    if args.upgrade_from:
        plan = dataclasses.replace(plan, upgrade_from=tuple(args.upgrade_from))
    if args.rpmv3:
        plan = dataclasses.replace(plan, rpmv3=True)
    upstreams = release.parse_upstreams(args.upstream)
    with release.signing_key(settings, args.sign_key, args.gnupg_home) as key:
        options = release.ReleaseOptions(
            plan=plan,
            key=key,
            upstreams=upstreams,
            repo_root=args.repo,
            stall_seconds=args.stall,
            keep_container=args.keep_container,
            build_timeout=args.timeout,
        )
        report = release.run(settings, options)
    if args.json:
        emit_json(report.to_json())
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


def _show(report: summary.ReleaseReport) -> None:
    print()
    print(f"release of plan {report.plan} on target {report.target}")
    print_table(
        ("step", "outcome", "time", "detail"),
        [(s.name, s.status, f"{s.seconds:.1f}s", s.detail) for s in report.steps],
    )
    if report.left_out:
        print()
        print("left out of this run")
        for name, reason in sorted(report.left_out.items()):
            print(f"  {name}: {reason}")
    health = report.sources.data.health
    if health:
        print()
        print("patch health")
        print_table(
            ("package", "ref", "patch", "status", "ref is"),
            [(h.package, h.ref, h.patch, h.status, h.kind) for h in health],
        )
    if report.proofs:
        print()
        print("what verify proved")
        for name, proof in sorted(report.proofs.items()):
            print(f"  {name}: {proof}")
    for name, check in report.verify.data.checks.items():
        _show_check(name, check.data)
    if report.build.data.packages:
        print()
        print("build folders")
        for name, built in report.build.data.packages.items():
            print(f"  {name}: {built.folder}{' (reused)' if built.reused else ''}")
    print()
    print(f"logs and summary.json: {report.run_dir}")
    print(f"published repository:  {report.repo_root}")


def _show_check(name: str, data: dict[str, Any]) -> None:
    """A check's own table: the export server's four trials, or the probe's two sides."""
    trials = data.get("trials") or []
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
    sides = data.get("sides") or []
    if sides:
        print()
        print(f"probe of {name} at {data['ref']} ({data['stall']:g} s stall, upstream code)")
        print_table(
            ("series", "expected", "verdict", "stalled client got", "passed", "driver said"),
            [
                (
                    f"{len(side['patches'])} patch(es)" if side["patched"] else "none",
                    side["expected"],
                    side["verdict"],
                    f"{side['stall_bytes']}/{side['file_bytes']}",
                    side["passed"],
                    side["error_line"] or "-",
                )
                for side in sides
            ],
        )
