"""The patch probe: compile the upstream code a patch changes and make it face a stalled client.

Steps: fetch the upstream ref; apply the package's series (unless told not to);
copy the recipe's upstream files, our own shims and driver into a fresh probe
container; compile; start the driver on a generated file; face it with the
backpressure client; judge: ``survived`` (every run got the whole file,
byte-exact, and the driver exited cleanly) or ``failed`` (with the driver's own
error output, e.g. ``Unix.Unix_error(Unix.EAGAIN, "sendfile", "")``).

How the client reaches the probe. The probe container has network ``none``, so
it has only its own loopback; nothing outside can connect to it, and nothing
in it can reach out. The client therefore runs *inside the same container*, as
``probes/probe_runner.py`` under the image's python3 (standard library only):
it starts the driver, waits for the recipe's readiness line, then runs a raw
read, a throttled read and a long stall against 127.0.0.1, and prints one JSON
report. Everything between the driver and the client is the kernel's loopback
TCP, as between vhd-tool and a backup client; no relay (docker exec streams, a
proxy) adds buffering that would hide the stall. The expected sha256 is
computed here, on the host, from the file this step generates.

Every probe leaves a folder under ``<work>/probe/`` with ``compile.log``,
``driver.stderr`` and ``report.json``.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
import shutil
import tarfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, Literal

from xcpbuild import verifier as verify
from xcpbuild.adapters import container
from xcpbuild.config import Settings
from xcpbuild.errors import BuildError, ConfigError, SourceError, UsageError, VerifyError, XcpbuildError
from xcpbuild.log import get_logger, step
from xcpbuild.model.keys import one_of
from xcpbuild.model.package import find_package
from xcpbuild.model.probe import ProbeRecipe, parse_probe, recipe_files
from xcpbuild.pipeline.sources import patch, source
from xcpbuild.pipeline.sources.package import Define, DefinedPackage, Package, resolve
from xcpbuild.pipeline.verify import probe_image

log = get_logger("probe")

BUILD_DIR = PurePosixPath("/tmp/probe")
PORT = 8080  # on the container's own loopback; nothing outside can reach it
DATA_FILE = "probe-disk.img"
RUNNER = "probe_runner.py"
RUNS = ("raw", "throttle", "stall")  # one request each; the stall comes last
RUN_SLACK = 300.0  # seconds beyond the stall for the whole run step
KIT_DIR = "verifier"
# xcpbuild.verifier and what it imports: copied into the container, where
# nothing else of xcpbuild (nor its dependencies) is installed.
VERIFIER_MODULES = ("__init__.py", "errors.py", "log.py", "vhd.py")
VERIFIER_PACKAGE = "verifier"

Verdict = Literal["survived", "failed"]


@dataclass(frozen=True)
class RunResult:
    """One verifier run against the driver."""

    name: str
    stall: float
    ok: bool
    outcome: verify.Outcome = "error"
    status: int | None = None
    content_length: int | None = None
    bytes: int = 0
    sha256: str | None = None
    seconds: float = 0.0
    error: str | None = None
    events: tuple[str, ...] = ()


@dataclass
class ProbeReport:
    """What a probe found."""

    package: str
    upstream: str
    ref: str
    commit: str
    patched: bool
    patches: list[str]
    image: str
    stall: float
    file_bytes: int
    expected_sha256: str
    verdict: Verdict = "failed"
    reason: str = ""
    runs: list[RunResult] = field(default_factory=list)
    driver_exit: int | None = None
    driver_stderr: str = ""
    work_dir: str = ""

    @property
    def survived(self) -> bool:
        return self.verdict == "survived"

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def load_recipe(
    settings: Settings,
    what: str,
    target: str = "local",
    *,
    defines: Sequence[Define] = (),
    recipe_from: str | None = None,
) -> tuple[Package, ProbeRecipe]:
    """The package ``what`` names (a name in specs/ or a package repository) and its probe recipe.

    A definition carries its own ``[probe]`` table. A package repository has none: it
    uses the ``[probe]`` of the specs/ definition named like its spec's Name (or
    ``recipe_from``), since the recipe names our own drivers and shims in probes/.
    """
    resolved = resolve(settings, what, target, defines=defines)
    if isinstance(resolved, DefinedPackage) and recipe_from is None:
        definition = resolved.definition
    else:
        wanted = recipe_from or resolved.name
        if not (settings.specs_dir / f"{wanted}.toml").is_file():
            raise UsageError(
                f"no probe recipe for {resolved.name}: there is no specs/{wanted}.toml with a [probe] table",
                hint="pass --recipe NAME to use the [probe] of specs/NAME.toml, or write one "
                "(see xcpbuild/model/probe.py)",
            )
        definition = find_package(settings.specs_dir, wanted)
    recipe = parse_probe(definition.probe, str(definition.path))
    recipe_files(recipe, settings.project_root)  # fail before any fetch when one is missing
    return resolved, recipe


def verifier_kit(dest: Path) -> Path:
    """Copy the verifier and the modules it imports (all standard-library only) to ``dest/xcpbuild``."""
    package_root = Path(verify.__file__).resolve().parents[1]
    package = sorted(f"{VERIFIER_PACKAGE}/{p.name}" for p in (package_root / VERIFIER_PACKAGE).glob("*.py"))
    for relative in (*VERIFIER_MODULES, *package):
        target = dest / "xcpbuild" / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(package_root / relative, target)
    return dest / "xcpbuild"


def runner_path(settings: Settings) -> Path:
    """The in-container client: the project's own copy, else the one beside this xcpbuild checkout."""
    for root in (settings.project_root, Path(__file__).resolve().parents[3]):
        candidate = root / "probes" / RUNNER
        if candidate.is_file():
            return candidate
    raise ConfigError(f"probes/{RUNNER} is missing from {settings.project_root} and from this xcpbuild checkout")


