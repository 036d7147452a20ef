"""``kubectl port-forward`` kept alive from inside the harness process."""

from __future__ import annotations

import queue
import subprocess
import threading
import time
from collections.abc import Callable, Sequence

import httpx

from harness.backends.cluster.tools import ClusterError, Runner, free_port


class PortForward:
    """``kubectl port-forward`` to loopback, restarted when it dies (pod restarts end it)."""

    def __init__(
        self,
        runner: Runner,
        kubectl: Sequence[str],
        namespace: str,
        target: str,
        remote_ports: Sequence[int],
        *,
        check: Callable[[dict[int, int]], bool] | None = None,
        attempts: int = 5,
        ready_timeout_s: float = 30.0,
        backoff_s: float = 1.0,
    ) -> None:
        self.runner = runner
        self.kubectl = list(kubectl)
        self.namespace = namespace
        self.target = target
        self.remote_ports = list(remote_ports)
        self.check = check
        self.attempts = attempts
        self.ready_timeout_s = ready_timeout_s
        self.backoff_s = backoff_s
        self.ports: dict[int, int] = {}
        self.starts = 0
        self._proc: subprocess.Popen[str] | None = None
        self._lines: queue.Queue[str | None] = queue.Queue()

    def local(self, remote: int) -> int:
        self.ensure()
        return self.ports[remote]

    def alive(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def ensure(self) -> None:
        if not self.alive():
            self.start()

    def start(self) -> None:
        errors: list[str] = []
        for attempt in range(self.attempts):
            self.stop()
            ports = {remote: free_port() for remote in self.remote_ports}
            args = [
                *self.kubectl,
                "port-forward",
                "--namespace",
                self.namespace,
                "--address",
                "127.0.0.1",
                self.target,
                *[f"{local}:{remote}" for remote, local in ports.items()],
            ]
            self._proc = self.runner.popen(args)
            self._lines = queue.Queue()
            threading.Thread(target=self._pump, args=(self._proc,), daemon=True).start()
            error = self._await_forwarding(len(ports))
            if error is None and (self.check is None or self._checked(ports)):
                self.ports = ports
                self.starts += 1
                return
            errors.append(error or "forwarding, but the service did not answer")
            self.stop()
            time.sleep(self.backoff_s * (2**attempt))
        raise ClusterError(
            f"port-forward to {self.namespace}/{self.target} failed {self.attempts} times: "
            + "; ".join(errors[-3:])
        )

    def _checked(self, ports: dict[int, int]) -> bool:
        assert self.check is not None
        try:
            return self.check(ports)
        except httpx.HTTPError:
            return False

    def _pump(self, proc: subprocess.Popen[str]) -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            self._lines.put(line.rstrip("\n"))
        self._lines.put(None)

    def _await_forwarding(self, count: int) -> str | None:
        """None once kubectl reports every port forwarded, else what went wrong."""
        deadline = time.monotonic() + self.ready_timeout_s
        seen = 0
        output: list[str] = []
        while seen < count:
            try:
                line = self._lines.get(timeout=max(0.01, deadline - time.monotonic()))
            except queue.Empty:
                return f"no 'Forwarding from' within {self.ready_timeout_s:g}s"
            if line is None:
                return "kubectl port-forward exited: " + " | ".join(output[-3:])
            output.append(line)
            if line.startswith("Forwarding from 127.0.0.1:"):
                seen += 1
        return None

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)
