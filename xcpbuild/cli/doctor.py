"""`xcpbuild doctor`: is this machine ready for the main job?"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

from xcpbuild.cli.context import Context
from xcpbuild.cli.output import add_json_flag, emit_json, print_table
from xcpbuild.errors import ConfigError
from xcpbuild.pipeline import doctor


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "doctor",
        description=(
            "Check that this machine has what xcpbuild needs. Prints a table; exits 1 when "
            "something the main job needs is missing, with a hint for each."
        ),
    )
    add_json_flag(parser)
    parser.set_defaults(func=run)


def run(ctx: Context) -> int:
    args = ctx.args
    try:
        work = ctx.settings.work_dir
    except ConfigError:  # no project here: the disk of the working directory is the one that matters
        work = Path.cwd()
    checks = doctor.run_checks(work)
    failed = [c for c in checks if c.required and not c.ok]
    if args.json:
        emit_json({"ok": not failed, "checks": [dataclasses.asdict(c) for c in checks]})
    else:
        print_table(
            ("check", "status", "detail"),
            [(c.name, "ok" if c.ok else ("MISSING" if c.required else "absent"), c.detail) for c in checks],
        )
        for check in failed:
            print(f"  hint for {check.name}: {check.hint}")
        print("ready" if not failed else f"{len(failed)} problem(s): the main job cannot run yet")
    return 1 if failed else 0
