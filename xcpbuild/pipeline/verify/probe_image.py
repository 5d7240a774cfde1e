"""The container image a probe compiles and runs in.

It is the ``local`` target's image plus the Debian packages the package's
``[probe]`` recipe names, built from ``containers/<recipe.image>/Dockerfile``.
The tag is a hash of everything that goes into it (the Dockerfile directory,
the base image, the package list), so it is built once and reused until one of
them changes. Only this build gets host networking, to install packages from the
machine's own Debian mirror.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from xcpbuild.adapters import container, rootfs
from xcpbuild.config import Settings
from xcpbuild.errors import ConfigError
from xcpbuild.log import get_logger, step
from xcpbuild.model.probe import ProbeRecipe
from xcpbuild.pipeline.build import image

log = get_logger("probe")

BASE_TARGET = "local"
SUITE = "bookworm"


def context_dir(settings: Settings, recipe: ProbeRecipe) -> Path:
    found = settings.containers_dir / recipe.image
    if not (found / "Dockerfile").is_file():
        raise ConfigError(
            f"the probe image {recipe.image} has no Dockerfile ({found / 'Dockerfile'} does not exist)",
            hint="`image` in [probe] names a directory of containers/ holding a Dockerfile",
        )
    return found


def probe_tag(settings: Settings, recipe: ProbeRecipe, base_tag: str) -> str:
    """``xcpbuild-<image>:<hash>`` of the Dockerfile directory, the base image and the packages."""
    digest = hashlib.sha256()
    digest.update(image.context_digest(context_dir(settings, recipe)).encode())
    digest.update(base_tag.encode())
    digest.update(" ".join(sorted(recipe.packages)).encode())
    return f"xcpbuild-{recipe.image}:{digest.hexdigest()[:16]}"


def base(settings: Settings, client: container.Client) -> str:
    """The tag of the image probe images are built on (the ``local`` target's), built when missing."""
    return image.build(settings, BASE_TARGET, client=client).tag


def ensure(
    settings: Settings, recipe: ProbeRecipe, client: container.Client, *, stop: container.ImageBuildStop | None = None
) -> str:
    """The probe image's tag, building the base and the probe image only when missing.

    ``stop`` lets another thread end the probe image's build (the release builds
    it beside its build step).
    """
    base_tag = base(settings, client)
    tag = probe_tag(settings, recipe, base_tag)
    if container.image_id(client, tag) is not None:
        log.info("probe image %s is cached", tag)
        return tag
    with step(f"build probe image {tag} ({', '.join(recipe.packages) or 'no extra packages'})"):
        container.build_image(
            client,
            context_dir(settings, recipe),
            tag,
            buildargs={
                "BASE": base_tag,
                "MIRROR": rootfs.debian_mirror(SUITE),
                "SUITE": SUITE,
                "PACKAGES": " ".join(recipe.packages),
            },
            host_network=True,
            on_line=log.debug,
            stop=stop,
        )
    return tag