def _unpack(tarball: Path, dest: Path) -> Path:
    """Unpack the fetched tarball; return its single top directory (or ``dest``)."""
    dest.mkdir(parents=True, exist_ok=True)
    try:
        with tarfile.open(tarball) as tar:
            tar.extractall(dest, filter="data")
    except (tarfile.TarError, OSError) as exc:
        raise SourceError(f"could not unpack {tarball}: {exc}") from exc
    entries = [p for p in dest.iterdir() if not p.name.startswith("pax_global_header")]
    return entries[0] if len(entries) == 1 and entries[0].is_dir() else dest


def _upstream_files(recipe: ProbeRecipe, tree: Path, ref: str) -> list[Path]:
    found = []
    for relative in recipe.upstream_files:
        path = tree / relative
        if not path.is_file():
            raise ConfigError(
                f"upstream file {relative} named in the probe recipe does not exist at {ref}",
                hint="check `upstream_files` in [probe] against the upstream tree at that ref",
            )
        found.append(path)
    return found


def make_data_file(path: Path, mib: int, seed: int = 2018) -> str:
    """Write ``mib`` MiB of seeded pseudo-random bytes (incompressible); return their sha256."""
    rng = random.Random(seed)
    digest = hashlib.sha256()
    with path.open("wb") as out:
        for _ in range(mib):
            block = rng.randbytes(1 << 20)
            digest.update(block)
            out.write(block)
    return digest.hexdigest()


def cached_data_file(settings: Settings, mib: int, seed: int = 2018) -> tuple[Path, str]:
    """The served file and its sha256, made once per size and seed in ``CACHE/probe-data/`` (read-only)."""
    folder = settings.cache_dir / "probe-data" / f"{mib}MiB-{seed}"
    data, digest_file = folder / DATA_FILE, folder / "sha256"
    if digest_file.is_file() and data.is_file() and data.stat().st_size == mib << 20:
        return data, digest_file.read_text().strip()
    scratch = folder.with_name(f".{folder.name}.{time.time_ns()}")
    scratch.mkdir(parents=True)
    try:
        digest = make_data_file(scratch / DATA_FILE, mib, seed)
        (scratch / "sha256").write_text(digest + "\n")
        scratch.rename(folder)  # whole or not at all
    except OSError:
        shutil.rmtree(scratch, ignore_errors=True)  # another probe made it first: same seed, same bytes
        if not digest_file.is_file():
            raise
    return data, digest_file.read_text().strip()


