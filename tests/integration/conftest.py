"""Integration fixtures: real images made here from Debian's files (no registry is reachable)."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import pytest

from tests.conftest import need

BUSYBOX = Path("/bin/busybox")
TINY_IMAGE = "xcpbuild-test-tiny:2"  # 2: with find (the glob of the adapter)
_APPLETS = (
    *("sh", "sleep", "id", "cat", "ls", "mkdir", "echo", "sha256sum", "wc", "true", "false", "head", "dd", "kill"),
    "find",
)


@pytest.fixture(scope="session")
def tiny_image(docker_client, tmp_path_factory: pytest.TempPathFactory) -> str:  # type: ignore[no-untyped-def]
    """A few-MB image holding only a static busybox: fast to make, enough to test the adapter."""
    need(BUSYBOX.exists(), "a static busybox (apt-get install busybox-static)")
    try:
        docker_client.sdk.images.get(TINY_IMAGE)
        return TINY_IMAGE
    except Exception:
        pass
    rootfs = tmp_path_factory.mktemp("tiny") / "rootfs.tar"
    with tarfile.open(rootfs, mode="w") as tar:
        for directory, mode in (
            ("bin", 0o755),
            ("tmp", 0o1777),
            ("etc", 0o755),
            ("work", 0o1777),
            ("proc", 0o755),
            ("sys", 0o755),
            ("dev", 0o755),
        ):
            info = tarfile.TarInfo(directory)
            info.type = tarfile.DIRTYPE
            info.mode = mode
            tar.addfile(info)
        tar.add(str(BUSYBOX), arcname="bin/busybox")
        for applet in _APPLETS:
            link = tarfile.TarInfo(f"bin/{applet}")
            link.type = tarfile.SYMTYPE
            link.linkname = "busybox"
            tar.addfile(link)
        passwd = b"root:x:0:0:root:/root:/bin/sh\nbuilder:x:1000:1000:builder:/tmp:/bin/sh\n"
        info = tarfile.TarInfo("etc/passwd")
        info.size = len(passwd)
        tar.addfile(info, io.BytesIO(passwd))
    from xcpbuild.adapters.container import import_rootfs

    repository, tag = TINY_IMAGE.split(":")
    import_rootfs(docker_client, rootfs, repository, tag, changes=["ENV PATH=/bin"])
    return TINY_IMAGE


# Build-environment fixtures (one local image per run, throwaway project copies).
from tests.integration.build_fixtures import local_image, project  # noqa: E402, F401
