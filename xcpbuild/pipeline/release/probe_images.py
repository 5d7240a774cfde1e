"""The probe images verify needs, built in a thread of their own beside the build step.

On a cold run the probe image (the ``local`` image plus Debian's OCaml
packages, mostly downloading and unpacking them) is the verify step's longest
part, and it needs nothing the build step makes. So the release starts it as
soon as the image it is built on exists and goes on building packages beside
it; verify waits for it. Its error is raised there, where its result is wanted,
so the build step's outcome stands. ``stop`` ends a build still running (a step
that failed, Ctrl-C, SIGTERM) and waits for its thread: no image build outlives
the run.
"""

from __future__ import annotations

import contextvars
import threading
from collections.abc import Mapping

from xcpbuild.adapters import container
from xcpbuild.config import Settings
from xcpbuild.log import get_logger, step
from xcpbuild.model.probe import ProbeRecipe
from xcpbuild.pipeline.verify import probe_image

log = get_logger("release")

# How long a stopped run waits for its probe-image thread: Docker ends the build at once.
STOP_WAIT_S = 30.0


class ProbeImages:
    """The probe images of one run, being built (see ``start``)."""

    def __init__(self, settings: Settings, recipes: Mapping[str, ProbeRecipe]) -> None:
        self._settings = settings
        self._recipes = dict(recipes)
        self._stop = container.ImageBuildStop()
        self._error: BaseException | None = None
        self.tags: dict[str, str] = {}  # package -> its probe image, once built
        context = contextvars.copy_context()
        self._thread = threading.Thread(target=context.run, args=(self._build,), name="probe-images", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _build(self) -> None:
        try:
            client = container.get_client()
            for name, recipe in self._recipes.items():
                self.tags[name] = probe_image.ensure(self._settings, recipe, client, stop=self._stop)
        except BaseException as exc:  # handed to whoever waits: a thread has no one else to tell
            self._error = exc

    def wait(self) -> None:
        """Until every probe image is built; the error of the one that could not be."""
        if self._thread.is_alive():
            with step(f"wait for the probe image(s) of {', '.join(self._recipes)}, built beside the build step"):
                self._thread.join()
        if self._error is not None:
            raise self._error

    def stop(self) -> None:
        """End a build still running and wait a little for the thread (nothing once it has finished)."""
        if self._thread.is_alive():
            log.info("stopping the probe image build(s) of %s", ", ".join(self._recipes))
            self._stop.stop()
        self._thread.join(STOP_WAIT_S)
        if self._thread.is_alive():  # a daemon thread: it does not hold the run's exit
            log.warning(
                "the engine's build of the probe image(s) of %s could not be cut short (Podman runs build "
                "steps outside the containers its Docker API lists); it ends on its own",
                ", ".join(self._recipes),
            )


def start(settings: Settings, recipes: Mapping[str, ProbeRecipe]) -> ProbeImages | None:
    """Build the image probe images are based on here, then the probe images in a thread (None: no probe)."""
    if not recipes:
        return None
    probe_image.base(settings, container.get_client())
    images = ProbeImages(settings, recipes)
    images.start()
    return images
