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
            "--against OLD.rpm, list what the package changed: version, dependencies, files, patches."
        ),
        epilog=(
            "examples:\n"
            "  xcpbuild inspect _work/builds/*/SRPMS/vhd-tool-*.src.rpm\n"
            "  xcpbuild inspect new.rpm --against old.rpm --json"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("rpms", nargs="+", type=Path, metavar="RPM")
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


def run(ctx: Context) -> int:
    args = ctx.args
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
