"""Run tier: load a function image (this machine's architecture) into Docker, GET /_/health.

Uses $DOCKER_HOST when it answers; otherwise starts a private dockerd (as ENVIRONMENT.md
describes: own data/exec roots and socket, no bridge, no iptables) and stops it afterwards.
Skips (exit 0, "SKIPPED: <reason>" on stdout) only when no engine can be had: no docker CLI or
dockerd, not root, or dockerd does not come up. Every other failure fails the test.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path


def runfile(path: str) -> Path:
    for base in (os.environ.get("RUNFILES_DIR"), os.environ.get("TEST_SRCDIR")):
        if base:
            for ws in (os.environ.get("TEST_WORKSPACE", ""), "_main", "vsearch", "__main__"):
                candidate = Path(base) / ws / path
                if candidate.exists():
                    return candidate
    return Path(path)


#: Bazel's strict action PATH lacks the sbin directories (dockerd, runc).
PATH = os.environ.get("PATH", "") + ":/usr/local/sbin:/usr/sbin:/sbin:/usr/local/bin:/usr/bin:/bin"


def which(tool: str) -> str | None:
    return shutil.which(tool, path=PATH)


def skip(reason: str) -> int:
    print(f"SKIPPED: {reason}", flush=True)
    out = os.environ.get("TEST_UNDECLARED_OUTPUTS_DIR")
    if out:
        Path(out, "SKIPPED").write_text(reason + "\n")
    return 0


def docker(host: str, *args: str, check: bool = True, timeout: float = 300, **kw):
    env = {**os.environ, "DOCKER_HOST": host, "PATH": PATH}
    return subprocess.run(
        [which("docker") or "docker", *args], env=env, check=check, timeout=timeout, text=True,
        capture_output=True, **kw,
    )  # fmt: skip


def engine_ok(host: str) -> bool:
    try:
        return (
            docker(
                host, "version", "--format", "{{.Server.Version}}", check=False, timeout=20
            ).returncode
            == 0
        )
    except (OSError, subprocess.TimeoutExpired):
        return False


def start_private_dockerd(tmp: Path) -> tuple[str, subprocess.Popen]:
    sock = tmp / "docker.sock"
    log = (tmp / "dockerd.log").open("w")
    proc = subprocess.Popen(
        [which("dockerd") or "dockerd",
         "--data-root", str(tmp / "data"), "--exec-root", str(tmp / "exec"),
         "-H", f"unix://{sock}", "--bridge=none", "--iptables=false",
         "--pidfile", str(tmp / "dockerd.pid")],
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        env={**os.environ, "PATH": PATH},
    )  # fmt: skip
    host = f"unix://{sock}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            break
        if sock.exists() and engine_ok(host):
            return host, proc
        time.sleep(0.5)
    proc.terminate()
    tail = (tmp / "dockerd.log").read_text()[-2000:]
    raise RuntimeError(f"dockerd did not come up:\n{tail}")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tarball", required=True)
    parser.add_argument("--tag", required=True)
    args = parser.parse_args()
    tarball = runfile(args.tarball)

    if not which("docker"):
        return skip("no docker CLI (apt-get install docker.io)")
    host = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
    proc = None
    tmp = Path(tempfile.mkdtemp(prefix="vsearch-dockerd-", dir="/tmp"))
    try:
        if not engine_ok(host):
            if not which("dockerd"):
                return skip(
                    "no Docker engine answers and there is no dockerd (apt-get install docker.io)"
                )
            if os.geteuid() != 0:
                return skip("no Docker engine answers and a private dockerd needs root")
            try:
                host, proc = start_private_dockerd(tmp)
            except RuntimeError as exc:
                return skip(str(exc))
        t0 = time.monotonic()
        out = docker(host, "load", "--input", str(tarball)).stdout
        print(out.strip(), f"({time.monotonic() - t0:.1f} s)")
        inspect = json.loads(docker(host, "image", "inspect", args.tag).stdout)[0]
        print("image size:", inspect["Size"], "architecture:", inspect["Architecture"])
        port = free_port()
        name = f"vsearch-run-test-{os.getpid()}"
        env = {
            "PORT": str(port),
            "HOST": "127.0.0.1",
            "S3_BUCKET": "run-test",
            "S3_ENDPOINT_URL": "http://127.0.0.1:9",
            "AWS_ACCESS_KEY_ID": "run-test",
            "AWS_SECRET_ACCESS_KEY": "run-test-secret",
        }
        env_args = [a for k, v in env.items() for a in ("--env", f"{k}={v}")]
        started = time.monotonic()
        docker(host, "run", "--detach", "--name", name, "--network", "host", "--read-only",
               "--tmpfs", "/tmp", *env_args, args.tag)  # fmt: skip
        try:
            body = None
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                state = json.loads(docker(host, "inspect", name).stdout)[0]["State"]
                if not state["Running"]:
                    logs = docker(host, "logs", name, check=False)
                    raise AssertionError(
                        f"container exited {state['ExitCode']}:\n{logs.stdout}{logs.stderr}"
                    )
                try:
                    with urllib.request.urlopen(
                        f"http://127.0.0.1:{port}/_/health", timeout=2
                    ) as r:
                        body = (r.status, r.read().decode())
                        break
                except OSError:
                    time.sleep(0.3)
            if body is None:
                logs = docker(host, "logs", name, check=False)
                raise AssertionError(
                    f"no answer on /_/health within 120 s:\n{logs.stdout}{logs.stderr}"
                )
            print(
                f"GET /_/health -> {body[0]} {body[1][:200]}",
                f"after {time.monotonic() - started:.1f} s",
            )
            assert body[0] == 200, body
            user = docker(host, "inspect", "--format", "{{.Config.User}}", name).stdout.strip()
            assert user and not user.startswith("0"), user
        finally:
            docker(host, "rm", "--force", name, check=False)
        print("PASSED: image runs and answers /_/health")
        return 0
    finally:
        if proc is not None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
        # dockerd leaves its network namespace mounted under the exec root.
        netns = tmp / "exec" / "netns" / "default"
        if netns.exists():
            subprocess.run(["umount", "-l", str(netns)], check=False, capture_output=True)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
