"""`python -m harness.embedded serve|up|down|status --state-dir DIR`.

- serve: run S3, gateway and replicas in the foreground until SIGTERM/SIGINT;
- up: start `serve` in the background and return once every function is ready;
- down: stop the platform that `up` started (graceful, then forced);
- status: the gateway's health and each function's replicas.

Credentials stay in DIR/credentials.json (0600); no command prints them.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import psutil

from harness.embedded.client import STATE_FILE, GatewayClient
from harness.embedded.function_process import REPO_ROOT
from harness.functions import DECLARATIONS, load

SERVE_LOG = "serve.log"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m harness.embedded", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    for name, text in (
        ("serve", "run the platform in the foreground"),
        ("up", "start the platform in the background"),
    ):
        sub = commands.add_parser(name, help=text)
        _state_dir(sub)
        sub.add_argument("--manifest", type=Path, default=DECLARATIONS, help="functions.yaml")
        sub.add_argument("--only", default="", help="comma-separated function names to run")
        sub.add_argument("--no-limits", action="store_true", help="do not use cgroups")
        sub.add_argument(
            "--s3",
            choices=["auto", "embedded"],
            default="auto",
            help="auto: S3_ENDPOINT_URL & co. from the environment if set, else SeaweedFS",
        )
        sub.add_argument("--queue-limit", type=int, default=32, help="queued calls per function")
        sub.add_argument("--timeout", type=float, default=300.0, help="seconds to become ready")
    down = commands.add_parser("down", help="stop a platform started with up")
    _state_dir(down)
    down.add_argument("--timeout", type=float, default=60.0)
    status = commands.add_parser("status", help="health and replicas")
    _state_dir(status)
    status.add_argument("--json", action="store_true", help="print /system/functions as JSON")
    args = parser.parse_args(argv)
    handler = {"serve": serve, "up": up, "down": stop, "status": show_status}[args.command]
    return int(handler(args))


def _state_dir(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--state-dir", type=Path, required=True, help="state, logs, credentials")


# -- serve ---------------------------------------------------------------------------------------


def serve(args: argparse.Namespace) -> int:
    # Imported here: status and down should not pay for boto3, uvicorn and starlette.
    from harness.embedded.gateway import GatewaySettings
    from harness.embedded.platform import EmbeddedPlatform
    from harness.embedded.replicas import PoolSettings

    running = _running(args.state_dir)
    if running is not None:
        print(
            f"already running (pid {running['pid']}) at {running['gateway_url']}", file=sys.stderr
        )
        return 1
    declarations = load(args.manifest).functions
    if args.only:
        wanted = {n.strip() for n in args.only.split(",") if n.strip()}
        unknown = wanted - {d.name for d in declarations}
        if unknown:
            print(f"unknown functions: {', '.join(sorted(unknown))}", file=sys.stderr)
            return 2
        declarations = [d for d in declarations if d.name in wanted]
    stop_requested = threading.Event()

    def request_stop(signum: int, frame: object) -> None:
        stop_requested.set()

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    platform = EmbeddedPlatform(
        args.state_dir,
        declarations,
        s3=args.s3,
        enforce_limits=not args.no_limits,
        settings=GatewaySettings(pool=PoolSettings(queue_limit=args.queue_limit)),
        ready_timeout_s=args.timeout,
    )
    try:
        platform.start()
        while not stop_requested.wait(1.0):
            if not platform.gateway_alive():
                print("the gateway stopped unexpectedly", file=sys.stderr)
                return 1
    finally:
        platform.stop()
    return 0


# -- up / down / status --------------------------------------------------------------------------


def up(args: argparse.Namespace) -> int:
    state_dir: Path = args.state_dir.resolve()
    running = _running(state_dir)
    if running is not None:
        print(f"already running (pid {running['pid']}) at {running['gateway_url']}")
        return 0
    state_dir.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(FileNotFoundError):
        (state_dir / STATE_FILE).unlink()  # stale: its process is gone
    command = [sys.executable, "-m", "harness.embedded", "serve", "--state-dir", str(state_dir)]
    command += ["--manifest", str(args.manifest.resolve()), "--s3", args.s3]
    command += ["--queue-limit", str(args.queue_limit), "--timeout", str(args.timeout)]
    if args.only:
        command += ["--only", args.only]
    if args.no_limits:
        command.append("--no-limits")
    log_path = state_dir / SERVE_LOG
    with log_path.open("ab") as log:
        proc = subprocess.Popen(
            command,
            cwd=REPO_ROOT,
            env={**os.environ, "PYTHONPATH": str(REPO_ROOT), "PYTHONUNBUFFERED": "1"},
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            # Detached: the platform outlives this command and the terminal's Ctrl-C.
            start_new_session=True,
        )
    deadline = time.monotonic() + args.timeout + 60
    while time.monotonic() < deadline:
        state = _read_state(state_dir)
        if state is not None and state.get("pid") == proc.pid:
            print(f"gateway:     {state['gateway_url']}")
            print(f"s3:          {state['s3_endpoint']} (bucket {state['bucket']})")
            limits = "enforced" if state["limits_enforced"] else "NOT enforced"
            print(f"limits:      {limits} ({state['limits_reason']})")
            print(f"credentials: {state_dir / 'credentials.json'} (mode 0600)")
            print(f"log:         {log_path}")
            return 0
        if proc.poll() is not None:
            print(f"the platform exited with {proc.returncode}; log tail:", file=sys.stderr)
            print(_tail(log_path), file=sys.stderr)
            return 1
        time.sleep(0.2)
    print("the platform did not become ready in time; stopping it", file=sys.stderr)
    _terminate(proc.pid, 30.0, [])
    return 1


def stop(args: argparse.Namespace) -> int:
    state = _read_state(args.state_dir)
    if state is None:
        print("not running (no state.json)")
        return 0
    pid = int(state["pid"])
    if not _is_serve_process(pid):
        print(f"not running (stale state: pid {pid} is gone)")
        (args.state_dir / STATE_FILE).unlink(missing_ok=True)
        return 0
    # Remember the replicas' pids: if the platform must be killed, they are killed too.
    replica_pids: list[int] = []
    with contextlib.suppress(Exception), GatewayClient.from_state_dir(args.state_dir) as client:
        for function in client.functions():
            replica_pids += [r["pid"] for r in function["vsearch"]["replicas"] if r["pid"]]
    clean = _terminate(pid, args.timeout, replica_pids)
    print("stopped" if clean else "killed (did not stop within the timeout)")
    return 0


def show_status(args: argparse.Namespace) -> int:
    state = _read_state(args.state_dir)
    if state is None or not _is_serve_process(int(state["pid"])):
        print("not running")
        return 3
    with GatewayClient.from_state_dir(args.state_dir) as client:
        if not client.healthy():
            print(f"gateway at {state['gateway_url']} is not healthy")
            return 1
        functions = client.functions()
    if args.json:
        print(json.dumps(functions, indent=2))
        return 0
    print(f"gateway {state['gateway_url']}  pid {state['pid']}  s3 {state['s3_endpoint']}")
    print(f"limits {'enforced' if state['limits_enforced'] else 'NOT enforced'}")
    print(
        f"{'function':<16}{'ready':>7}{'target':>8}{'inflight':>10}{'queued':>8}"
        f"{'calls':>8}{'cold':>6}{'oom':>5}{'limit MiB':>11}{'peak MiB':>10}"
    )
    for f in functions:
        x = f["vsearch"]
        print(
            f"{f['name']:<16}{f['availableReplicas']:>7}{f['replicas']:>8}{x['inflight']:>10}"
            f"{x['queued']:>8}{f['invocationCount']:>8}{x['cold_starts']:>6}{x['oom_kills']:>5}"
            f"{x['memory_limit_bytes'] / 2**20:>11.0f}{x['peak_memory_bytes'] / 2**20:>10.0f}"
        )
    return 0


def _read_state(state_dir: Path) -> dict[str, Any] | None:
    try:
        return dict(json.loads((state_dir / STATE_FILE).read_text()))
    except (FileNotFoundError, ValueError):
        return None


def _running(state_dir: Path) -> dict[str, Any] | None:
    state = _read_state(state_dir)
    if state is not None and _is_serve_process(int(state["pid"])):
        return state
    return None


def _is_serve_process(pid: int) -> bool:
    """Alive and really ours: a pid from an old state file may belong to anything by now."""
    try:
        cmdline = psutil.Process(pid).cmdline()
    except psutil.Error:
        return False
    return "harness.embedded" in cmdline and "serve" in cmdline


def _terminate(pid: int, timeout_s: float, replica_pids: list[int]) -> bool:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not _alive(pid):
            return True
        time.sleep(0.1)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.kill(pid, signal.SIGKILL)
    for replica in replica_pids:
        # Each replica leads its own process group (its ffmpeg children are in it too).
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(replica, signal.SIGKILL)
    return False


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def _tail(path: Path, limit: int = 3000) -> str:
    try:
        return path.read_text(errors="replace")[-limit:]
    except OSError:
        return "(no log)"


if __name__ == "__main__":
    sys.exit(main())