# -- compile errors -----------------------------------------------------------------------
_OCAML_LOCATION = re.compile(r'^File "(?P<file>[^"]+)", line (?P<line>\d+)')
_C_LOCATION = re.compile(r"^(?P<file>[^\s:]+):(?P<line>\d+):(?:\d+:)? (?:fatal )?error: (?P<message>.*)$")


def describe_compile_error(output: str, sources: dict[str, str]) -> str:
    """``FILE line N: MESSAGE`` from a compiler's output; ``sources`` maps base names to recipe paths."""
    lines = output.splitlines()
    for index, line in enumerate(lines):
        match = _C_LOCATION.match(line.strip())
        if match:
            name = PurePosixPath(match["file"]).name
            return f"{sources.get(name, match['file'])} line {match['line']}: error: {match['message']}"
        match = _OCAML_LOCATION.match(line.strip())
        if match:
            block: list[str] = []
            for text in lines[index + 1 :]:
                if _OCAML_LOCATION.match(text.strip()):
                    break  # the next report; this one was a warning
                block.append(text)
            errors = [i for i, text in enumerate(block) if text.startswith("Error")]
            if not errors:
                continue
            message = " ".join(t.strip() for t in block[errors[0] :][:3] if t.strip())
            name = PurePosixPath(match["file"]).name
            return f"{sources.get(name, match['file'])} line {match['line']}: {message}"
    tail = [t for t in lines if t.strip()][-3:]
    return " | ".join(tail) or "the compiler printed nothing"


# -- judging ------------------------------------------------------------------------------
def judge(raw: dict[str, Any], expected_sha256: str, size: int) -> tuple[Verdict, str, list[RunResult]]:
    """Turn the runner's JSON into (verdict, reason, runs)."""
    runs: list[RunResult] = []
    problems: list[str] = []
    if not raw.get("ready"):
        problems.append("the driver never said it was ready")
    for item in raw.get("runs", []):
        got = int(item.get("bytes_received") or 0)
        error = None
        if not item.get("ok") or item.get("outcome") != "complete":
            error = str(item.get("detail") or f"the verifier's outcome: {item.get('outcome')}")
        elif item.get("status") != 200:
            error = f"HTTP status {item.get('status')}"
        elif got != size or item.get("content_length") != size:
            error = f"received {got} of {size} bytes"
        elif item.get("match") is not True or item.get("sha256") != expected_sha256:
            error = "the sha256 of the body differs from the served file"
        runs.append(
            RunResult(
                name=str(item.get("name")),
                stall=float(item.get("stall") or 0.0),
                ok=error is None,
                outcome=one_of(item.get("outcome"), verify.OUTCOMES) or "error",
                status=item.get("status"),
                content_length=item.get("content_length"),
                bytes=got,
                sha256=item.get("sha256"),
                seconds=float(item.get("duration_s") or 0.0),
                error=error,
                events=tuple(str(e) for e in item.get("events", ())),
            )
        )
        if error is not None:
            problems.append(f"{item.get('name')}: {error}")
    exit_code = raw.get("driver_exit")
    if raw.get("ready") and exit_code != 0:
        problems.append(f"the driver exited with status {exit_code}")
    if not problems:
        return "survived", "", runs
    return "failed", "; ".join(problems), runs


