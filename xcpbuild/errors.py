"""Every error xcpbuild reports to a user.

Each class carries a documented exit code and a hint that says how to fix the
problem. Adapters translate third-party exceptions into these (``raise ... from
exc``); only the CLI turns them into output and an exit status. This module
imports nothing from the package so every layer can use it. It runs on Python 3.6
(the export server ships it to XCP-ng dom0).
"""

from typing import Optional


class XcpbuildError(Exception):
    """Base class: a failure the user can act on."""

    exit_code: int = 1
    default_hint: str = ""

    def __init__(self, message: str, hint: Optional[str] = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint if hint is not None else self.default_hint

    def __str__(self) -> str:
        return self.message


class UsageError(XcpbuildError):
    """Bad command-line input or a bad value in a file the user wrote."""

    exit_code = 2
    default_hint = "run the command with --help to see what it accepts"


class ConfigError(XcpbuildError):
    """A package definition, plan or target file is malformed or unknown."""

    exit_code = 3
    default_hint = "check the file named above against the examples in specs/ and containers/"


class ToolMissingError(XcpbuildError):
    """A host tool (rpmbuild, createrepo_c, dnf, gpg, qemu-img, ...) or an optional extra (koji) is absent."""

    exit_code = 4
    default_hint = "run `xcpbuild doctor` to see what is missing and how to install it"


class EngineError(XcpbuildError):
    """The container engine is unreachable or refused an operation."""

    exit_code = 5
    default_hint = (
        "start an engine with `xcpbuild engine up` (Debian, root), or point DOCKER_HOST at "
        "a Docker or Podman Docker-compatible socket"
    )


class ContainerStepError(XcpbuildError):
    """A step run inside a build container exited non-zero."""

    exit_code = 6
    default_hint = "read the log named above; rerun with --keep-container to inspect the container"


class StepTimeoutError(XcpbuildError):
    """A step exceeded its time limit and was killed."""

    exit_code = 7
    default_hint = "raise the limit with --timeout if the work is legitimately slow"


class SourceError(XcpbuildError):
    """Fetching or checking upstream sources failed."""

    exit_code = 8
    default_hint = "check the upstream URL and ref; a local path or file:// URL works offline"


class PatchError(XcpbuildError):
    """A patch in a series does not apply, or the series is malformed."""

    exit_code = 9
    default_hint = "run `xcpbuild patch check PKG --ref REF` to see the state of every patch"


class BuildError(XcpbuildError):
    """rpmbuild (or a step around it) failed."""

    exit_code = 10
    default_hint = "read build.log in the build folder named above"


class RpmError(XcpbuildError):
    """A file is not a readable RPM, or its signature does not verify."""

    exit_code = 11
    default_hint = "check that the file is an RPM package (`rpm -qp FILE`) and not truncated"


class PublishError(XcpbuildError):
    """A publish, promote or rollback was refused or failed; the live repo is untouched."""

    exit_code = 12
    default_hint = "the live repository was not changed; fix the cause and publish again"


class SigningError(XcpbuildError):
    """A signing key is missing or a signature could not be made or verified."""

    exit_code = 13
    default_hint = "list usable keys with `gpg --list-secret-keys`; pass --gnupg-home if they live elsewhere"


class VerifyError(XcpbuildError):
    """A verification found a loss, a mismatch or an error."""

    exit_code = 14
    default_hint = "the report above says which check failed"


class ServerError(XcpbuildError):
    """The export server could not start or serve."""

    exit_code = 15
    default_hint = "check the --disk paths and that the port is free"


class DiskFullError(XcpbuildError):
    """A filesystem filled up (ENOSPC) while writing; what was half-written was removed."""

    exit_code = 16
    default_hint = (
        "free space on that filesystem (or point --repo elsewhere) and run again; the live repository was not changed"
    )


class KojiError(XcpbuildError):
    """The koji hub could not be reached, refused a call, or the profile is unusable."""

    exit_code = 17
    default_hint = "check the profile (`--profile`, ~/.koji/config, /etc/koji.conf.d/) and that the hub answers"


class KojiBuildError(XcpbuildError):
    """A koji build task failed or was canceled."""

    exit_code = 18
    default_hint = "read the task's log excerpt above; `koji taskinfo -v TASK` shows the whole tree"
