"""`./vsearch doctor`: per path (embedded, kind, Bazel offline, Bazel online), what is here,
what is missing, and the one command that installs it.

Read-only: it looks on PATH and at files, asks `docker info` whether an engine answers, and
installs nothing (./vsearch runs `doctor` without installing the system packages first).
"""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from pydantic import BaseModel, Field

from harness.commands import output

ROOT = Path(__file__).resolve().parents[2]

Which = Callable[[str], str | None]


class Check(BaseModel):
    name: str
    present: bool
    detail: str = ""
    required: bool = True
    install: str | None = Field(None, description="the command that installs it, when missing")


class PathReport(BaseModel):
    path: str
    what: str
    ready: bool
    checks: list[Check]
    install: str | None = Field(None, description="one command for everything required missing")


class Report(BaseModel):
    os: str
    machine: str
    paths: list[PathReport]


def _os_arch() -> tuple[str, str]:
    arch = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64"}
    return platform.system().lower(), arch.get(platform.machine(), platform.machine())


def _sudo() -> str:
    return "" if os.geteuid() == 0 else "sudo "


def _tool(name: str, which: Which, install: str, *, required: bool = True, why: str = "") -> Check:
    found = which(name)
    return Check(
        name=name, present=found is not None, detail=found or f"not on PATH{why}",
        required=required, install=None if found else install,
    )  # fmt: skip


def _path(path: str, what: str, checks: list[Check], install: str | None = None) -> PathReport:
    missing = [c for c in checks if c.required and not c.present]
    if install is None and missing:
        install = " && ".join(dict.fromkeys(c.install for c in missing if c.install))
    return PathReport(
        path=path, what=what, ready=not missing, checks=checks, install=install if missing else None
    )


def embedded(which: Which, root: Path = ROOT) -> PathReport:
    apt = which("apt-get") is not None
    packages = "ffmpeg flite espeak-ng"
    if apt:
        system = f"{_sudo()}apt-get install -y {packages}"
    elif which("dnf"):
        system = f"{_sudo()}dnf install -y {packages}"
    elif which("brew"):
        system = f"brew install {packages}"
    else:
        system = f"install {packages} with your package manager"
    checks = [
        _tool("ffmpeg", which, system),
        _tool("ffprobe", which, system),
        _tool("flite", which, system),
        _tool("espeak-ng", which, system),
    ]
    venv_python = root / ".venv" / "bin" / "python"
    synced = (root / ".venv" / ".lock-sha256").is_file()
    checks.append(Check(
        name=".venv", present=venv_python.exists() and synced,
        detail=str(venv_python) if venv_python.exists() else "not made yet",
        install=None if venv_python.exists() and synced else "./vsearch --help",
    ))  # fmt: skip
    if platform.system() == "Linux":
        from harness.embedded.cgroups import detect

        support = detect()
        checks.append(Check(
            name="cgroup memory limits", present=support.enforced, detail=support.reason,
            required=False,
            install=None if support.enforced else "run as root on a host with cgroup v1/v2",
        ))  # fmt: skip
    else:
        checks.append(Check(
            name="Linux", present=False, detail=f"{platform.system()}: the embedded platform "
            "needs Linux (cgroups, Linux wheels in the locks)",
            install="use the cluster path in Docker Desktop, or a Linux VM",
        ))  # fmt: skip
    return _path("embedded", "./vsearch demo, search, up, bench (local processes)", checks)


def _docker_engine(which: Which, run: Callable[..., subprocess.CompletedProcess[str]]) -> Check:
    if which("docker") is None:
        return Check(name="docker engine", present=False, detail="no docker client",
                     install=None)  # fmt: skip
    try:
        done = run(["docker", "info", "--format", "{{.ServerVersion}}"], capture_output=True,
                   text=True, timeout=15)  # fmt: skip
        ok = done.returncode == 0 and bool(done.stdout.strip())
        detail = f"server {done.stdout.strip()}" if ok else (done.stderr.strip()[-200:] or "no")
    except (OSError, subprocess.TimeoutExpired) as exc:
        ok, detail = False, str(exc)
    if platform.system() == "Darwin":
        start = "open -a Docker"
    elif Path("/run/systemd/system").is_dir():
        start = f"{_sudo()}systemctl start docker"
    else:
        start = f"({_sudo()}dockerd >/tmp/dockerd.log 2>&1 &)"
    return Check(name="docker engine", present=ok, detail=detail, install=None if ok else start)


def cluster(which: Which, run: Callable[..., subprocess.CompletedProcess[str]]) -> PathReport:
    system, arch = _os_arch()
    bin_dir = "/usr/local/bin"
    if system == "darwin":
        kind, kubectl, helm = "brew install kind", "brew install kubectl", "brew install helm"
        docker = "brew install --cask docker"
    else:
        kind = (
            f"{_sudo()}curl -fsSLo {bin_dir}/kind https://kind.sigs.k8s.io/dl/v0.33.0/"
            f"kind-{system}-{arch} && {_sudo()}chmod +x {bin_dir}/kind"
        )
        kubectl = (
            f"{_sudo()}curl -fsSLo {bin_dir}/kubectl https://dl.k8s.io/release/v1.36.0/bin/"
            f"{system}/{arch}/kubectl && {_sudo()}chmod +x {bin_dir}/kubectl"
        )
        helm = (
            "curl -fsSL https://raw.githubusercontent.com/helm/helm/main/scripts/get-helm-3"
            f" | {_sudo()}bash"
        )
        docker = f"{_sudo()}apt-get install -y docker.io"
    checks = [
        _tool("docker", which, docker),
        _docker_engine(which, run),
        _tool("kind", which, kind),
        _tool("kubectl", which, kubectl),
        _tool("helm", which, helm),
        _tool("skopeo", which, f"{_sudo()}apt-get install -y skopeo", required=False,
              why=" (only to push OCI layouts: VSEARCH_IMAGE_DIR)"),
    ]  # fmt: skip
    what = "./vsearch up --backend kind (OpenFaaS CE + MinIO; manifests/README)"
    return _path("kind", what, checks)


