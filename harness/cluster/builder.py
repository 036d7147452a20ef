"""Build the cluster platform's Go programs from pinned modules, cached under ~/.cache.

Each program has a wrapper module of ours in platforms/cluster/modules/<name>/: a go.mod whose
``tool`` directive names the program's package and whose requirements pin its module version,
and the go.sum that checks every module it downloads. Nothing of the programs' code is in the
repository; ``go build`` fetches it through the Go module proxy (``-mod=readonly``: a go.sum
that does not match fails the build instead of being rewritten).

Binaries land in ``<cache>/<module>@<version>/<name>`` (cache: ``$VSEARCH_PLATFORM_CACHE`` or
``~/.cache/vsearch-platform``) with a ``<name>.build.json`` record beside them; a later build
with the same record (module, version, go.sum, Go version, flags) reuses the binary. Go's own
build cache for these builds is private to the platform cache (``<cache>/go-build``), so that
the figures of a cold build are those of a fresh machine. Every build runs under ``nice -n 19``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import subprocess
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from pydantic import BaseModel, ConfigDict

ROOT = Path(__file__).resolve().parents[2]
MODULES_DIR = ROOT / "platforms" / "cluster" / "modules"
DEFAULT_GO = "/usr/local/go/bin/go"

log = logging.getLogger("vsearch.platform")


class PlatformBuildError(RuntimeError):
    """A program could not be built (the message carries go's own error)."""


class Component(BaseModel):
    """One Go program of the platform and how to link it."""

    model_config = ConfigDict(frozen=True)

    name: str  # binary name and wrapper directory under platforms/cluster/modules/
    module: str  # the Go module that holds the program
    package: str  # the main package, as named by the wrapper's tool directive
    # -X flags, formatted with {version} (the module version) and, from a pseudo-version, the
    # commit's UTC {time} (RFC 3339), {tag} (MinIO's 2006-01-02T15-04-05Z), {year} and {commit}
    # (its 12-hex-digit prefix); {git_commit} and {source_date} come from the module's own
    # metadata (see :func:`module_origin`).
    x_flags: tuple[str, ...] = ()
    note: str = ""
    wrapper: str = ""  # the wrapper directory's name when it differs from ``name``
    cgo: bool = False  # runc's nsexec is C: the only one not static-by-default
    tags: tuple[str, ...] = ()  # go build -tags
    modules_dir: Path = MODULES_DIR
    # Our own program (its source is in the repository): no requirement pins it; its version is
    # v0.0.0-src.<first 12 hex of the sources' digest>, so an edit is another build and image.
    source_dir: Path | None = None

    @property
    def wrapper_dir(self) -> Path:
        if self.source_dir is not None:
            return self.source_dir
        return self.modules_dir / (self.wrapper or self.name)


KUBERNETES_COMMANDS = (
    "kube-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
    "kubelet",
    "kube-proxy",
    "kubectl",
)
# What hack/lib/version.sh stamps; without it the binaries report v0.0.0-master, gitCommit
# "$Format:%H$" (a git-archive placeholder a module zip never fills) and buildDate 1970.
K8S_VERSION_FLAGS = tuple(
    f"{pkg}.{var}"
    for pkg in ("k8s.io/component-base/version", "k8s.io/client-go/pkg/version")
    for var in (
        "gitVersion={version}",
        "gitCommit={git_commit}",
        "gitTreeState=clean",
        "buildDate={source_date}",
        "gitMajor={major}",
        "gitMinor={minor}",
    )
)
ORIGIN_FIELDS = ("{git_commit}", "{source_date}")

COMPONENTS: dict[str, Component] = {
    c.name: c
    for c in (
        Component(
            name="minio",
            module="github.com/minio/minio",
            package="github.com/minio/minio",
            x_flags=(
                "github.com/minio/minio/cmd.Version={time}",
                "github.com/minio/minio/cmd.ReleaseTag=DEVELOPMENT.{tag}",
                "github.com/minio/minio/cmd.CopyrightYear={year}",
                "github.com/minio/minio/cmd.CommitID={commit}",
                "github.com/minio/minio/cmd.ShortCommitID={commit}",
            ),
            note="no semver tags; the proxy serves only the archived repository's last commit "
            "(RELEASE.2025-10-15T17-29-55Z + 11 commits), see manifests/README.md",
        ),
        Component(
            name="mc",
            module="github.com/minio/mc",
            package="github.com/minio/mc",
            x_flags=(
                "github.com/minio/mc/cmd.Version={time}",
                "github.com/minio/mc/cmd.ReleaseTag=DEVELOPMENT.{tag}",
                "github.com/minio/mc/cmd.CopyrightYear={year}",
                "github.com/minio/mc/cmd.CommitID={commit}",
                "github.com/minio/mc/cmd.ShortCommitID={commit}",
            ),
            note="no semver tags; the proxy serves one commit of 2025-03-13",
        ),
        Component(
            name="openfaas-gateway",
            module="github.com/openfaas/faas/gateway",
            package="github.com/openfaas/faas/gateway",
            # gateway/Dockerfile stamps these two (GIT_COMMIT, VERSION build args).
            x_flags=(
                "github.com/openfaas/faas/gateway/version.GitCommitSHA={commit}",
                "github.com/openfaas/faas/gateway/version.Version={version}",
            ),
            note="the faas repository's gateway/ module at a pseudo-version (no module tags)",
        ),
        Component(
            name="prometheus",
            module="github.com/prometheus/prometheus",
            package="github.com/prometheus/prometheus/cmd/prometheus",
            # Makefile.common's promu stamps these (.promu.yml ldflags).
            x_flags=(
                "github.com/prometheus/common/version.Version={version}",
                "github.com/prometheus/common/version.Branch=module",
            ),
            # Only the service discovery the chart's config uses (kubernetes_sd_configs; static
            # is always in): plugins/plugin_*.go honour these tags. Without them the build
            # compiles every cloud's SDK (AWS, Azure, GCE, ...) for nothing.
            tags=("remove_all_sd", "enable_kubernetes_sd"),
            note="without the builtinassets tag: the module has no built UI (web/ui/static is "
            "npm output), so /graph etc. say so; the API, /metrics and scraping are all there",
        ),
        Component(
            name="queue-worker",
            wrapper="nats-queue-worker",
            module="github.com/openfaas/nats-queue-worker",
            package="github.com/openfaas/nats-queue-worker",
            # Its Dockerfile stamps these two (GIT_COMMIT, VERSION build args).
            x_flags=(
                "github.com/openfaas/nats-queue-worker/version.GitCommit={commit}",
                "github.com/openfaas/nats-queue-worker/version.Version={version}",
            ),
            note="OpenFaaS CE's async queue-worker (NATS Streaming) at a pseudo-version: the "
            "repository's HEAD of 2025-04-15 (0.14.2 era, no module tags)",
        ),
        Component(
            name="nats-streaming-server",
            module="github.com/nats-io/nats-streaming-server",
            package="github.com/nats-io/nats-streaming-server",
            note="the CE chart's nats (nats-streaming:0.25.6); its version is a constant of "
            "the module, no -X needed",
        ),
        Component(
            name="faas-provider",
            module="vsearch.local/platform/faas-provider",
            package="vsearch.local/platform/faas-provider",
            source_dir=ROOT / "platforms" / "cluster" / "provider",
            x_flags=("main.Version={version}", "main.GitCommit={commit}"),
            note="ours: faas-netes is not served by the Go module proxy (manifests/README.md)",
        ),
        Component(
            name="echo-function",
            module="vsearch.local/platform/faas-provider",
            package="vsearch.local/platform/faas-provider/cmd/echo-function",
            source_dir=ROOT / "platforms" / "cluster" / "provider",
            note="ours: the smoke function (no watchdog is served by the Go module proxy)",
        ),
        Component(
            name="etcd",
            module="go.etcd.io/etcd/server/v3",
            package="go.etcd.io/etcd/server/v3",
        ),
        *(
            Component(
                name=cmd,
                wrapper="kubernetes",
                module="k8s.io/kubernetes",
                package=f"k8s.io/kubernetes/cmd/{cmd}",
                x_flags=K8S_VERSION_FLAGS,
            )
            for cmd in KUBERNETES_COMMANDS
        ),
        *(
            Component(
                name=cmd,
                wrapper="containerd",
                module="github.com/containerd/containerd/v2",
                package=f"github.com/containerd/containerd/v2/cmd/{cmd}",
                x_flags=("github.com/containerd/containerd/v2/version.Version={version}",),
            )
            for cmd in ("containerd", "containerd-shim-runc-v2", "ctr")
        ),
        Component(
            name="runc",
            module="github.com/opencontainers/runc",
            package="github.com/opencontainers/runc",
            cgo=True,
            tags=("seccomp",),  # CRI sandboxes carry a seccomp profile: runc must apply it
            note="needs cgo (gcc) and libseccomp-dev (Debian) for the seccomp tag",
        ),
        *(
            Component(
                name=path.rsplit("/", 1)[1],
                wrapper="cni-plugins",
                module="github.com/containernetworking/plugins",
                package=f"github.com/containernetworking/plugins/plugins/{path}",
            )
            for path in ("main/bridge", "main/loopback", "ipam/host-local", "meta/portmap")
        ),
        Component(
            name="registry",
            module="github.com/distribution/distribution/v3",
            package="github.com/distribution/distribution/v3/cmd/registry",
            x_flags=("github.com/distribution/distribution/v3/version.version={version}",),
        ),
        Component(
            name="coredns",
            module="github.com/coredns/coredns",
            package="github.com/coredns/coredns",
            x_flags=("github.com/coredns/coredns/coremain.GitCommit={version}",),
        ),
        Component(
            name="pause",
            module="vsearch.local/platform/pause",
            package="vsearch.local/platform/pause",
            source_dir=MODULES_DIR / "pause",
            note="ours (platforms/cluster/modules/pause/main.go): every pod's sandbox process",
        ),
        Component(
            name="netcheck",
            module="vsearch.local/platform/netcheck",
            package="vsearch.local/platform/netcheck",
            source_dir=MODULES_DIR / "netcheck",
            note="ours (platforms/cluster/modules/netcheck/main.go): DNS from a pod, for tests",
        ),
    )
}

PSEUDO = re.compile(r"^v\d+\.\d+\.\d+-(?:\d+\.)?(\d{14})-([0-9a-f]{12})$")


class BuildRecord(BaseModel):
    """What was built, from what, how long it took; <name>.build.json beside the binary."""

    name: str
    module: str
    version: str
    package: str
    go_version: str
    go_sum_sha256: str
    ldflags: str
    tags: str = ""
    binary_sha256: str
    build_seconds: float
    built_at: float


class BuildResult(BaseModel):
    record: BuildRecord
    binary: Path
    reused: bool
    seconds: float  # this call's wall time (the build, or the check that reused it)


def cache_root() -> Path:
    configured = os.environ.get("VSEARCH_PLATFORM_CACHE")
    if configured:
        return Path(configured)
    return Path.home() / ".cache" / "vsearch-platform"


def find_go() -> str:
    found = shutil.which("go")
    if found:
        return found
    if Path(DEFAULT_GO).is_file():
        return DEFAULT_GO
    raise PlatformBuildError(f"no go on PATH nor at {DEFAULT_GO}")


def source_digest(directory: Path) -> str:
    """sha256 over the relative path and bytes of every file of a Go source tree."""
    digest = hashlib.sha256()
    for path in sorted(directory.rglob("*")):
        if path.is_file() and (path.suffix == ".go" or path.name in ("go.mod", "go.sum")):
            digest.update(path.relative_to(directory).as_posix().encode() + b"\0")
            digest.update(path.read_bytes() + b"\0")
    return digest.hexdigest()


def pinned_version(component: Component) -> str:
    """The version the wrapper's go.mod requires for the component's module."""
    if component.source_dir is not None:
        return f"v0.0.0-src.{source_digest(component.source_dir)[:12]}"
    go_mod = (component.wrapper_dir / "go.mod").read_text()
    match = re.search(rf"^\s*(?:require\s+)?{re.escape(component.module)}\s+(\S+)", go_mod, re.M)
    if not match:
        raise PlatformBuildError(
            f"{component.wrapper_dir}/go.mod does not require {component.module}"
        )
    if not re.search(rf"^\s*(?:tool\s+)?{re.escape(component.package)}\s*$", go_mod, re.M):
        raise PlatformBuildError(f"{component.wrapper_dir}/go.mod has no tool {component.package}")
    return match.group(1)


def needs_origin(component: Component) -> bool:
    return any(field in flag for flag in component.x_flags for field in ORIGIN_FIELDS)


def module_origin(
    component: Component, version: str, go: str, cache: Path | None = None
) -> dict[str, str]:
    """``git_commit`` and ``source_date`` of the pinned module, from ``go mod download -json``.

    The commit is the proxy's ``Origin.Hash`` when it reports one. The proxy here reports none
    for k8s.io/kubernetes (its .info is only Version and Time, and github.com does not resolve),
    so the fallback is the go.sum hash of the module zip that was built: not a git commit, but
    it names exactly that source. The date is the version's time from the proxy (the tag's
    commit), so a rebuild stamps the same date, as hack/lib/version.sh does with
    SOURCE_DATE_EPOCH.
    """
    proc = subprocess.run(
        [go, "mod", "download", "-json", f"{component.module}@{version}"],
        cwd=component.wrapper_dir,
        env=go_env(cache or cache_root()),
        capture_output=True,
        text=True,
    )
    try:
        meta = json.loads(proc.stdout)
    except json.JSONDecodeError:
        meta = {}
    if proc.returncode != 0 or meta.get("Error") or not meta.get("Sum"):
        detail = meta.get("Error") or proc.stderr.strip()[-500:]
        raise PlatformBuildError(f"go mod download {component.module}@{version}: {detail}")
    info = json.loads(Path(meta["Info"]).read_text()) if meta.get("Info") else {}
    origin = meta.get("Origin") or info.get("Origin") or {}
    when = info.get("Time") or meta.get("Time")
    if not when:
        raise PlatformBuildError(f"{component.module}@{version}: the proxy gave no time")
    stamp = datetime.fromisoformat(when).astimezone(UTC)
    return {
        "git_commit": str(origin.get("Hash") or meta["Sum"]),
        "source_date": stamp.strftime("%Y-%m-%dT%H:%M:%SZ"),
    }


def ldflags(component: Component, version: str, origin: dict[str, str] | None = None) -> str:
    """-s -w and the component's -X flags; ``origin`` (:func:`module_origin`) is needed by
    the components whose flags use it."""
    if needs_origin(component) and origin is None:
        raise ValueError(f"{component.name}: its -X flags need the module's origin")
    flags = ["-s", "-w"]
    pseudo = PSEUDO.match(version)
    local = re.match(r"^v0\.0\.0-src\.([0-9a-f]{12})$", version)
    semver = re.match(r"^v(\d+)\.(\d+)\.", version)
    major, minor = semver.groups() if semver else ("", "")
    fields = {"version": version, "time": version, "tag": version, "year": "", "commit": version,
              "major": major, "minor": minor}  # fmt: skip
    if pseudo:
        stamp, commit = pseudo.groups()
        t = time.strptime(stamp, "%Y%m%d%H%M%S")
        fields = {
            "version": version,
            "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", t),
            "tag": time.strftime("%Y-%m-%dT%H-%M-%SZ", t),
            "year": time.strftime("%Y", t),
            "commit": commit,
            "major": major,
            "minor": minor,
        }
    if local:
        fields["commit"] = local.group(1)
    fields.update(origin or {})
    flags += [f"-X {flag.format(**fields)}" for flag in component.x_flags]
    return " ".join(flags)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def go_env(cache: Path, gocache: Path | None = None, *, cgo: bool = False) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        GOTOOLCHAIN="local",  # never download another Go: the one here builds or fails
        GOFLAGS="-mod=readonly -buildvcs=false",
        CGO_ENABLED="1" if cgo else "0",  # static binaries, runnable FROM scratch
        GOCACHE=str(gocache or cache / "go-build"),
    )
    return env


