"""Signed provenance end to end: a real build writes the statement, `xcpbuild publish` signs it into the generation,
`xcpbuild verify provenance` checks a package by path and by URL, and names what was tampered with."""

from __future__ import annotations

import base64
import functools
import http.server
import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import PROJECT_ROOT, need_tool
from tests.fixtures.gpgkeys import GpgTestKey, make_key, stop_agent
from tests.integration.build_fixtures import VHD_PATCH, build_package, make_vhd_tool_upstream
from xcpbuild.config import Settings
from xcpbuild.pipeline.build import provenance


@pytest.fixture
def key(tmp_path: Path) -> Iterator[GpgTestKey]:
    need_tool("gpg", "rpm", "rpmsign", "createrepo_c")
    made = make_key(tmp_path / "key")
    yield made
    stop_agent(made)


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "xcpbuild", *args], capture_output=True, text=True, cwd=PROJECT_ROOT, timeout=300,
        env=dict(os.environ),
    )  # fmt: skip


@pytest.fixture
def published(project: Settings, tmp_path: Path, key: GpgTestKey) -> tuple[Path, Path]:
    """(the published SRPM, the channel directory) of a real vhd-tool SRPM build with the patch."""
    upstream = make_vhd_tool_upstream(tmp_path / "vhd-tool")
    result = build_package(project, "vhd-tool", "local", upstream=str(upstream), ref="main", stage="srpm")
    statement = provenance.load(result.folder)
    assert statement is not None
    (artifact,) = result.artifacts
    (subject,) = statement["subject"]
    assert subject["digest"]["sha256"] == artifact.sha256 and subject["nevra"] == artifact.nevra
    definition = statement["predicate"]["buildDefinition"]
    assert f"patches/vhd-tool/{VHD_PATCH.name}" in definition["externalParameters"]["projectFiles"]
    assert {"specs/vhd-tool.toml", "specs/vhd-tool.spec.j2"} <= set(definition["externalParameters"]["projectFiles"])
    assert definition["internalParameters"]["spec"] == result.record.spec
    assert any(
        d.get("digest", {}).get("gitCommit") == result.record.source.commit for d in definition["resolvedDependencies"]
    )
    assert statement["predicate"]["runDetails"]["byproducts"][0]["name"] == "build.log"

    repo = tmp_path / "repo"
    done = _cli(
        "publish", str(result.paths()[0]), "--repo", str(repo), "--release", "8.3", "--channel", "testing",
        "--sign-key", key.fingerprint, "--gnupg-home", str(key.home),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "signed provenance" in done.stdout
    channel = repo / "8" / "8.3" / "testing"
    (srpm,) = (channel / "Source" / "SPackages").glob("vhd-tool-*.src.rpm")
    assert provenance.sha256_file(srpm) != artifact.sha256, "publish signs the package, so its sha256 changes"
    return srpm, channel


def _verify(target: str, key: GpgTestKey, *extra: str) -> subprocess.CompletedProcess[str]:
    return _cli("verify", "provenance", target, "--key", str(key.public_key), *extra)


def test_verify_provenance_passes_and_names_each_tampering(
    published: tuple[Path, Path], key: GpgTestKey, project: Settings, tmp_path: Path
) -> None:
    srpm, channel = published
    checkout = ("--checkout", str(project.project_root))
    done = _verify(str(srpm), key, *checkout)
    assert done.returncode == 0, done.stderr
    assert "RPM sha256" in done.stdout and f"patches/vhd-tool/{VHD_PATCH.name}" in done.stdout

    # By URL, as a host would fetch it (a server on 127.0.0.1 over the tree).
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(tmp_path / "repo"))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_port}/8/8.3/testing/Source/SPackages/{srpm.name}"
        done = _verify(url, key)
        assert done.returncode == 0, done.stderr
    finally:
        server.shutdown()
        thread.join()
        server.server_close()

    def refused(*extra: str) -> str:
        done = _verify(str(srpm), key, *extra)
        assert done.returncode == 14, (done.stdout, done.stderr)
        return done.stderr

    # The RPM: one byte changed.
    original = srpm.read_bytes()
    srpm.write_bytes(original[:-10] + bytes([original[-10] ^ 0xFF]) + original[-9:])
    assert "the RPM's sha256" in refused() and "differs from the statement's" in refused()
    srpm.write_bytes(original)

    # In the live generation's repodata, beside repomd.xml: it went live in the same swap.
    repodata = channel / "Source" / "repodata"
    index = json.loads((repodata / "provenance.json").read_text())
    assert index["entries"][srpm.name]["generation"] == int(repodata.readlink().parts[1])
    envelope_path = repodata / index["entries"][srpm.name]["envelope"]
    signed_text = envelope_path.read_text()
    signed = json.loads(signed_text)

    # The statement: the target rewritten (the signature is left as it was).
    statement = json.loads(base64.b64decode(signed["payload"]))
    statement["predicate"]["buildDefinition"]["externalParameters"]["target"] = "xcp-ng-8.3"
    forged = dict(signed, payload=base64.b64encode(json.dumps(statement).encode()).decode())
    envelope_path.write_text(json.dumps(forged))
    assert "differs from the one the index signed" in refused()

    # The signature: another key's signature over the same statement.
    other = make_key(tmp_path / "other", uid="someone else <other@example.invalid>")
    try:
        from xcpbuild.pipeline.publish import attest

        resigned = attest.envelope(json.loads(base64.b64decode(signed["payload"])), other, tmp_path)
    finally:
        stop_agent(other)
    assert resigned["payload"] == signed["payload"]
    envelope_path.write_text(json.dumps(dict(signed, signatures=resigned["signatures"])))
    assert "the signature of the statement" in refused()
    envelope_path.write_text(signed_text)

    # A patch in the checkout.
    patch = project.project_root / "patches" / "vhd-tool" / VHD_PATCH.name
    patch.write_text(patch.read_text() + "\n")
    message = refused(*checkout)
    assert f"patches/vhd-tool/{VHD_PATCH.name} differs from what the build used" in message

    assert _verify(str(srpm), key).returncode == 0, "everything but the checkout is back as published"
