"""Pure patch logic: parse a git-style patch, read what git apply / GNU patch said, classify.

Nothing here touches a file or runs a tool, so every rule is unit-tested on text.
The statuses a patch can have against an upstream tree:

- ``applies``: every hunk matches where the patch says.
- ``applies with offset``: every hunk matches exactly, some at other lines.
- ``needs fuzz``: only applies if GNU patch may ignore outer context lines; the
  series refuses it (rpmbuild's default fuzz is 0), so it must be refreshed.
- ``conflicts``: some hunk does not match even with fuzz, or its file is gone.
- ``already upstream``: the reverse applies: upstream already has the change.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal, get_args

PatchStatus = Literal["applies", "applies with offset", "needs fuzz", "conflicts", "already upstream"]
STATUSES: tuple[PatchStatus, ...] = get_args(PatchStatus)
APPLIES: PatchStatus = "applies"
OFFSET: PatchStatus = "applies with offset"
FUZZ: PatchStatus = "needs fuzz"
CONFLICTS: PatchStatus = "conflicts"
UPSTREAM: PatchStatus = "already upstream"
HEALTHY: tuple[PatchStatus, ...] = (APPLIES, OFFSET)


def is_healthy(status: PatchStatus) -> bool:
    """A patch is healthy when it applies as it is, at its lines or at others (no fuzz, no conflict)."""
    return status in HEALTHY


_HUNK_RE = re.compile(r"^@@ -(\d+)(?:,(\d+))? \+(\d+)(?:,(\d+))? @@")
_DIFF_GIT_RE = re.compile(r"^diff --git a/(.+?) b/(.+)$")
_SUBJECT_RE = re.compile(r"^\[PATCH[^\]]*\]\s*")


class MalformedPatch(ValueError):
    """The text is not a unified diff (or a hunk header lies about its length)."""


@dataclass(frozen=True)
class Hunk:
    number: int  # 1-based within its file, as git apply and GNU patch count
    old_start: int
    old_len: int
    new_start: int
    new_len: int

    @property
    def header(self) -> str:
        return f"@@ -{self.old_start},{self.old_len} +{self.new_start},{self.new_len} @@"


@dataclass(frozen=True)
class FileChange:
    old_path: str | None  # None: the patch creates the file
    new_path: str | None  # None: the patch deletes the file
    hunks: tuple[Hunk, ...]

    @property
    def path(self) -> str:
        return self.old_path or self.new_path or "?"


@dataclass(frozen=True)
class ParsedPatch:
    subject: str
    files: tuple[FileChange, ...]

    def file(self, path: str) -> FileChange | None:
        for change in self.files:
            if path in (change.old_path, change.new_path):
                return change
        return None


def _strip_prefix(path: str) -> str | None:
    path = path.split("\t", 1)[0].strip()
    if path == "/dev/null":
        return None
    return path[2:] if path[:2] in ("a/", "b/") else path


def parse_subject(text: str) -> str:
    """The ``Subject:`` of a format-patch mail (folded lines joined, ``[PATCH]`` dropped)."""
    lines = text.splitlines()
    for index, line in enumerate(lines):
        if line.startswith("Subject:"):
            subject = line[len("Subject:") :].strip()
            for more in lines[index + 1 :]:
                if not more.startswith((" ", "\t")):
                    break
                subject += " " + more.strip()
            return _SUBJECT_RE.sub("", subject).strip()
        if line.startswith("diff --git") or line.startswith("--- "):
            break
    return ""


def parse_patch(text: str) -> ParsedPatch:
    """Files and hunk headers of a unified diff (git format-patch, git diff or diff -u)."""
    files: list[FileChange] = []
    old: str | None = None
    new: str | None = None
    hunks: list[Hunk] = []
    started = False
    lines = text.splitlines()
    index = 0

    def flush() -> None:
        if started:
            files.append(FileChange(old, new, tuple(hunks)))

    while index < len(lines):
        line = lines[index]
        git_header = _DIFF_GIT_RE.match(line)
        if git_header:
            flush()
            started, hunks = True, []
            old, new = git_header.group(1), git_header.group(2)
        elif line.startswith("new file mode") and started:
            old = None
        elif line.startswith("deleted file mode") and started:
            new = None
        elif line.startswith("rename from ") and started:
            old = line[len("rename from ") :]
        elif line.startswith("rename to ") and started:
            new = line[len("rename to ") :]
        elif line.startswith("--- ") and index + 1 < len(lines) and lines[index + 1].startswith("+++ "):
            if not started or hunks:
                flush()
                started, hunks = True, []
            old, new = _strip_prefix(line[4:]), _strip_prefix(lines[index + 1][4:])
            index += 1
        elif line.startswith("@@"):
            match = _HUNK_RE.match(line)
            if not match or not started:
                raise MalformedPatch(f"line {index + 1}: `{line[:60]}` is not a hunk header of a file")
            old_len = int(match.group(2) or "1")
            new_len = int(match.group(4) or "1")
            hunks.append(Hunk(len(hunks) + 1, int(match.group(1)), old_len, int(match.group(3)), new_len))
            index = _skip_hunk_body(lines, index + 1, old_len, new_len)
            continue
        index += 1
    flush()
    if not files:
        raise MalformedPatch("no file changes found (not a unified diff)")
    return ParsedPatch(parse_subject(text), tuple(files))


def _skip_hunk_body(lines: list[str], index: int, old_len: int, new_len: int) -> int:
    """Index after a hunk's body, checking the header's line counts."""
    old_seen = new_seen = 0
    while index < len(lines) and (old_seen < old_len or new_seen < new_len):
        line = lines[index]
        tag = line[:1]
        if tag == " " or line == "":
            old_seen += 1
            new_seen += 1
        elif tag == "-":
            old_seen += 1
        elif tag == "+":
            new_seen += 1
        elif tag != "\\":
            break
        index += 1
    if old_seen != old_len or new_seen != new_len:
        raise MalformedPatch(f"a hunk ending near line {index} is shorter or longer than its header says")
    while index < len(lines) and lines[index].startswith("\\"):
        index += 1
    return index


@dataclass(frozen=True)
class HunkOutcome:
    """One tool's verdict on one hunk (or, hunk 0, on a whole file)."""

    file: str
    hunk: int
    result: str  # "ok", "failed" or "missing" (the file does not exist)
    line: int | None = None
    offset: int = 0
    fuzz: int = 0


