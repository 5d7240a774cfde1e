"""``build_repodata`` with forked readers: the same metadata as one process, and clean failures.

The tree holds many generated packages plus a few with dependencies, obsoletes and
several files, so the XML a reader sends covers more than names. Each comparison
is of what createrepo_c's parser and dnf read back, not of our own records alone.
"""

from __future__ import annotations

import gzip
import os
import shutil
import signal
import subprocess
import threading
import time
import zlib
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path

import createrepo_c as cr
import pytest

from tests.conftest import need_tool
from tests.fixtures.rpms import make_many_rpms, make_rpm
from xcpbuild.adapters import createrepo, dnf
from xcpbuild.errors import PublishError, RpmError

COUNT = 60


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    need_tool("rpmbuild", "createrepo_c", "dnf")
    build = tmp_path_factory.mktemp("rpms")
    rpms = make_many_rpms(build, "many", COUNT)
    rpms += [
        make_rpm(build, "alpha", "2.1", "3", files={"/etc/alpha.conf": "a=1\n", "/usr/bin/alpha": "#!/bin/sh\n"}),
        make_rpm(build, "omega", "1.0", requires=["alpha >= 2"], obsoletes=["omega-old < 1"]),
        make_rpm(build, "middle", "0.9", requires=["many-00001"]),
    ]
    root = tmp_path_factory.mktemp("tree")
    (root / "Packages").mkdir()
    for rpm in rpms:
        shutil.copyfile(rpm, root / "Packages" / rpm.name)
    return root


def hrefs(root: Path) -> list[str]:
    return sorted(f"Packages/{path.name}" for path in (root / "Packages").iterdir())


def xml_texts(repodata: Path) -> dict[str, bytes]:
    """The decompressed primary, filelists and other XML, by type."""
    return {
        entry.type: gzip.decompress((repodata.parent / entry.href).read_bytes())
        for entry in createrepo.read_repomd(repodata)
    }


def single_members(repodata: Path) -> bool:
    """Every XML file is one gzip member with nothing after it (what the segment path writes)."""
    for entry in createrepo.read_repomd(repodata):
        inflater = zlib.decompressobj(wbits=31)
        inflater.decompress((repodata.parent / entry.href).read_bytes())
        if not inflater.eof or inflater.unused_data:
            return False
    return True


def parsed(repo: Path) -> dict[str, tuple[str, str, str]]:
    """Every package as createrepo_c's parser reads the repo, dumped back to XML, by href."""
    metadata = cr.Metadata(cr.HT_KEY_HASH)
    metadata.locate_and_load_xml(str(repo))
    packages = (metadata.get(key) for key in metadata.keys())  # noqa: SIM118 (a createrepo_c Metadata)
    return {pkg.location_href: cr.xml_dump(pkg) for pkg in packages}


def children() -> set[int]:
    """This process's child processes, zombies included (all threads)."""
    found: set[int] = set()
    for task in Path("/proc/self/task").iterdir():
        found.update(int(pid) for pid in (task / "children").read_text().split())
    return found


