"""Running the cluster tools (kind, kubectl, helm, docker, skopeo) and small waiting helpers."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime
from pathlib import Path

REQUIRED_TOOLS = ("kind", "kubectl", "helm", "docker")
#: Versions the cluster path was written against (manifests/README.md); older ones may work.
TOOL_VERSIONS = {"kind": "v0.33.0", "kubectl": "v1.36", "helm": "v3.18", "docker": "28"}
#: Where to get each tool, named in the missing-tools error.
TOOL_SOURCES = {
    "kind": "https://kind.sigs.k8s.io/docs/user/quick-start/#installation",
    "kubectl": "https://kubernetes.io/docs/tasks/tools/",
    "helm": "https://helm.sh/docs/intro/install/",
    "docker": "https://docs.docker.com/engine/install/",
    "skopeo": "apt-get install skopeo",
}


class ClusterError(RuntimeError):
    """The cluster path cannot go on; the message says what to do."""


class Runner:
    """Runs the CLI tools. Every command line is appended to ``log_path``; stdin, where secrets
    travel, never is."""

    def __init__(self, log_path: Path, *, env: Mapping[str, str] | None = None) -> None:
        self.log_path = log_path
        self.env = dict(os.environ if env is None else env)

    def _log(self, args: Sequence[str], note: str = "") -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("a") as f:
            f.write(json.dumps({"t": round(time.time(), 3), "argv": list(args), "note": note}))
            f.write("\n")

    def run(
        self,
        args: Sequence[str],
        *,
        input: str | None = None,
        check: bool = True,
        timeout: float = 600.0,
        env: Mapping[str, str] | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """``env`` adds variables for this command only (credentials travel there or on stdin,
        never in the logged argv)."""
        self._log(args, "stdin" if input is not None else "")
        try:
            proc = subprocess.run(
                list(args),
                input=input,
                capture_output=True,
                text=True,
                timeout=timeout,
                env=self.env if env is None else {**self.env, **env},
                check=False,
            )
        except FileNotFoundError as exc:
            raise ClusterError(f"{args[0]} is not installed (or not on PATH)") from exc
        except subprocess.TimeoutExpired as exc:
            raise ClusterError(
                f"{' '.join(args[:4])} ... did not finish within {timeout:g}s"
            ) from exc
        if check and proc.returncode != 0:
            raise ClusterError(
                f"`{' '.join(args)}` failed (exit {proc.returncode}): "
                f"{(proc.stderr or proc.stdout).strip()[-2000:]}"
            )
        return proc

    def popen(self, args: Sequence[str]) -> subprocess.Popen[str]:
        self._log(args, "background")
        return subprocess.Popen(
            list(args),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            text=True,
            env=self.env,
            start_new_session=True,
        )


def missing_tools(tools: Iterable[str] = REQUIRED_TOOLS) -> list[str]:
    return [t for t in tools if shutil.which(t) is None]


def missing_tools_message(missing: Sequence[str]) -> str:
    """One line: the missing tools, the versions written against and where to get them."""
    wanted = ", ".join(f"{t} {TOOL_VERSIONS.get(t, '')}".strip() for t in missing)
    sources = "; ".join(f"{t}: {TOOL_SOURCES[t]}" for t in missing if t in TOOL_SOURCES)
    return f"missing tools: {wanted} (get them: {sources}; see manifests/README.md)"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until(
    what: str, predicate: Callable[[], bool], *, timeout_s: float, interval_s: float = 0.5
) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        if predicate():
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not reached within {timeout_s:g}s")
        time.sleep(interval_s)


def rfc3339(text: str | None) -> float | None:
    if not text:
        return None
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
