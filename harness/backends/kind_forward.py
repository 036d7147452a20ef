"""The gateway's port-forward that outlives `vsearch up --backend kind`.

KindBackend's own port-forwards live as long as the Python process that made them (their output
is read through a pipe). After `up` exits, users and tools still need the gateway on a fixed
loopback port, so `up` starts this module as a detached process: it keeps ``kubectl
port-forward deployment/gateway PORT:8080`` running and restarts it (with backoff) when it ends,
which it does whenever the gateway pod is replaced. `down` stops it; `status` reports it.

    python -m harness.backends.kind_forward --kubeconfig K --context C --port 8080 --log L

Its pid and port are in ``<workdir>/gateway-forward.json``; kubectl's output and every restart
go to ``<workdir>/gateway-forward.log``. No credential passes through here.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[2]
PID_FILE = "gateway-forward.json"
LOG_FILE = "gateway-forward.log"
#: Marks our process in /proc/PID/cmdline, so a recycled pid is never signalled.
MODULE = "harness.backends.kind_forward"


class ForwardError(RuntimeError):
    pass


# --------------------------------------------------------------------------------------------
# The detached process
# --------------------------------------------------------------------------------------------


def serve(kubectl: Sequence[str], namespace: str, port: int, log: Path) -> int:
    """Keep the forward up until SIGTERM."""
    child: subprocess.Popen[bytes] | None = None
    stopping = False

    def on_term(signum: int, frame: Any) -> None:
        nonlocal stopping
        stopping = True
        if child is not None and child.poll() is None:
            child.terminate()

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)
    backoff = 1.0
    with log.open("ab", buffering=0) as out:
        while not stopping:
            argv = [
                *kubectl, "port-forward", "--namespace", namespace, "--address", "127.0.0.1",
                "deployment/gateway", f"{port}:8080",
            ]  # fmt: skip
            out.write(f"{time.strftime('%FT%T')} starting: {' '.join(argv)}\n".encode())
            began = time.monotonic()
            child = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT)
            code = child.wait()
            if stopping:
                break
            # A forward that ran a while ended because the pod went: retry at once. One that
            # failed straight away backs off, up to 30 s, so a down cluster is not hammered.
            backoff = 1.0 if time.monotonic() - began > 60 else min(backoff * 2, 30.0)
            out.write(f"{time.strftime('%FT%T')} exited {code}; again in {backoff:g}s\n".encode())
            deadline = time.monotonic() + backoff
            while not stopping and time.monotonic() < deadline:
                time.sleep(0.2)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=f"python -m {MODULE}")
    parser.add_argument("--kubeconfig", required=True)
    parser.add_argument("--context", required=True)
    parser.add_argument("--namespace", default="openfaas")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--log", type=Path, required=True)
    args = parser.parse_args(argv)
    kubectl = ["kubectl", "--kubeconfig", args.kubeconfig, "--context", args.context]
    return serve(kubectl, args.namespace, args.port, args.log)


# --------------------------------------------------------------------------------------------
# Control, from `up`, `down` and `status`
# --------------------------------------------------------------------------------------------


def _ours(pid: int) -> bool:
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return MODULE.encode() in cmdline


def _group_alive(pgid: int) -> bool:
    """Whether any live (not zombie) process is in the process group: the forward's kubectl
    holds the port until it is gone, and it may outlive the supervisor by a moment."""
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rpartition(")")[2].split()
        except OSError:
            continue
        if len(fields) > 2 and fields[2] == str(pgid) and fields[0] != "Z":
            return True
    return False


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        # As kubectl (Go) binds: connections of an earlier forward in TIME_WAIT do not count.
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def gateway_healthy(port: int, *, timeout_s: float = 3.0) -> bool:
    try:
        with httpx.Client(trust_env=False, timeout=timeout_s) as http:
            return http.get(f"http://127.0.0.1:{port}/healthz").status_code == 200
    except httpx.HTTPError:
        return False


def read(workdir: Path) -> dict[str, Any] | None:
    """The running forward's record (pid, port, started), or None."""
    path = workdir / PID_FILE
    try:
        record = dict(json.loads(path.read_text()))
    except (OSError, ValueError):
        return None
    return record if _ours(int(record.get("pid", 0))) else None


def stop(workdir: Path, *, timeout_s: float = 10.0) -> bool:
    """Stop the forward this workdir started (with its kubectl); True if one was running."""
    record = read(workdir)
    (workdir / PID_FILE).unlink(missing_ok=True)
    if record is None:
        return False
    pid = int(record["pid"])
    # It leads its own session: the group is it and its kubectl.
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and _group_alive(pid):
        time.sleep(0.1)
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)  # reap it when it was started by this process
    if _group_alive(pid):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)
    return True


def start(
    workdir: Path,
    *,
    kubeconfig: Path,
    context: str,
    port: int,
    namespace: str = "openfaas",
    timeout_s: float = 60.0,
) -> dict[str, Any]:
    """Start (or restart) the detached forward and wait until the gateway answers on ``port``."""
    stop(workdir)
    if not _port_free(port):
        raise ForwardError(
            f"127.0.0.1:{port} is in use by another program: pass --gateway-port to choose another"
        )
    workdir.mkdir(parents=True, exist_ok=True)
    log = workdir / LOG_FILE
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + (
        os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else ""
    )
    argv = [
        sys.executable, "-m", MODULE, "--kubeconfig", str(kubeconfig), "--context", context,
        "--namespace", namespace, "--port", str(port), "--log", str(log),
    ]  # fmt: skip
    with log.open("ab") as out:
        proc = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, env=env,
            cwd=ROOT, start_new_session=True,
        )  # fmt: skip
    record = {"pid": proc.pid, "port": port, "started_at": time.time()}
    (workdir / PID_FILE).write_text(json.dumps(record))
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if gateway_healthy(port):
            return record
        if proc.poll() is not None:
            break
        time.sleep(0.3)
    stop(workdir)
    tail = " | ".join(log.read_text(errors="replace").strip().splitlines()[-3:])
    raise ForwardError(f"the gateway did not answer on 127.0.0.1:{port} ({log}: {tail})")


if __name__ == "__main__":
    sys.exit(main())