# -- the probe ----------------------------------------------------------------------------
def probe(
    settings: Settings,
    name: str,
    *,
    upstream: str | None = None,
    ref: str | None = None,
    apply_patches: bool = True,
    stall: float | None = None,
    keep: bool = False,
    client: container.Client | None = None,
    target: str = "local",
    runs: tuple[str, ...] = RUNS,
    defines: Sequence[Define] = (),
    recipe_from: str | None = None,
) -> ProbeReport:
    """Build the probe of ``name`` (a name in specs/ or a package repository) and stall-test it.

    ``target`` picks the pin (ref, sha256) and the series of a definition, and the
    %dist a package repository's spec is expanded with; ``defines`` resolve that
    spec's conditional PatchNNNN lines; ``runs`` which of the runner's runs are made
    (the main job skips the throttled one).
    """
    resolved, recipe = load_recipe(settings, name, target, defines=defines, recipe_from=recipe_from)
    package = resolved.name
    ours = recipe_files(recipe, settings.project_root)
    runner = runner_path(settings)
    stall_seconds = recipe.stall if stall is None else stall
    if stall_seconds < 0:
        raise ConfigError("--stall must be 0 or more seconds")
    if not runs or set(runs) - set(RUNS) or len(set(runs)) != len(runs):
        raise ConfigError(f"probe runs must be some of {', '.join(RUNS)}, each once (got {', '.join(runs)})")
    kind = "patched" if apply_patches else "unpatched"  # two probes of one package may run at once
    stamp = f"{time.strftime('%Y%m%d-%H%M%S')}-{time.time_ns() % 10**6:06d}"
    work = settings.work_dir / "probe" / f"{package}-{kind}-{stamp}"
    work.mkdir(parents=True)

    with step(f"fetch {package} {ref or 'at its pinned ref'}"):
        fetched = source.fetch_upstream(settings, resolved, upstream=upstream, ref=ref, out_dir=work)
    tree = _unpack(fetched.tarball, work / "src")
    applied: list[str] = []
    if apply_patches:
        with step(f"apply the patches of {package}"):
            applied = patch.apply_series(settings, resolved, tree)
    theirs = _upstream_files(recipe, tree, fetched.ref)

    engine_client = client or container.get_client()
    tag = probe_image.ensure(settings, recipe, engine_client)
    data, expected = cached_data_file(settings, recipe.file_mib)
    size = recipe.file_mib << 20
    report = ProbeReport(
        package=package,
        upstream=upstream or resolved.upstream_url or "",
        ref=fetched.ref,
        commit=fetched.commit,
        patched=apply_patches,
        patches=applied,
        image=tag,
        stall=stall_seconds,
        file_bytes=size,
        expected_sha256=expected,
        work_dir=str(work),
    )
    sources = {p.name: f"upstream {rel}" for p, rel in zip(theirs, recipe.upstream_files, strict=True)}
    sources.update({p.name: rel for p, rel in zip(ours, recipe.files, strict=True)})

    # BUILD_DIR is made by the build user (a container workdir would be root-owned).
    options = container.ContainerOptions(image=tag, role="probe", workdir=PurePosixPath("/tmp"), keep=keep)
    with container.BuildContainer(engine_client, options) as box:
        box.put([*theirs, *ours, runner, data], BUILD_DIR)
        box.put([verifier_kit(work / KIT_DIR)], BUILD_DIR / KIT_DIR)
        _compile_or_reuse(settings, box, recipe, work, sources, package, key=compile_key(tag, recipe, [*theirs, *ours]))
        raw = _run(box, recipe, stall_seconds, expected, work, runs=runs)
    report.verdict, report.reason, report.runs = judge(raw, expected, size)
    report.driver_exit = raw.get("driver_exit")
    report.driver_stderr = str(raw.get("driver_stderr", "")).strip()
    (work / "report.json").write_text(json.dumps(report.to_json(), indent=2) + "\n")
    return report


