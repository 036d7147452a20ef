"""A Docker engine for the image tests, and arm64 emulation for it (standard library only).

`obtain_engine()` uses $DOCKER_HOST (or /var/run/docker.sock) when it answers; otherwise it
starts a private dockerd as ENVIRONMENT.md describes (own data/exec roots and socket, no bridge,
no iptables), which the caller stops with `stop()`. `Unavailable` carries the reason when no
engine can be had (no docker CLI or dockerd, not root, dockerd does not come up): the tests
skip with it. Every other failure is a failure.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

#: Bazel's strict action PATH lacks the sbin directories (dockerd, runc).
PATH = os.environ.get("PATH", "") + ":/usr/local/sbin:/usr/sbin:/sbin:/usr/local/bin:/usr/bin:/bin"

BINFMT = Path("/proc/sys/fs/binfmt_misc")
QEMU_AARCH64_CONF = Path("/usr/lib/binfmt.d/qemu-aarch64.conf")


class Unavailable(Exception):
    """No engine (or no emulation) can be had here; the message says why."""


def which(tool: str) -> str | None:
    return shutil.which(tool, path=PATH)


@dataclass
class Engine:
    host: str
    private: subprocess.Popen[bytes] | None = None
    tmp: Path | None = None
    log: Path | None = None
    env: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.env = {**os.environ, "DOCKER_HOST": self.host, "PATH": PATH}

    def run(
        self, *args: str, check: bool = True, timeout: float = 600
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [which("docker") or "docker", *args], env=self.env, check=check, timeout=timeout,
            text=True, capture_output=True,
        )  # fmt: skip

    def ok(self) -> bool:
        try:
            done = self.run("version", "--format", "{{.Server.Version}}", check=False, timeout=20)
        except (OSError, subprocess.TimeoutExpired):
            return False
        return done.returncode == 0

    def stop(self) -> None:
        if self.private is not None:
            self.private.send_signal(signal.SIGTERM)
            try:
                self.private.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.private.kill()
                self.private.wait()
            self.private = None
        if self.tmp is not None:
            # dockerd leaves its network namespace mounted under the exec root.
            netns = self.tmp / "exec" / "netns" / "default"
            if netns.exists():
                subprocess.run(["umount", "-l", str(netns)], check=False, capture_output=True)
            shutil.rmtree(self.tmp, ignore_errors=True)
            self.tmp = None


def obtain_engine(startup_s: float = 60) -> Engine:
    if not which("docker"):
        raise Unavailable("no docker CLI (apt-get install docker.io)")
    shared = Engine(os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock"))
    if shared.ok():
        return shared
    if not which("dockerd"):
        raise Unavailable("no Docker engine answers and no dockerd (apt-get install docker.io)")
    if os.geteuid() != 0:
        raise Unavailable("no Docker engine answers and a private dockerd needs root")
    # Short: the socket path must stay under 108 bytes.
    tmp = Path(tempfile.mkdtemp(prefix="vsearch-dockerd-", dir="/tmp"))
    sock = tmp / "docker.sock"
    log = tmp / "dockerd.log"
    with log.open("w") as out:
        proc = subprocess.Popen(
            [which("dockerd") or "dockerd",
             "--data-root", str(tmp / "data"), "--exec-root", str(tmp / "exec"),
             "-H", f"unix://{sock}", "--bridge=none", "--iptables=false",
             "--pidfile", str(tmp / "dockerd.pid")],
            stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
            env={**os.environ, "PATH": PATH},
        )  # fmt: skip
    engine = Engine(f"unix://{sock}", private=proc, tmp=tmp, log=log)
    deadline = time.monotonic() + startup_s
    while time.monotonic() < deadline and proc.poll() is None:
        if sock.exists() and engine.ok():
            return engine
        time.sleep(0.5)
    tail = log.read_text(errors="replace")[-2000:]
    engine.stop()
    raise Unavailable(f"a private dockerd did not come up within {startup_s:.0f} s:\n{tail}")


def ensure_arm64_emulation() -> str:
    """Registers qemu-aarch64 with binfmt_misc unless it is; returns what was done.

    The registration is the kernel's, shared by every process on the machine, and left in
    place: another test may rely on it, and registering twice fails.
    """
    entry = BINFMT / "qemu-aarch64"
    if entry.exists():
        if entry.read_text().startswith("enabled"):
            return "qemu-aarch64 was registered already"
        raise Unavailable(f"{entry} exists but is disabled")
    if not QEMU_AARCH64_CONF.exists():
        raise Unavailable(f"no {QEMU_AARCH64_CONF} (apt-get install qemu-user-static)")
    if os.geteuid() != 0:
        raise Unavailable("qemu-aarch64 is not registered with binfmt_misc and that needs root")
    if not (BINFMT / "register").exists():
        done = subprocess.run(
            ["mount", "-t", "binfmt_misc", "binfmt_misc", str(BINFMT)],
            capture_output=True, text=True, env={**os.environ, "PATH": PATH},
        )  # fmt: skip
        if done.returncode != 0:
            raise Unavailable(f"cannot mount binfmt_misc: {done.stderr.strip()}")
    try:
        (BINFMT / "register").write_text(QEMU_AARCH64_CONF.read_text().strip() + "\n")
    except OSError as exc:
        # Lost a race with another registrant: fine when the entry is there now.
        if not entry.exists():
            raise Unavailable(f"cannot register qemu-aarch64 with binfmt_misc: {exc}") from exc
    with contextlib.suppress(OSError):
        if entry.read_text().startswith("enabled"):
            return "registered qemu-aarch64 with binfmt_misc"
    raise Unavailable(f"registered qemu-aarch64 but {entry} is not enabled")
