"""Static checks run as part of the test suite: import contracts, ruff, strict mypy."""

from __future__ import annotations

import ast
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from tests.conftest import PROJECT_ROOT

BIN = Path(sys.executable).parent


@pytest.mark.parametrize(
    "argv",
    [
        pytest.param([str(BIN / "lint-imports")], id="import-contracts"),
        pytest.param([str(BIN / "ruff"), "check", "."], id="ruff"),
        pytest.param([sys.executable, "-m", "mypy"], id="mypy-strict"),
    ],
)
def test_static_check_passes(argv: list[str]) -> None:
    done = subprocess.run(argv, cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]


PIPELINE = PROJECT_ROOT / "xcpbuild" / "pipeline"


def _domain_exports() -> dict[str, set[str]]:
    exports: dict[str, set[str]] = {}
    for init in sorted(PIPELINE.glob("*/__init__.py")):
        tree = ast.parse(init.read_text())
        names: set[str] = set()
        for node in tree.body:
            targets = node.targets if isinstance(node, ast.Assign) else []
            if any(isinstance(t, ast.Name) and t.id == "__all__" for t in targets):
                assert isinstance(node, ast.Assign)
                names = set(ast.literal_eval(node.value))
        exports[init.parent.name] = names
    return exports


def _imported(node: ast.AST) -> list[tuple[str, str | None]]:
    """(module, name) pairs an import statement brings in."""
    if isinstance(node, ast.ImportFrom) and node.module:
        return [(node.module, alias.name) for alias in node.names]
    if isinstance(node, ast.Import):
        return [(alias.name, None) for alias in node.names]
    return []


def test_pipeline_domains_reach_each_other_only_through_what_they_export() -> None:
    exports = _domain_exports()
    assert {"sources", "build", "verify", "publish", "release"} <= set(exports)
    wrong = []
    for path in sorted((PROJECT_ROOT / "xcpbuild").rglob("*.py")):
        relative = path.relative_to(PROJECT_ROOT / "xcpbuild").parts
        own = relative[1] if relative[0] == "pipeline" and len(relative) > 2 else None
        for node in ast.walk(ast.parse(path.read_text())):
            for module, name in _imported(node):
                parts = module.split(".")
                if parts[:2] != ["xcpbuild", "pipeline"] or len(parts) < 3 or parts[2] == own:
                    continue
                domain = parts[2]
                if domain not in exports:
                    continue
                public = parts[3] if len(parts) > 3 else name
                if public not in exports[domain]:
                    wrong.append(f"{path.relative_to(PROJECT_ROOT)}: {module} {name or ''}")
    assert not wrong, "imports past a domain's __all__:\n" + "\n".join(wrong)


def test_what_the_export_server_ships_runs_on_python_3_6() -> None:
    # XCP-ng 7.x/8.x dom0 has Python 3.6; no interpreter that old installs here, so vermin
    # (a minimum-version analyser) checks the package's own file list instead.
    definition = tomllib.loads((PROJECT_ROOT / "specs" / "xcp-export-server.toml").read_text())
    shipped = [str(PROJECT_ROOT / path) for path in definition["project_paths"]]
    argv = [str(BIN / "vermin"), "--no-tips", "--violations", "--eval-annotations", "-t=3.6-", *shipped]
    done = subprocess.run(argv, cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]


def test_only_adapters_reach_into_the_docker_sdk() -> None:
    """The engine handle is opaque above the adapters: no `.sdk` outside them."""
    offenders = []
    for layer in ("cli", "pipeline", "model"):
        for path in (PROJECT_ROOT / "xcpbuild" / layer).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.Attribute) and node.attr == "sdk":
                    offenders.append(f"{path.relative_to(PROJECT_ROOT)}:{node.lineno}")
    assert offenders == []
