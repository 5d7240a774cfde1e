"""The export server ships alone (noarch RPM): it must run from its own files with the stdlib only."""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

from tests.conftest import PROJECT_ROOT
from xcpbuild.model.package import find_package


def test_the_server_runs_from_only_its_shipped_files_without_site_packages(tmp_path: Path) -> None:
    # Exactly what the RPM ships: the package definition's project_paths.
    shipped = find_package(PROJECT_ROOT / "specs", "xcp-export-server").project_paths
    assert "xcpbuild/exportserver" in shipped
    root = tmp_path / "pkg"
    for item in shipped:
        source = PROJECT_ROOT / item
        if source.is_dir():
            shutil.copytree(source, root / item, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            (root / item).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(source, root / item)
    disk = tmp_path / "d.raw"
    disk.write_bytes(b"standalone" * 1000)
    # -S: no site-packages, -I: ignore the environment and the current directory's checkout.
    argv = [sys.executable, "-S", "-m", "xcpbuild.exportserver", "--disk", f"d={disk}", "--token", "t", "--port", "0"]
    proc = subprocess.Popen(argv, cwd=root, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().strip()
        assert line.startswith("listening on http://127.0.0.1:"), line + (proc.stderr.read() if proc.stderr else "")
        url = line.removeprefix("listening on ") + "/export_raw_vdi?session_id=t&vdi=d&format=raw"
        with urllib.request.urlopen(url, timeout=10) as response:
            assert response.read() == disk.read_bytes()
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