_CHECKING_RE = re.compile(r"^(?:Checking patch (.+?)\.\.\.|checking file (.+)|patching file (.+))$")
_SUCCEEDED_RE = re.compile(r"^Hunk #(\d+) succeeded at (\d+)(?: with fuzz (\d+))?(?: \(offset (-?\d+) lines?\))?\.")
_FAILED_RE = re.compile(r"^Hunk #(\d+) FAILED at (\d+)")
_GIT_FAILED_RE = re.compile(r"^error: patch failed: (.+):(\d+)$")
_GIT_MISSING_RE = re.compile(r"^error: (.+?): (?:No such file or directory|does not exist in (?:index|working tree))$")


def parse_tool_report(report: str, patch: ParsedPatch) -> list[HunkOutcome]:
    """Hunk outcomes from ``git apply -v`` or ``patch --dry-run`` output (LC_ALL=C)."""
    outcomes: list[HunkOutcome] = []
    current = patch.files[0].path if len(patch.files) == 1 else "?"
    for raw in report.splitlines():
        line = raw.strip()
        checking = _CHECKING_RE.match(line)
        if checking:
            current = next(g for g in checking.groups() if g)
            continue
        succeeded = _SUCCEEDED_RE.match(line)
        if succeeded:
            number, at, fuzz, offset = succeeded.groups()
            outcomes.append(HunkOutcome(current, int(number), "ok", int(at), int(offset or 0), int(fuzz or 0)))
            continue
        failed = _FAILED_RE.match(line)
        if failed:
            outcomes.append(HunkOutcome(current, int(failed.group(1)), "failed", int(failed.group(2))))
            continue
        git_failed = _GIT_FAILED_RE.match(line)
        if git_failed:
            path, at = git_failed.group(1), int(git_failed.group(2))
            outcomes.append(HunkOutcome(path, _hunk_at(patch, path, at), "failed", at))
            continue
        missing = _GIT_MISSING_RE.match(line)
        if missing:
            outcomes.append(HunkOutcome(missing.group(1), 0, "missing"))
            continue
        if line.startswith("can't find file to patch"):
            outcomes.append(HunkOutcome(current, 0, "missing"))
    return outcomes


