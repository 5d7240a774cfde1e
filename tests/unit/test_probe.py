"""The probe's pure parts: the [probe] recipe, compile-error reports, verdicts, the verifier kit."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import PROJECT_ROOT
from xcpbuild.errors import ConfigError
from xcpbuild.model.package import find_package
from xcpbuild.model.probe import parse_probe, recipe_files
from xcpbuild.pipeline.verify import probe

WHERE = "specs/test.toml"


def _recipe(**overrides: Any) -> dict[str, Any]:
    raw: dict[str, Any] = {
        "image": "probe-ocaml",
        "packages": ["ocaml-nox"],
        "upstream_files": ["src/copy.ml"],
        "files": ["probes/x/driver.ml"],
        "compile": ["ocamlfind ocamlopt -package unix -linkpkg copy.ml driver.ml -o driver"],
        "run": "./driver {port} {file} {requests}",
        "ready": "probe-ready",
    }
    raw.update(overrides)
    return raw


def test_a_recipe_parses_with_defaults_and_fills_the_run_line() -> None:
    recipe = parse_probe(_recipe(), WHERE)
    assert recipe.stall == 10.0 and recipe.file_mib == 16
    assert recipe.run_argv(8080, "disk.img", 3) == ["./driver", "8080", "disk.img", "3"]
    assert recipe.file_names() == ["copy.ml", "driver.ml"]


def test_an_unknown_key_is_rejected_with_a_suggestion() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_probe(_recipe(upstream_file=["x"]), WHERE)
    assert "unknown key `upstream_file`" in caught.value.message
    assert "upstream_files" in caught.value.hint


@pytest.mark.parametrize(
    ("overrides", "fragment"),
    [
        ({"run": "./driver {port}"}, "{port} and {file}"),
        ({"run": "./driver {port} {file} {host}"}, "{port} and {file}"),
        ({"files": ["../outside.ml"]}, "without `..`"),
        ({"upstream_files": ["/etc/passwd"]}, "relative path"),
        ({"files": ["probes/x/copy.ml"]}, "two files named copy.ml"),
        ({"packages": ["Not A Package"]}, "not a Debian package name"),
        ({"image": "../up"}, "directory of containers/"),
        ({"stall": 0}, "positive number"),
        ({"file_mib": 1.5}, "positive whole number"),
        ({"compile": "make"}, "array of non-empty strings"),
        ({"ready": ""}, "missing `ready`"),
    ],
)
def test_bad_recipes_are_refused_with_a_clear_line(overrides: dict[str, Any], fragment: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_probe(_recipe(**overrides), WHERE)
    assert fragment in caught.value.message


def test_a_package_without_a_probe_table_says_so() -> None:
    with pytest.raises(ConfigError, match="has no \\[probe\\] table"):
        parse_probe({}, WHERE)


def test_the_vhd_tool_recipe_is_valid_and_its_files_exist() -> None:
    pkg = find_package(PROJECT_ROOT / "specs", "vhd-tool")
    recipe = parse_probe(pkg.probe, str(pkg.path))
    assert "src/channels.ml" in recipe.upstream_files
    assert all(path.is_file() for path in recipe_files(recipe, PROJECT_ROOT))
    assert recipe.stall == 30


OCAML_ERROR = """\
File "copy.ml", line 7, characters 8-9:
7 |   | exception Unix.Unix_error (e, _, _) -> ()
            ^
Warning 26 [unused-var]: unused variable e.
File "copy.ml", line 9, characters 6-24:
9 |       Unix.wait_writable dst;
          ^^^^^^^^^^^^^^^^^^
Error: Unbound value Unix.wait_writable
"""

C_ERROR = """\
sendfile64_stubs.c: In function 'stub_sendfile64':
sendfile64_stubs.c:55:3: error: 'bytes' undeclared (first use in this function)
"""


def test_an_ocaml_error_names_the_recipe_file_and_line_skipping_warnings() -> None:
    where = probe.describe_compile_error(OCAML_ERROR, {"copy.ml": "upstream src/copy.ml"})
    assert where == "upstream src/copy.ml line 9: Error: Unbound value Unix.wait_writable"


def test_a_c_error_names_the_file_and_line() -> None:
    where = probe.describe_compile_error(C_ERROR, {"sendfile64_stubs.c": "upstream src/sendfile64_stubs.c"})
    assert where == "upstream src/sendfile64_stubs.c line 55: error: 'bytes' undeclared (first use in this function)"


def test_an_unrecognised_failure_shows_the_last_lines() -> None:
    assert probe.describe_compile_error("sh: 1: ocamlfind: not found\n", {}) == "sh: 1: ocamlfind: not found"


SIZE = 1024
SHA = "a" * 64


def _run(name: str, **fields: Any) -> dict[str, Any]:
    run = {
        "name": name,
        "stall": 0.0,
        "ok": True,
        "outcome": "complete",
        "status": 200,
        "content_length": SIZE,
        "bytes_received": SIZE,
        "sha256": SHA,
        "match": True,
        "duration_s": 0.5,
        "detail": "complete, byte-exact",
        "events": [],
    }
    run.update(fields)
    return run


def test_every_run_complete_and_a_clean_exit_is_survived() -> None:
    raw = {"ready": True, "runs": [_run("raw"), _run("stall", stall=5.0)], "driver_exit": 0}
    verdict, reason, runs = probe.judge(raw, SHA, SIZE)
    assert (verdict, reason) == ("survived", "")
    assert [r.ok for r in runs] == [True, True]


@pytest.mark.parametrize(
    ("run", "exit_code", "fragment"),
    [
        (
            _run("stall", ok=False, outcome="truncated", bytes_received=10, detail="closed after 10"),
            2,
            "closed after 10",
        ),
        (_run("stall", sha256="b" * 64, match=False, ok=False, detail="sha256 differs"), 0, "sha256 differs"),
        (_run("stall", bytes_received=SIZE - 1), 0, "received 1023 of 1024"),
        (_run("stall"), 2, "exited with status 2"),
    ],
)
def test_any_loss_or_a_driver_error_is_failed(run: dict[str, Any], exit_code: int, fragment: str) -> None:
    verdict, reason, _ = probe.judge({"ready": True, "runs": [run], "driver_exit": exit_code}, SHA, SIZE)
    assert verdict == "failed"
    assert fragment in reason


def test_a_driver_that_never_listens_is_failed() -> None:
    verdict, reason, _ = probe.judge({"ready": False, "runs": [], "driver_exit": 2}, SHA, SIZE)
    assert verdict == "failed" and "never said it was ready" in reason


def test_the_verifier_kit_imports_alone_with_only_the_standard_library(tmp_path: Path) -> None:
    # The container has python3 and nothing else: the kit must be self-sufficient.
    kit = probe.verifier_kit(tmp_path / "kit")
    assert (kit / "verifier" / "client.py").is_file()
    code = "import sys; sys.path.insert(0, sys.argv[1]); import xcpbuild.verifier"
    done = subprocess.run(
        [sys.executable, "-I", "-S", "-c", code, str(tmp_path / "kit")], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr


def test_the_data_file_is_seeded_and_its_sha256_is_right(tmp_path: Path) -> None:
    import hashlib

    first = probe.make_data_file(tmp_path / "a", 1)
    assert first == probe.make_data_file(tmp_path / "b", 1)
    assert first == hashlib.sha256((tmp_path / "a").read_bytes()).hexdigest()
    assert (tmp_path / "a").stat().st_size == 1 << 20