def compile_key(image_tag: str, recipe: ProbeRecipe, files: list[Path]) -> str:
    """What the compiled driver depends on: the image, the compile lines and every file's bytes."""
    digest = hashlib.sha256()
    digest.update(image_tag.encode() + b"\0")
    for line in recipe.compile:
        digest.update(line.encode() + b"\0")
    for path in files:
        digest.update(path.name.encode() + b"\0" + hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()


def driver_name(recipe: ProbeRecipe) -> str:
    """The program the compile lines make: the first word of ``run`` (``./probe_driver`` -> probe_driver)."""
    return PurePosixPath(recipe.run.split()[0]).name


def _compile_or_reuse(  # noqa: PLR0917 - the probe's own helper
    settings: Settings,
    box: container.BuildContainer,
    recipe: ProbeRecipe,
    work: Path,
    sources: dict[str, str],
    name: str,
    *,
    key: str,
) -> None:
    """Compile, or put in the driver compiled earlier from exactly the same inputs (as builds are reused).

    The stall test always runs; only the compiler's work is kept, in ``CACHE/probe-builds/KEY/``.
    """
    cached = settings.cache_dir / "probe-builds" / key / driver_name(recipe)
    if cached.is_file():
        box.put([cached], BUILD_DIR, mode=0o755)
        (work / "compile.log").write_text(f"# reused {cached}: compiled before from the same inputs (key {key})\n")
        log.info("probe of %s: reused the driver compiled from the same inputs (%s)", name, key[:12])
        return
    _compile(box, recipe, work, sources, name)
    scratch = cached.parent.with_name(f".{key}.{time.time_ns()}")
    try:
        box.get(BUILD_DIR / cached.name, scratch)
        scratch.rename(cached.parent)
    except OSError:
        shutil.rmtree(scratch, ignore_errors=True)  # another probe stored the same driver first
    except XcpbuildError as exc:
        shutil.rmtree(scratch, ignore_errors=True)
        log.warning("could not keep the compiled driver of %s: %s", name, exc.message)


def _compile(
    box: container.BuildContainer, recipe: ProbeRecipe, work: Path, sources: dict[str, str], name: str
) -> None:
    log_path = work / "compile.log"
    with step(f"compile the probe of {name}"), log_path.open("w") as out:
        for line in recipe.compile:
            out.write(f"$ {line}\n")
            result = box.exec(["sh", "-c", line], workdir=BUILD_DIR, timeout=recipe.timeout, check=False)
            out.write(result.output + "\n")
            out.flush()
            if result.exit_code != 0:
                where = describe_compile_error(result.output, sources)
                raise BuildError(
                    f"the probe of {name} does not compile: {where}",
                    hint=f"the patch series (or a probe file) breaks the build; the full compiler output is in "
                    f"{log_path}; try --no-patches to see whether upstream alone compiles",
                )


def _run(
    box: container.BuildContainer,
    recipe: ProbeRecipe,
    stall: float,
    expected_sha256: str,
    work: Path,
    *,
    runs: tuple[str, ...] = RUNS,
) -> dict[str, Any]:
    argv = [
        "python3",
        RUNNER,
        "--kit",
        KIT_DIR,
        "--sha256",
        expected_sha256,
        "--ready",
        recipe.ready,
        "--port",
        str(PORT),
        "--stall",
        str(stall),
        "--throttle-kib-s",
        str(recipe.throttle_kib_s),
        "--runs",
        ",".join(runs),
        "--",
        *recipe.run_argv(PORT, DATA_FILE, len(runs)),
    ]
    with step(f"stall-test the probe ({', '.join(runs)}; {stall:g}s stall)"):
        result = box.exec(argv, workdir=BUILD_DIR, timeout=stall + RUN_SLACK, check=False)
    (work / "runner.log").write_text(result.output)
    raw = _last_json_object(result.output)
    if raw is None:
        last = result.output.strip().splitlines()[-1:] or ["no output"]
        raise VerifyError(
            f"the probe runner did not report (exit {result.exit_code}): {last[0][:200]}",
            hint=f"its output is in {work / 'runner.log'}",
        )
    (work / "driver.stderr").write_text(str(raw.get("driver_stderr", "")))
    return raw


def _last_json_object(output: str) -> dict[str, Any] | None:
    """The runner's report: the last output line that is a JSON object (stderr lines may follow it)."""
    for line in reversed(output.splitlines()):
        if line.startswith("{"):
            try:
                found = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(found, dict):
                return found
    return None