def _hunk_at(patch: ParsedPatch, path: str, old_start: int) -> int:
    """The number of the hunk of ``path`` whose header starts at ``old_start`` (0 if none)."""
    change = patch.file(path)
    if change is None:
        return 0
    for hunk in change.hunks:
        if hunk.old_start == old_start:
            return hunk.number
    return 0


def describe(outcome: HunkOutcome, patch: ParsedPatch) -> str:
    """``src/io.ml hunk #2 (@@ -23,6 +23,6 @@) FAILED at line 23`` and the like."""
    if outcome.result == "missing":
        return f"{outcome.file}: file not found"
    where = outcome.file
    change = patch.file(outcome.file)
    if outcome.hunk and change is not None and outcome.hunk <= len(change.hunks):
        where += f" hunk #{outcome.hunk} ({change.hunks[outcome.hunk - 1].header})"
    elif outcome.hunk:
        where += f" hunk #{outcome.hunk}"
    if outcome.result == "failed":
        return f"{where} FAILED at line {outcome.line}"
    parts = []
    if outcome.fuzz:
        parts.append(f"fuzz {outcome.fuzz}")
    if outcome.offset:
        parts.append(f"offset {outcome.offset:+d}")
    return f"{where} at line {outcome.line}" + (f" ({', '.join(parts)})" if parts else "")


@dataclass(frozen=True)
class Verdict:
    status: PatchStatus
    detail: str


def classify(
    patch: ParsedPatch,
    *,
    exact_ok: bool,
    exact_report: str,
    reverse_ok: bool,
    fuzzy_ok: bool,
    fuzzy_report: str,
) -> Verdict:
    """Combine what the tools said into one status.

    ``exact_*``: ``git apply --check -v``; ``reverse_ok``: the same with ``--reverse``;
    ``fuzzy_*``: GNU ``patch --dry-run --fuzz=2``.
    """
    if exact_ok:
        moved = [o for o in parse_tool_report(exact_report, patch) if o.result == "ok" and o.offset]
        if moved:
            return Verdict(OFFSET, "; ".join(describe(o, patch) for o in moved))
        return Verdict(APPLIES, "")
    if reverse_ok:
        return Verdict(UPSTREAM, "the reverse patch applies: upstream already has this change")
    fuzzy = parse_tool_report(fuzzy_report, patch)
    if fuzzy_ok:
        fuzzed = [o for o in fuzzy if o.result == "ok" and o.fuzz]
        if fuzzed:
            return Verdict(FUZZ, "; ".join(describe(o, patch) for o in fuzzed))
    bad = [o for o in fuzzy if o.result in ("failed", "missing")]
    if not bad:
        bad = [o for o in parse_tool_report(exact_report, patch) if o.result in ("failed", "missing")]
    if bad:
        return Verdict(CONFLICTS, "; ".join(describe(o, patch) for o in bad))
    last = [line for line in exact_report.splitlines() if line.startswith("error:")]
    return Verdict(CONFLICTS, last[-1].removeprefix("error: ") if last else "git apply refuses the patch")


def failure_detail(patch: ParsedPatch, report: str) -> str:
    """Which file and hunk made ``git apply`` fail, in one line."""
    bad = [o for o in parse_tool_report(report, patch) if o.result in ("failed", "missing")]
    if bad:
        return describe(bad[0], patch)
    errors = [line.removeprefix("error: ") for line in report.splitlines() if line.startswith("error:")]
    return errors[-1] if errors else "git apply refused it"