def build(root: Path, out: Path, workers: int | None, **kwargs: object) -> createrepo.RepodataResult:
    shutil.rmtree(out, ignore_errors=True)
    return createrepo.build_repodata(root, hrefs(root), out / "repodata", workers=workers, **kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize("workers", [1, 3])
def test_forked_readers_write_the_same_metadata_as_one_process(tree: Path, tmp_path: Path, workers: int) -> None:
    serial = build(tree, tmp_path / "serial", 0)
    forked = build(tree, tmp_path / "forked", workers)
    assert forked.read == serial.read == COUNT + 3
    assert forked.packages == serial.packages
    # Nothing reused: the readers compressed their slices into segments of one gzip member.
    assert single_members(tmp_path / "forked" / "repodata")
    assert xml_texts(tmp_path / "forked" / "repodata") == xml_texts(tmp_path / "serial" / "repodata")
    assert parsed(tmp_path / "forked") == parsed(tmp_path / "serial")


def test_forked_metadata_matches_the_createrepo_c_cli(tree: Path, tmp_path: Path) -> None:
    ours = tmp_path / "ours"
    build(tree, ours, 1)
    cli = tmp_path / "cli"
    cli.mkdir()
    subprocess.run(
        ["createrepo_c", "--no-database", "--general-compress-type=gz", "--outputdir", str(cli), str(tree)],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    theirs, mine = parsed(cli), parsed(ours)
    assert sorted(mine) == hrefs(tree)
    assert mine == theirs


def test_dnf_installs_from_forked_metadata(tree: Path, tmp_path: Path) -> None:
    root = tmp_path / "tree"
    shutil.copytree(tree, root, copy_function=os.link)
    createrepo.build_repodata(root, hrefs(root), root / "repodata", workers=1)
    # alpha is read by this process, many-00059 and omega by the forked reader.
    result = dnf.install([dnf.Repo("forked", root)], ["alpha", "omega", "many-00059"], None, "8.3")
    assert result.installed == ["alpha-2.1-3.noarch", "many-00059-1.0-1.noarch", "omega-1.0-1.noarch"]


def test_reused_packages_interleave_with_forked_reads(tree: Path, tmp_path: Path) -> None:
    all_hrefs = hrefs(tree)
    first = tmp_path / "first" / "repodata"
    half = all_hrefs[::2]
    createrepo.build_repodata(tree, half, first, workers=0)
    stats = {href: createrepo.stat_key(tree / href) for href in half}
    again = {}
    for workers in (0, 1):
        out = tmp_path / f"again-{workers}"
        result = createrepo.build_repodata(
            tree, all_hrefs, out / "repodata", previous=first, previous_stats=stats, workers=workers
        )
        assert (result.read, result.reused) == (len(all_hrefs) - len(half), len(half))
        again[workers] = (result.packages, xml_texts(out / "repodata"))
    assert again[1] == again[0]


def test_a_non_rpm_in_a_readers_slice_is_named(tree: Path, tmp_path: Path) -> None:
    root = tmp_path / "tree"
    shutil.copytree(tree, root, copy_function=os.link)
    (root / "Packages" / "zzz-broken.rpm").write_bytes(b"not an rpm at all\n" * 100)
    before = children()
    with pytest.raises(RpmError, match=r"zzz-broken\.rpm is not a readable RPM package"):
        build(root, tmp_path / "out", 1)
    assert children() == before
    assert list((tmp_path / "out" / "repodata").iterdir()) == []


def test_a_file_vanishing_under_a_reader_is_a_publish_error(
    tree: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "tree"
    shutil.copytree(tree, root, copy_function=os.link)
    doomed = root / "Packages" / "omega-1.0-1.noarch.rpm"
    load = createrepo._load

    def vanishing(path: Path | str, href: str) -> object:
        if Path(path) == doomed:  # after the stat; omega sorts last, so in the forked reader
            (tmp_path / "unlinked-by").write_text(str(os.getpid()))
            Path(path).unlink()
        return load(path, href)

    monkeypatch.setattr(createrepo, "_load", vanishing)
    before = children()
    with pytest.raises(PublishError, match=r"omega-1\.0-1\.noarch\.rpm vanished while building metadata"):
        build(root, tmp_path / "out", 1)
    assert int((tmp_path / "unlinked-by").read_text()) != os.getpid()
    assert children() == before
    assert list((tmp_path / "out" / "repodata").iterdir()) == []


@pytest.fixture
def fifo_tree(tree: Path, tmp_path: Path) -> Iterator[Path]:
    """The tree plus a FIFO sorting last: a reader opening it blocks until killed."""
    root = tmp_path / "tree"
    shutil.copytree(tree, root, copy_function=os.link)
    os.mkfifo(root / "Packages" / "zzz-stuck.rpm")
    yield root


def once_forked(before: set[int], then: Callable[[set[int]], None]) -> threading.Thread:
    """A started thread that waits (30 s at most) for children not in ``before``, then calls ``then`` with them."""

    def watch() -> None:
        deadline = time.monotonic() + 30
        new: set[int] = set()
        while time.monotonic() < deadline and not new:
            new = children() - before
            time.sleep(0.01)
        then(new)

    thread = threading.Thread(target=watch)
    thread.start()
    return thread


def test_a_killed_reader_is_reaped_and_leaves_no_metadata(fifo_tree: Path, tmp_path: Path) -> None:
    before = children()
    killed: list[int] = []

    def kill(pids: set[int]) -> None:
        for pid in pids:
            os.kill(pid, signal.SIGKILL)
            killed.append(pid)

    killer = once_forked(before, kill)
    try:
        with pytest.raises(PublishError, match=r"metadata reader for .* failed: killed by SIGKILL"):
            build(fifo_tree, tmp_path / "out", 1)
    finally:
        killer.join()
    assert len(killed) == 1
    assert children() == before
    assert list((tmp_path / "out" / "repodata").iterdir()) == []


def test_an_interrupted_build_kills_and_reaps_its_readers(fifo_tree: Path, tmp_path: Path) -> None:
    """Ctrl-C in this process while a reader is still busy: the reader does not outlive it."""
    before = children()
    seen: list[int] = []

    def interrupt(pids: set[int]) -> None:
        seen.extend(pids)
        signal.pthread_kill(threading.main_thread().ident or 0, signal.SIGINT)

    interrupter = once_forked(before, interrupt)
    try:
        with pytest.raises(KeyboardInterrupt):
            build(fifo_tree, tmp_path / "out", 1)
    finally:
        interrupter.join()
    assert seen
    assert children() == before
    assert list((tmp_path / "out" / "repodata").iterdir()) == []


def test_a_failed_fork_falls_back_to_reading_here(tree: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    serial = build(tree, tmp_path / "serial", 0)
    real_fork = os.fork
    forks: list[int] = []

    def fork_once() -> int:
        forks.append(len(forks))
        if len(forks) > 1:
            raise BlockingIOError(11, "Resource temporarily unavailable")
        return real_fork()

    monkeypatch.setattr(os, "fork", fork_once)
    before = children()
    fallback = build(tree, tmp_path / "fallback", 3)  # the first reader forked, the second could not
    assert forks == [0, 1]
    assert children() == before
    assert fallback.packages == serial.packages
    assert xml_texts(tmp_path / "fallback" / "repodata") == xml_texts(tmp_path / "serial" / "repodata")


def test_forked_readers_from_a_thread(tree: Path, tmp_path: Path) -> None:
    """Publishing may run off the main thread; the readers still reset their signals and report."""
    serial = build(tree, tmp_path / "serial", 0)
    results: list[createrepo.RepodataResult] = []
    worker = threading.Thread(target=lambda: results.append(build(tree, tmp_path / "thread", 1)))
    worker.start()
    worker.join()
    assert [result.packages for result in results] == [serial.packages]
    assert xml_texts(tmp_path / "thread" / "repodata") == xml_texts(tmp_path / "serial" / "repodata")


def test_a_package_missing_from_the_start_is_a_publish_error(tree: Path, tmp_path: Path) -> None:
    """Every package is stat-ed before any is read, so a missing one fails before a fork."""
    before = children()
    out = tmp_path / "out" / "repodata"
    with pytest.raises(PublishError, match=r"zzz-missing\.rpm vanished while building metadata"):
        createrepo.build_repodata(tree, [*hrefs(tree), "Packages/zzz-missing.rpm"], out, workers=1)
    assert children() == before
    assert list(out.iterdir()) == []


def test_a_few_new_packages_reuse_the_previous_xml_as_a_full_rewrite_writes_it(
    tree: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``previous_records``: unchanged packages' XML comes from the previous files; the result equals a
    full rewrite (what createrepo_c dumps for every package), and a mismatch falls back to reading."""
    all_hrefs = hrefs(tree)
    fewer = [h for h in all_hrefs if "alpha" not in h and "many-00030" not in h]  # the new ones sort inside
    first = tmp_path / "first" / "repodata"
    base = createrepo.build_repodata(tree, fewer, first, workers=0)
    full = tmp_path / "full" / "repodata"
    createrepo.build_repodata(tree, all_hrefs, full, workers=0)
    spliced = tmp_path / "spliced" / "repodata"
    loads: list[object] = []
    real_previous = createrepo._previous_packages

    def counted(path: Path | None) -> dict[str, cr.Package]:
        loads.append(path)
        return real_previous(path)

    monkeypatch.setattr(createrepo, "_previous_packages", counted)
    result = createrepo.build_repodata(tree, all_hrefs, spliced, previous=first, previous_records=base.packages)
    assert loads == []  # nothing parsed back into package objects
    assert (result.read, result.reused) == (2, len(fewer))
    assert xml_texts(spliced) == xml_texts(full)
    assert single_members(spliced)
    assert result.packages == createrepo.build_repodata(tree, all_hrefs, tmp_path / "again" / "repodata").packages
    # Records that do not describe the previous files (another pkgid): everything is read again, correctly.
    wrong = [replace(r, pkgid="0" * 64) if r.name == "omega" else r for r in base.packages]
    fallback = tmp_path / "fallback" / "repodata"
    result = createrepo.build_repodata(tree, all_hrefs, fallback, previous=first, previous_records=wrong)
    assert xml_texts(fallback) == xml_texts(full)
    assert loads == [first]
    root = tmp_path / "tree"  # hard links: the same inodes, so the same stat keys
    shutil.copytree(tree, root, copy_function=os.link)
    createrepo.build_repodata(root, all_hrefs, root / "repodata", previous=first, previous_records=base.packages)
    installed = dnf.install([dnf.Repo("spliced", root)], ["alpha", "omega"], None, "8.3").installed
    assert installed == ["alpha-2.1-3.noarch", "omega-1.0-1.noarch"]
