"""`xcpbuild probe`: compile a package's patched upstream code path in a container and stall-test it."""

from __future__ import annotations

import argparse

from xcpbuild.cli.context import Context
from xcpbuild.cli.output import add_json_flag, emit_json, print_table
from xcpbuild.cli.package_args import add_package_argument
from xcpbuild.errors import VerifyError
from xcpbuild.pipeline.sources.package import parse_define
from xcpbuild.pipeline.verify import probe


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "probe",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description=(
            "Test a patch locally before building the RPM. Fetch the upstream ref, apply the\n"
            "package's patches (or not, with --no-patches), compile the upstream files the\n"
            "package's [probe] recipe names together with our own shims and driver in a probe\n"
            "image (the `local` image plus the recipe's Debian packages; network off while\n"
            "compiling and running), start the driver on a generated file, then read it raw,\n"
            "throttled and with a long stall, checking the sha256 of every body.\n"
            "\n"
            "The verdict is `survived` (exit 0) or `failed` (exit 14) with the driver's own error\n"
            "output. A probe that does not compile is reported with the compiler's message and the\n"
            "file (exit 10). Logs and report.json are kept under _work/probe/.\n"
            "\n"
            "A package repository (SPECS/NAME.spec + SOURCES/) is probed on the upstream its spec\n"
            "names (Provides: gitsha(URL) = SHA, %global package_srccommit, URL:) or --upstream,\n"
            "at that commit or --ref, with its own PatchNNNN lines (spec order, %if blocks resolved\n"
            "by --define); the recipe is the [probe] of specs/NAME.toml, or of --recipe."
        ),
        epilog=(
            "examples:\n"
            "  xcpbuild probe vhd-tool --upstream ~/src/vhd-tool --no-patches --stall 5\n"
            '      # upstream v0.20.0 as shipped: expect failed, Unix_error(EAGAIN, "sendfile")\n'
            "  xcpbuild probe vhd-tool --upstream ~/src/vhd-tool --stall 30\n"
            "      # with our series: expect survived, every body byte-exact\n"
            "  xcpbuild probe vhd-tool --upstream ~/src/vhd-tool --ref v0.27.0 --no-patches --json\n"
            "  xcpbuild probe ~/xcp-ng-rpms/vhd-tool --define 'xcp_ng_section extras' --recipe vhd-tool"
        ),
    )
    add_package_argument(parser, target_help="whose pin and series (or %%dist) to use (default: local)")
    parser.add_argument(
        "--recipe",
        metavar="NAME",
        help="use the [probe] table of specs/NAME.toml (default: the package's own, or its spec Name's)",
    )
    parser.add_argument(
        "--upstream",
        metavar="URL_OR_PATH",
        help="git URL or local clone to fetch from instead of the one the definition or spec names",
    )
    parser.add_argument("--ref", help="tag, branch or commit to probe instead of the pinned ref (or the spec's commit)")
    parser.add_argument(
        "--no-patches", dest="apply_patches", action="store_false", help="probe upstream as it is, without the series"
    )
    parser.add_argument(
        "--stall", type=float, metavar="SECONDS", help="how long the client stops reading (default: the recipe's)"
    )
    parser.add_argument(
        "--keep-container", action="store_true", help="leave the probe container for inspection (docker exec)"
    )
    add_json_flag(parser)
    parser.set_defaults(func=run)


def run(ctx: Context) -> int:
    args = ctx.args
    settings = ctx.settings
    report = probe.probe(
        settings,
        args.package,
        upstream=args.upstream,
        ref=args.ref,
        apply_patches=args.apply_patches,
        stall=args.stall,
        keep=args.keep_container,
        target=args.target,
        defines=[parse_define(value) for value in args.define],
        recipe_from=args.recipe,
    )
    if args.json:
        emit_json(report.to_json())
    else:
        _print(report)
    if not report.survived:
        first = report.driver_stderr.strip().splitlines()[-1:] or [report.reason]
        raise VerifyError(
            f"the probe of {report.package} failed: {first[0]}",
            hint=f"{report.reason}; logs in {report.work_dir}",
        )
    return 0


def _print(report: probe.ProbeReport) -> None:
    if report.patches:
        patches = f"with {len(report.patches)} patch(es): {', '.join(report.patches)}"
    else:
        patches = "no patches for this target and these --define(s)" if report.patched else "unpatched (--no-patches)"
    print(f"probe {report.package} {report.ref} ({report.commit[:12]}), {patches}")
    print(f"image {report.image}; file {report.file_bytes} bytes, sha256 {report.expected_sha256[:16]}…")
    print()
    print_table(
        ("run", "stall", "received", "seconds", "result"),
        [
            (
                run.name,
                f"{run.stall:g}s",
                f"{run.bytes}/{report.file_bytes}",
                f"{run.seconds:.1f}",
                "ok (byte-exact)" if run.ok else run.error,
            )
            for run in report.runs
        ],
    )
    print()
    if report.driver_stderr:
        print("driver stderr:")
        for line in report.driver_stderr.splitlines():
            print(f"  {line}")
    print(f"verdict: {report.verdict.upper()}" + (f" ({report.reason})" if report.reason else ""))
