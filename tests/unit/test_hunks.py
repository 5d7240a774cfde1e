"""Pure patch logic: parsing patches and tool reports, and the five-way classification.

The tool reports below are real `git apply -v` and GNU `patch --dry-run` output
(LC_ALL=C) captured against the fixture upstream's tags.
"""

from __future__ import annotations

import pytest

from xcpbuild.pipeline.sources import hunks

FIX = """\
From 0000000000000000000000000000000000000000 Mon Sep 17 00:00:00 2001
From: Demo Upstream <upstream@example.invalid>
Date: Sat, 2 Jun 2018 12:00:00 +0000
Subject: [PATCH] Wait for the peer instead of sleeping, a subject long enough
 to be folded

Body.
---
 src/io.ml | 4 ++--

diff --git a/src/io.ml b/src/io.ml
index 8b47ab0..04b74bf 100644
--- a/src/io.ml
+++ b/src/io.ml
@@ -6,5 +6,5 @@ let open_source path =
   Unix.openfile path [Unix.O_RDONLY] 0
 (* copy until done *)
-  let rec loop attempts =
+  let rec loop () =
     try send src dst len

@@ -23,3 +23,3 @@ let progress done_ total =
 let describe () =
-  "sleeps"
+  "waits"
 \n"""

RENAMES = """\
Subject: [PATCH] Rename and more

diff --git a/added.txt b/added.txt
new file mode 100644
--- /dev/null
+++ b/added.txt
@@ -0,0 +1 @@
+n
diff --git a/gone.txt b/gone.txt
deleted file mode 100644
--- a/gone.txt
+++ /dev/null
@@ -1,2 +0,0 @@
-x
-y
diff --git a/old.txt b/new.txt
similarity index 50%
rename from old.txt
rename to new.txt
--- a/old.txt
+++ b/new.txt
@@ -1 +1,2 @@
 a
+b
diff --git a/only.txt b/only-renamed.txt
similarity index 100%
rename from only.txt
rename to only-renamed.txt
"""

GIT_OFFSET = """Checking patch src/io.ml...
Hunk #1 succeeded at 11 (offset 5 lines).
Hunk #2 succeeded at 28 (offset 5 lines).
Applied patch src/io.ml cleanly."""
GIT_FAILED = """Checking patch src/io.ml...
error: while searching for:
  Unix.openfile path [Unix.O_RDONLY] 0

error: patch failed: src/io.ml:6
error: src/io.ml: patch does not apply"""
GIT_MISSING = "Checking patch src/io.ml...\nerror: src/io.ml: No such file or directory"
GNU_FUZZ = """checking file src/io.ml
Hunk #1 succeeded at 11 with fuzz 1 (offset 5 lines).
Hunk #2 succeeded at 28 (offset 5 lines)."""
GNU_CONFLICT = """checking file src/io.ml
Hunk #1 succeeded at 11 with fuzz 1 (offset 5 lines).
Hunk #2 FAILED at 23.
1 out of 2 hunks FAILED"""
GNU_MISSING = """can't find file to patch at input line 12
Perhaps you used the wrong -p or --strip option?
No file to patch.  Skipping patch.
2 out of 2 hunks ignored"""


def test_parse_format_patch_subject_files_and_hunks() -> None:
    parsed = hunks.parse_patch(FIX)
    assert parsed.subject == "Wait for the peer instead of sleeping, a subject long enough to be folded"
    assert len(parsed.files) == 1
    change = parsed.files[0]
    assert (change.old_path, change.new_path) == ("src/io.ml", "src/io.ml")
    assert [h.header for h in change.hunks] == ["@@ -6,5 +6,5 @@", "@@ -23,3 +23,3 @@"]
    assert [h.number for h in change.hunks] == [1, 2]


