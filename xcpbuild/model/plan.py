"""Release plans: which packages the main job builds, for which target, and where they go."""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Literal, get_args

from xcpbuild.errors import ConfigError, UsageError
from xcpbuild.model.keys import one_of, parse_toml, reject_unknown
from xcpbuild.model.repo import Channel, check_channel, parse_release
from xcpbuild.model.stage import STAGES, Stage

_PLAN_KEYS = {"target", "release", "channel", "promote_to", "upgrade_from", "rpmv3", "packages"}
_PACKAGE_KEYS = {"name", "stage", "verify", "install", "channel", "upstream", "ref", "if_unreachable", "reproducible"}
# export-server: install the RPM and stall-test the installed server; probe: the package's
# probe twice on its upstream code, which must fail without the series and survive with it.
Verification = Literal["none", "export-server", "probe"]
VERIFICATIONS: tuple[Verification, ...] = get_args(Verification)
# What the sources step does when the plan's upstream cannot be reached: stop, or leave the
# package out of the run (said in one line, and listed in the summary with the reason).
Unreachable = Literal["fail", "leave-out"]
UNREACHABLE: tuple[Unreachable, ...] = get_args(Unreachable)
EMBEDDED_DEFAULT = "local"


@dataclass(frozen=True)
class PlannedPackage:
    name: str
    stage: Stage = "rpm"
    verify: Verification = "none"
    install: bool = False
    channel: Channel | None = None  # None: the plan's channel
    upstream: str | None = None  # the git URL to fetch (None: the definition's); --upstream wins
    ref: str | None = None  # the ref the plan expects; must be the target's pin (sha256-checked)
    if_unreachable: Unreachable = "fail"
    reproducible: bool = False  # built twice and compared: the run stops unless they are identical


@dataclass(frozen=True)
class Plan:
    source: str
    target: str
    release: str
    channel: Channel
    promote_to: Channel | None
    packages: tuple[PlannedPackage, ...]
    # The channels hosts run, whose live packages the publish's upgrade check upgrades to the
    # staged ones (e.g. base + updates); empty: the channel being published.
    upgrade_from: tuple[Channel, ...] = ()
    # Every package gets the header+payload signature too (rpmsign --rpmv3), not only those
    # without a payload digest: for an EL7 `rpm -K` that should check the payload as well.
    rpmv3: bool = False

    def channel_of(self, package: PlannedPackage) -> Channel:
        """Where ``package`` is published: its own channel, else the plan's."""
        return package.channel or self.channel

    @property
    def major(self) -> str:
        return self.release.split(".", 1)[0]


def _text(data: dict[str, Any], key: str, where: str, default: str | None = None) -> str:
    value = data.get(key, default)
    if not isinstance(value, str) or not value:
        raise ConfigError(f"{where} needs `{key}` as a non-empty string")
    return value


def _channel(data: dict[str, Any], key: str, where: str) -> Channel:
    """A channel named in a plan, checked now: a typo fails before any build, not after the trials."""
    value = _text(data, key, where)
    try:
        return check_channel(value)
    except UsageError as exc:
        raise ConfigError(f"`{key}` in {where}: {exc.message}") from exc


def parse_plan(text: str, source: str) -> Plan:
    data = parse_toml(text, f"plan {source}")
    reject_unknown(data, _PLAN_KEYS, f"plan {source}")
    release = _text(data, "release", f"plan {source}")
    try:
        parse_release(release)
    except UsageError as exc:
        raise ConfigError(f"release `{release}` in plan {source} must look like X.Y (e.g. 8.3)") from exc
    raw_packages = data.get("packages", [])
    if not isinstance(raw_packages, list) or not raw_packages:
        raise ConfigError(f"plan {source} lists no packages", hint="add [[packages]] tables with a name")
    packages = []
    for index, raw in enumerate(raw_packages, start=1):
        where = f"package {index} of plan {source}"
        if not isinstance(raw, dict):
            raise ConfigError(f"{where} must be a table")
        reject_unknown(raw, _PACKAGE_KEYS, where)
        stage_text = _text(raw, "stage", where, "rpm")
        verify_text = _text(raw, "verify", where, "none")
        stage = one_of(stage_text, STAGES)
        verify = one_of(verify_text, VERIFICATIONS)
        if stage is None:
            raise ConfigError(f"stage `{stage_text}` in {where} must be one of {', '.join(STAGES)}")
        if verify is None:
            raise ConfigError(f"verify `{verify_text}` in {where} must be one of {', '.join(VERIFICATIONS)}")
        unreachable_text = _text(raw, "if_unreachable", where, "fail")
        unreachable = one_of(unreachable_text, UNREACHABLE)
        if unreachable is None:
            raise ConfigError(f"if_unreachable `{unreachable_text}` in {where} must be one of {', '.join(UNREACHABLE)}")
        packages.append(
            PlannedPackage(
                name=_text(raw, "name", where),
                stage=stage,
                verify=verify,
                install=bool(raw.get("install", False)),
                channel=_channel(raw, "channel", where) if "channel" in raw else None,
                upstream=_text(raw, "upstream", where) if "upstream" in raw else None,
                ref=_text(raw, "ref", where) if "ref" in raw else None,
                if_unreachable=unreachable,
                reproducible=bool(raw.get("reproducible", False)),
            )
        )
    promote_to = _channel(data, "promote_to", f"plan {source}") if "promote_to" in data else None
    return Plan(
        source=source,
        target=_text(data, "target", f"plan {source}"),
        release=release,
        channel=_channel(data, "channel", f"plan {source}"),
        promote_to=promote_to,
        packages=tuple(packages),
        upgrade_from=_upgrade_from(data, f"plan {source}"),
        rpmv3=_flag(data, "rpmv3", f"plan {source}"),
    )


def _flag(data: dict[str, Any], key: str, where: str) -> bool:
    value = data.get(key, False)
    if not isinstance(value, bool):
        raise ConfigError(f"{where} needs `{key}` as true or false", hint=f"e.g. {key} = true")
    return value


def _upgrade_from(data: dict[str, Any], where: str) -> tuple[Channel, ...]:
    if "upgrade_from" not in data:
        return ()
    value = data["upgrade_from"]
    if not isinstance(value, list) or not value:
        raise ConfigError(
            f"{where} needs `upgrade_from` as a non-empty list of channels", hint='e.g. ["base", "updates"]'
        )
    return tuple(_channel({"upgrade_from": item}, "upgrade_from", where) for item in value)


def load_plan(path: Path | None) -> Plan:
    """Load ``path``, or the embedded default plan when ``path`` is None."""
    if path is None:
        text = resources.files("xcpbuild.plans").joinpath(f"{EMBEDDED_DEFAULT}.toml").read_text()
        return parse_plan(text, f"(embedded {EMBEDDED_DEFAULT})")
    try:
        return parse_plan(path.read_text(), str(path))
    except FileNotFoundError as exc:
        raise ConfigError(f"plan {path} does not exist", hint="omit --plan to use the embedded default") from exc