def bazel_offline(which: Which, cache: Path | None = None) -> PathReport:
    cache = cache or Path(
        os.environ.get("VSEARCH_BAZEL_CACHE", Path.home() / ".cache" / "vsearch-bazel")
    )
    script = "platforms/offline/bazel-test.sh"
    apt = f"{_sudo()}apt-get install -y"
    checks = [
        Check(
            name="bazel-4 (bazel-bootstrap 4.2.3)", present=Path("/usr/bin/bazel-4").exists(),
            detail="/usr/bin/bazel-4", install=f"{apt} bazel-bootstrap bazel-rules-java",
        ),
        Check(
            name="bazel-rules-java", present=Path("/usr/share/bazel/rules/java/WORKSPACE").exists(),
            detail="/usr/share/bazel/rules/java", install=f"{apt} bazel-rules-java",
        ),
    ]  # fmt: skip
    for part in ("debs", "wheels"):
        d = cache / part
        have = d.is_dir() and any(d.rglob("*.*"))
        checks.append(Check(
            name=f"pinned {part}", present=have, detail=str(d),
            install="python3 platforms/offline/fetch_deps.py",
        ))  # fmt: skip
    checks += [
        _tool("dockerd", which, f"{apt} docker.io", required=False, why=" (run tier skips)"),
        Check(
            name="qemu-user-static", present=Path("/usr/lib/binfmt.d/qemu-aarch64.conf").exists(),
            detail="arm64 images under emulation", required=False,
            install=f"{apt} qemu-user-static",
        ),
        _tool("skopeo", which, f"{apt} skopeo", required=False, why=" (publish test skips)"),
        _tool("docker-registry", which, f"{apt} docker-registry", required=False,
              why=" (publish test skips)"),
    ]  # fmt: skip
    missing = [c for c in checks if c.required and not c.present]
    # The script installs and fetches whatever is missing (as root, with apt), then builds.
    install = (f"{_sudo()}{script}" if which("apt-get") else None) if missing else None
    return _path("bazel-offline", f"{script}: Debian's Bazel 4.2.3, WORKSPACE", checks, install)


def bazel_online(which: Which, root: Path = ROOT) -> PathReport:
    system, arch = _os_arch()
    pin = root / ".bazelversion"
    version = pin.read_text().strip() if pin.exists() else ""
    found = which("bazelisk") or which("bazel")
    # Debian's /usr/bin/bazel is a wrapper that honours .bazelversion only when it can download.
    debian_wrapper = found == "/usr/bin/bazel" and Path("/usr/bin/bazel-4").exists()
    if system == "darwin":
        install = "brew install bazelisk"
    else:
        install = (
            f"{_sudo()}curl -fsSLo /usr/local/bin/bazel https://github.com/bazelbuild/bazelisk/"
            f"releases/latest/download/bazelisk-{system}-{arch} && "
            f"{_sudo()}chmod +x /usr/local/bin/bazel"
        )
    checks = [
        Check(
            name="bazelisk", present=bool(found) and not debian_wrapper,
            detail=(found or "not on PATH") + (f" (.bazelversion {version})" if version else "")
            + (": Debian's wrapper, not bazelisk" if debian_wrapper else ""),
            install=install,
        ),
    ]  # fmt: skip
    return _path(
        "bazel-online", "bazel build //stages/... with MODULE.bazel (needs the Internet; "
        "not run here)", checks,
    )  # fmt: skip


def diagnose(
    which: Which = shutil.which,
    run: Callable[..., subprocess.CompletedProcess[str]] = subprocess.run,
) -> Report:
    return Report(
        os=platform.system(),
        machine=platform.machine(),
        paths=[embedded(which), cluster(which, run), bazel_offline(which), bazel_online(which)],
    )


def render(report: Report) -> str:
    lines = [f"vsearch doctor: {report.os} {report.machine}"]
    for p in report.paths:
        lines.append(f"\n{p.path:<14} {'READY' if p.ready else 'MISSING'}   {p.what}")
        for c in p.checks:
            mark = "ok" if c.present else ("--" if not c.required else "NO")
            lines.append(f"  {mark:<3} {c.name:<32} {c.detail}")
            if not c.present and not c.required and c.install:
                lines.append(f"      optional: {c.install}")
        if p.install:
            lines.append(f"  install: {p.install}")
    return "\n".join(lines)


def run_doctor(*, as_json: bool) -> int:
    """Exit 0 when the embedded path is ready (the default one), else 1."""
    report = diagnose()
    if as_json:
        output.print_json(report.model_dump(mode="json"))
    else:
        print(render(report))
        sys.stdout.flush()
    return 0 if report.paths[0].ready else 1
