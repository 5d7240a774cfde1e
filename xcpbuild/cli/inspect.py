"""`xcpbuild inspect`: NEVRA, dependencies, files and patches of RPMs; what changed against an older one."""

from __future__ import annotations

import argparse
import dataclasses
import textwrap
from pathlib import Path

from xcpbuild.cli.context import Context
from xcpbuild.cli.output import add_json_flag, emit_json
from xcpbuild.errors import UsageError
from xcpbuild.pipeline.build import inspect


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "inspect",
        description=textwrap.fill(
            "Read RPM headers (no rpm tool needed): NEVRA, summary, requires/provides, each file with "
            "its mode, size and digest, and for an SRPM its sources and the patches inside. With "
            "--against OLD.rpm, list what the package changed: version, dependencies, files, patches. "
            "A package (a name of specs/ or a package repository directory) stands for the packages "
            "of its recorded build for --target with its current inputs (RPMs, else the SRPM build)."
        ),
        epilog=(
            "examples:\n"
            "  xcpbuild inspect _work/builds/*/SRPMS/vhd-tool-*.src.rpm\n"
            "  xcpbuild inspect new.rpm --against old.rpm --json\n"
            "  xcpbuild inspect ~/xcp-ng-rpms/vhd-tool --target xcp-ng-8.2 --against old.rpm"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("rpms", nargs="+", type=Path, metavar="RPM|PKG|DIR")
    parser.add_argument("--target", default="local", help="whose build of a package to inspect (default: local)")
    parser.add_argument(
        "--define", action="append", default=[], metavar="'NAME VALUE'", help="as given to that build (repeatable)"
    )
    parser.add_argument("--against", type=Path, metavar="OLD.rpm", help="compare each RPM with this one")
    add_json_flag(parser)
    parser.set_defaults(func=run)


def _show(header: inspect.RpmHeader) -> None:
    kind = "source package" if header.is_source else f"{header.arch} package"
    print(f"{header.nevra}  ({kind}, sha256 {header.sha256[:16]})")
    print(f"  summary:  {header.summary}")
    print(f"  license:  {header.license}")
    for title, items in (("requires", header.requires), ("provides", header.provides)):
        print(f"  {title}: {len(items)}")
        for item in items:
            print(f"    {item}")
    if header.is_source:
        print(f"  sources:  {', '.join(header.sources) or '-'}")
        print(f"  patches:  {', '.join(header.patches) or '-'}")
    print(f"  files: {len(header.files)}")
    for entry in header.files:
        target = f" -> {entry.link}" if entry.link else ""
        print(f"    {entry.mode} {entry.size:>10} {entry.digest[:16]:<16} {entry.path}{target}")


def _show_changes(changes: inspect.Changes) -> None:
    print(f"{changes.old} -> {changes.new}")
    if changes.empty:
        print("  no changes")
        return
    if changes.evr:
        print(f"  version: {changes.evr[0]} -> {changes.evr[1]}")
    for title, items, mark in (
        ("requires", changes.requires_added, "+"),
        ("requires", changes.requires_removed, "-"),
        ("provides", changes.provides_added, "+"),
        ("provides", changes.provides_removed, "-"),
        ("file", changes.files_added, "+"),
        ("file", changes.files_removed, "-"),
        ("file", changes.files_changed, "~"),
        ("patch", changes.patches_added, "+"),
        ("patch", changes.patches_removed, "-"),
    ):
        for item in items:
            print(f"  {mark} {title} {item}")


def _rpm_files(ctx: Context) -> list[Path]:
    """The RPM files the arguments name: files as they are, each package as its recorded build's outputs."""
    args, found = ctx.args, []
    for item in args.rpms:
        if item.is_file() or item.suffix == ".rpm":
            found.append(item)
            continue
        from xcpbuild.pipeline.build import build
        from xcpbuild.pipeline.sources.package import parse_define, resolve

        package = resolve(ctx.settings, str(item), args.target, defines=[parse_define(d) for d in args.define])
        done = None
        for stage in ("rpm", "srpm"):
            try:
                done = build.recorded(ctx.settings, package, build.BuildOptions(stage=stage))
            except UsageError:
                continue  # e.g. RPMs this target cannot build: only its SRPM can have been built
            if done is not None:
                break
        if done is None:
            raise UsageError(
                f"{item} is not an RPM, and {package.name} has no build for {args.target} with its current inputs",
                hint=f"build it first: xcpbuild build {item} --target {args.target}",
            )
        found += [done.folder / artifact.path for artifact in done.record.outputs]
    return found


def run(ctx: Context) -> int:
    args = ctx.args
    args.rpms = _rpm_files(ctx)
    headers = inspect.read(args.rpms)
    if args.against is not None:
        if args.against in args.rpms:
            raise UsageError("--against names one of the packages being inspected")
        old = inspect.read([args.against])[0]
        all_changes = [inspect.compare(old, new) for new in headers]
        if args.json:
            emit_json([{**dataclasses.asdict(c), "empty": c.empty} for c in all_changes])
        else:
            for changes in all_changes:
                _show_changes(changes)
        return 0
    if args.json:
        emit_json([{**dataclasses.asdict(h), "nevra": h.nevra} for h in headers])
    else:
        for header in headers:
            _show(header)
    return 0
