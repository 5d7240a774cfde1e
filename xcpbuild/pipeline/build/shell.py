"""A shell in a package's build environment: the target's image with the sources and spec staged.

xcp-ng-dev's ``--no-exit`` use case: the same container a build would use
(uid 1000, network none unless asked), with ``SOURCES/`` and ``SPECS/`` in
place, so a packager can run rpmbuild steps by hand. The container is removed
when the shell ends (``--keep-container`` keeps it).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from xcpbuild.adapters import container, owned
from xcpbuild.config import Settings
from xcpbuild.log import step
from xcpbuild.pipeline.build import build, image
from xcpbuild.pipeline.sources.package import Package


@contextmanager
def environment(
    settings: Settings,
    package: Package,
    options: build.BuildOptions,
    *,
    network: bool = False,
    client: container.Client | None = None,
) -> Iterator[container.BuildContainer]:
    """A running build container with ``package`` staged in ``TOPDIR``; removed on exit."""
    options.check()
    builds = settings.work_dir / "builds"
    builds.mkdir(parents=True, exist_ok=True)
    with owned.tempdir(".shell", parent=builds) as staging:
        sources = staging / "SOURCES"
        sources.mkdir()
        planned = build.plan(settings, package, options, sources)
        engine_client = client if client is not None else container.get_client()
        image.build(settings, planned.target, client=engine_client)
        box_options = container.ContainerOptions(
            image=planned.image_tag,
            workdir=build.TOPDIR,
            keep=options.keep_container,
            role="shell",
            environment=dict(options.environment),
            mounts=options.mounts,
            network="host" if network else None,
        )
        with container.BuildContainer(engine_client, box_options) as box:
            with step(f"stage {planned.title} in {box.name}"):
                box.put(planned.files, build.TOPDIR / "SOURCES")
                box.put_bytes({planned.spec.filename: planned.spec.text.encode()}, build.TOPDIR / "SPECS")
            yield box
