"""GNU patch, used only to measure how far a patch is from applying (offsets, fuzz).

xcpbuild applies series with ``git apply`` (exact). GNU patch is what rpmbuild's
%autosetup/%patch run, and its report says which hunks need an offset or fuzz and
which fail, so ``patch check`` asks it about patches git refuses.
"""

from __future__ import annotations

from pathlib import Path

from xcpbuild.adapters.process import require_tool, run


def patch(tree: Path, patch_file: Path, *, fuzz: int = 2, dry_run: bool = True) -> tuple[bool, str]:
    """Run GNU ``patch -p1`` of ``patch_file`` in ``tree`` allowing ``fuzz``: (applied, report).

    ``--force`` keeps it from guessing that a patch is reversed and from asking
    questions; no backup or reject files are left behind.
    """
    argv = [
        require_tool("patch"),
        "--force",
        "--no-backup-if-mismatch",
        "--reject-file=-",
        "-p1",
        f"--fuzz={fuzz}",
        "-d",
        str(tree),
        "-i",
        str(patch_file.resolve()),
    ]
    if dry_run:
        argv.insert(1, "--dry-run")
    done = run(argv, check=False, timeout=120)
    return done.ok, (done.stdout + done.stderr).strip()
