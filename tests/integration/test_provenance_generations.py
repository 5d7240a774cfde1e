"""Provenance belongs to a generation: carried to the next, promoted with its package, rolled back with it.

Real rpmbuild-made packages in build folders with a build's statement, real gpg, createrepo_c and dnf.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import need_tool
from tests.fixtures.buildfolders import attested_build
from tests.fixtures.gpgkeys import GpgTestKey, make_key, stop_agent
from tests.fixtures.rpms import make_rpm
from xcpbuild.errors import VerifyError
from xcpbuild.pipeline.publish import attest, history, publish
from xcpbuild.pipeline.publish import repo as repolib

RELEASE = "8.3"


@pytest.fixture(scope="module")
def key(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GpgTestKey]:
    need_tool("rpmbuild", "rpmsign", "rpmkeys", "gpg", "dnf")
    made = make_key(tmp_path_factory.mktemp("key"))
    yield made
    stop_agent(made)


def _index(root: Path, channel: str) -> dict[str, dict[str, object]]:
    binary, _ = repolib.repo_dirs(root, RELEASE, channel)
    entries: dict[str, dict[str, object]] = json.loads((binary.repodata / attest.INDEX).read_text())["entries"]
    return entries


def test_provenance_travels_with_promotion_and_rollback(tmp_path: Path, key: GpgTestKey) -> None:
    root = tmp_path / "repo"
    (one,) = attested_build(tmp_path / "b1", [make_rpm(tmp_path, "tool", "1.0")])
    publish.publish([one], root, RELEASE, "testing", key=key)
    binary, _ = repolib.repo_dirs(root, RELEASE, "testing")
    published_one = binary.packages_dir / one.name

    # Promoted: updates' new generation carries the statement testing had, signed again.
    promoted = publish.promote(root, RELEASE, "testing", "updates", ["tool"], key=key)
    assert [n for r in promoted.publish.repos for n in r.provenance] == ["tool-1.0-1.noarch.intoto.json"]
    updates, _ = repolib.repo_dirs(root, RELEASE, "updates")
    assert attest.verify(str(updates.packages_dir / one.name), key.public_key).nevra == "tool-1.0-1.noarch"

    # The next generation carries 1.0's envelope and adds 2.0's.
    (two,) = attested_build(tmp_path / "b2", [make_rpm(tmp_path, "tool", "2.0")])
    report = publish.publish([two], root, RELEASE, "testing", key=key)
    assert [n for r in report.repos for n in r.provenance] == ["tool-2.0-1.noarch.intoto.json"]
    assert sorted(_index(root, "testing")) == [one.name, two.name]
    for rpm in (published_one, binary.packages_dir / two.name):
        attest.verify(str(rpm), key.public_key)

    # Rolled back: the generation served again brings its own provenance back, without 2.0's.
    history.rollback(root, RELEASE, "testing")
    assert sorted(_index(root, "testing")) == [one.name]
    attest.verify(str(published_one), key.public_key)
    with pytest.raises(VerifyError, match=r"no entry for tool-2\.0-1\.noarch\.rpm"):
        attest.verify(str(binary.packages_dir / two.name), key.public_key)