def test_parse_new_deleted_renamed_files() -> None:
    parsed = hunks.parse_patch(RENAMES)
    paths = [(f.old_path, f.new_path, len(f.hunks)) for f in parsed.files]
    assert paths == [
        (None, "added.txt", 1),
        ("gone.txt", None, 1),
        ("old.txt", "new.txt", 1),
        ("only.txt", "only-renamed.txt", 0),
    ]
    assert parsed.file("new.txt") is parsed.files[2]
    assert parsed.files[1].hunks[0].header == "@@ -1,2 +0,0 @@"


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("just some words\nnot a diff\n", id="no-diff"),
        pytest.param(FIX.replace("@@ -23,3 +23,3 @@", "@@ -23,9 +23,9 @@"), id="hunk-longer-than-body"),
        pytest.param("@@ -1 +1 @@\n-a\n+b\n", id="hunk-without-file"),
    ],
)
def test_malformed_patches_are_rejected(text: str) -> None:
    with pytest.raises(hunks.MalformedPatch):
        hunks.parse_patch(text)


def test_reports_give_file_hunk_line_offset_and_fuzz() -> None:
    parsed = hunks.parse_patch(FIX)
    assert hunks.parse_tool_report(GIT_OFFSET, parsed) == [
        hunks.HunkOutcome("src/io.ml", 1, "ok", 11, 5, 0),
        hunks.HunkOutcome("src/io.ml", 2, "ok", 28, 5, 0),
    ]
    assert hunks.parse_tool_report(GNU_CONFLICT, parsed) == [
        hunks.HunkOutcome("src/io.ml", 1, "ok", 11, 5, 1),
        hunks.HunkOutcome("src/io.ml", 2, "failed", 23),
    ]
    # git names a failure by the hunk header's start line: mapped back to the hunk number.
    assert hunks.parse_tool_report(GIT_FAILED, parsed) == [hunks.HunkOutcome("src/io.ml", 1, "failed", 6)]
    assert hunks.parse_tool_report(GIT_MISSING, parsed) == [hunks.HunkOutcome("src/io.ml", 0, "missing")]
    assert hunks.parse_tool_report(GNU_MISSING, parsed) == [hunks.HunkOutcome("src/io.ml", 0, "missing")]


def _classify(**kwargs: object) -> hunks.Verdict:
    args: dict[str, object] = {
        "exact_ok": False,
        "exact_report": GIT_FAILED,
        "reverse_ok": False,
        "fuzzy_ok": False,
        "fuzzy_report": "",
    }
    args.update(kwargs)
    return hunks.classify(hunks.parse_patch(FIX), **args)  # type: ignore[arg-type]


def test_classify_every_status() -> None:
    assert _classify(exact_ok=True, exact_report="Checking patch src/io.ml...") == hunks.Verdict(hunks.APPLIES, "")
    offset = _classify(exact_ok=True, exact_report=GIT_OFFSET)
    assert offset.status == hunks.OFFSET
    assert offset.detail.startswith("src/io.ml hunk #1 (@@ -6,5 +6,5 @@) at line 11 (offset +5)")
    fuzz = _classify(fuzzy_ok=True, fuzzy_report=GNU_FUZZ)
    assert fuzz == hunks.Verdict(hunks.FUZZ, "src/io.ml hunk #1 (@@ -6,5 +6,5 @@) at line 11 (fuzz 1, offset +5)")
    conflict = _classify(fuzzy_report=GNU_CONFLICT)
    assert conflict == hunks.Verdict(hunks.CONFLICTS, "src/io.ml hunk #2 (@@ -23,3 +23,3 @@) FAILED at line 23")
    missing = _classify(exact_report=GIT_MISSING, fuzzy_report=GNU_MISSING)
    assert missing == hunks.Verdict(hunks.CONFLICTS, "src/io.ml: file not found")
    assert _classify(reverse_ok=True).status == hunks.UPSTREAM


def test_exact_failure_without_fuzz_is_a_conflict_not_fuzz() -> None:
    # GNU patch succeeding with no fuzz while git refuses (e.g. a mode change) is not "needs fuzz".
    verdict = _classify(fuzzy_ok=True, fuzzy_report="checking file src/io.ml")
    assert verdict.status == hunks.CONFLICTS
    assert "hunk #1" in verdict.detail


def test_failure_detail_names_file_and_hunk() -> None:
    parsed = hunks.parse_patch(FIX)
    assert hunks.failure_detail(parsed, GIT_FAILED) == "src/io.ml hunk #1 (@@ -6,5 +6,5 @@) FAILED at line 6"
    assert hunks.failure_detail(parsed, GIT_MISSING) == "src/io.ml: file not found"
    assert hunks.failure_detail(parsed, "error: corrupt patch at line 9") == "corrupt patch at line 9"