def go_version(go: str) -> str:
    out = subprocess.run([go, "env", "GOVERSION"], capture_output=True, text=True, check=True)
    return out.stdout.strip()


def binary_dir(component: Component, version: str, cache: Path) -> Path:
    return cache / f"{component.module}@{version}"


def cached(which: str | Component, *, cache: Path | None = None) -> Path | None:
    """The pinned build of a component if the cache has it (no Go needed), else None."""
    component = COMPONENTS[which] if isinstance(which, str) else which
    where = binary_dir(component, pinned_version(component), cache or cache_root())
    binary, record = where / component.name, where / f"{component.name}.build.json"
    if binary.is_file() and os.access(binary, os.X_OK) and record.is_file():
        return binary
    return None


def cached_record(which: str | Component, *, cache: Path | None = None) -> BuildRecord | None:
    binary = cached(which, cache=cache)
    if binary is None:
        return None
    return BuildRecord.model_validate_json(
        (binary.parent / f"{binary.name}.build.json").read_text()
    )


def build(
    which: str | Component,
    *,
    cache: Path | None = None,
    go: str | None = None,
    force: bool = False,
    gocache: Path | None = None,
) -> BuildResult:
    """Build a component at its pinned version, or reuse the cached binary of the same inputs."""
    began = time.monotonic()
    component = COMPONENTS[which] if isinstance(which, str) else which
    name = component.name
    cache = cache or cache_root()
    go = go or find_go()
    version = pinned_version(component)
    go_sum = component.wrapper_dir / "go.sum"
    if not go_sum.is_file():
        raise PlatformBuildError(f"{go_sum} is missing: the pinned modules would go unchecked")
    origin = module_origin(component, version, go, cache) if needs_origin(component) else None
    flags = ldflags(component, version, origin)
    wanted = {
        "module": component.module,
        "version": version,
        "package": component.package,
        "go_version": go_version(go),
        "go_sum_sha256": _sha256(go_sum),
        "ldflags": flags,
        "tags": ",".join(component.tags),
    }
    where = binary_dir(component, version, cache)
    binary, record_path = where / component.name, where / f"{component.name}.build.json"
    if not force and binary.is_file() and record_path.is_file():
        record = BuildRecord.model_validate_json(record_path.read_text())
        same = all(getattr(record, key) == value for key, value in wanted.items())
        if same and record.binary_sha256 == _sha256(binary):
            seconds = time.monotonic() - began
            log.info(
                json.dumps(
                    {
                        "event": "platform_build_reused",
                        "name": name,
                        "version": version,
                        "seconds": round(seconds, 2),
                    }
                )
            )
            return BuildResult(record=record, binary=binary, reused=True, seconds=seconds)
    where.mkdir(parents=True, exist_ok=True)
    partial = where / f".{component.name}.partial"
    command = [
        "nice",
        "-n",
        "19",
        go,
        "build",
        "-trimpath",
        "-ldflags",
        flags,
        *(["-tags", ",".join(component.tags)] if component.tags else []),
        "-o",
        str(partial),
        component.package,
    ]
    log.info(
        json.dumps(
            {"event": "platform_build_start", "name": name, "version": version, "command": command}
        )
    )
    started = time.monotonic()
    proc = subprocess.run(
        command,
        cwd=component.wrapper_dir,
        env=go_env(cache, gocache, cgo=component.cgo),
        capture_output=True,
        text=True,
    )
    build_seconds = time.monotonic() - started
    if proc.returncode != 0:
        partial.unlink(missing_ok=True)
        tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-20:])
        raise PlatformBuildError(
            f"go build {component.package}@{version} failed (exit {proc.returncode}) "
            f"after {build_seconds:.0f} s:\n{tail}"
        )
    with open(partial, "rb") as f:
        magic = f.read(4)
    if magic != b"\x7fELF":
        # go build of a non-main package writes an ar archive and succeeds.
        partial.unlink()
        raise PlatformBuildError(
            f"{component.package}@{version} is not a main package: go build wrote no executable"
        )
    partial.replace(binary)
    record = BuildRecord(
        name=name,
        **wanted,
        binary_sha256=_sha256(binary),
        build_seconds=round(build_seconds, 2),
        built_at=time.time(),
    )
    record_path.write_text(record.model_dump_json(indent=2) + "\n")
    seconds = time.monotonic() - began
    log.info(
        json.dumps(
            {
                "event": "platform_build_done",
                "name": name,
                "version": version,
                "seconds": round(seconds, 2),
            }
        )
    )
    return BuildResult(record=record, binary=binary, reused=False, seconds=seconds)


def build_all(
    names: Sequence[str] | None = None, *, cache: Path | None = None, force: bool = False
) -> list[BuildResult]:
    return [build(name, cache=cache, force=force) for name in (names or list(COMPONENTS))]
