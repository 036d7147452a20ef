"""A per-function zygote (SOCK, USENIX ATC 2018): a template process that forks replicas.

`python -m base.zygote stages.transcribe` imports the function (what `python -m
stages.transcribe` would import), runs its fork-safe warm-up (`Function.preload`), then waits on
a control socket (fd in VSEARCH_ZYGOTE_FD) for spawn requests. Each spawn forks a child that:
leads its own session, joins the replica's cgroups before it allocates anything (memory limits
and OOM kills stay per replica), points stdout/stderr at the replica's log, takes the replica's
own environment, reseeds randomness, closes the zygote's sockets and pipes, and serves with the
same runtime (`base.runtime.serve`), so `init` (e.g. the Whisper model with its inference
threads) runs in the child. The zygote reaps its children and reports each exit status.

Fork only happens from a process without running Python threads: `preload` must start none
(a thread pool created before the fork would not exist in the child and its users would hang).
Native pools that handle fork themselves (OpenBLAS, OpenCV's) are fine; tests check the real
stages after a fork.

The protocol: one JSON object per line each way.
  zygote -> platform: {"op": "ready", "pid", "phases": {...}} once warm,
                      {"op": "spawned", "id", "pid", "fork_s"} or {"op": "error", "id", "message"},
                      {"op": "exit", "pid", "returncode"} (negative: killed by that signal).
  platform -> zygote: {"op": "spawn", "id", "env", "log_path", "cwd", "cgroup_procs": [...]},
                      {"op": "retire"} before it closes the socket on purpose.
When the socket closes, a retired zygote exits and leaves its replicas to the platform; one
closed without "retire" lost its platform (killed), so it stops its replicas first: nothing else
would.
Nothing here imports the harness: the platform drives this module over the socket only.
"""

from __future__ import annotations

import contextlib
import gc
import importlib
import importlib.util
import json
import os
import random
import selectors
import signal
import socket
import sys
import threading
import time
from typing import Any

from base import malloc, storage
from base.runtime import RUNTIME_IMPORTED, Function, serve
from base.telemetry import ProcessClock, log

#: The control socket's file descriptor number, inherited from the platform.
FD_ENV = "VSEARCH_ZYGOTE_FD"
#: Exit code of a child that could not join its cgroups (it never runs unlimited).
CGROUP_JOIN_FAILED = 125
#: Exit code of a child whose set-up failed before serving.
CHILD_SETUP_FAILED = 124


def find_function(module_name: str) -> Function[Any, Any, Any]:
    """The Function that `python -m <module_name>` serves (its __main__ declares it)."""
    spec = importlib.util.find_spec(module_name)
    if spec is None:
        raise RuntimeError(f"no module {module_name}")
    # `python -m pkg` runs pkg.__main__; `python -m pkg.mod` runs pkg.mod (both guard serve()).
    package = spec.submodule_search_locations is not None
    module = importlib.import_module(f"{module_name}.__main__" if package else module_name)
    found = getattr(module, "FUNCTION", None)
    if not isinstance(found, Function):
        candidates = [v for v in vars(module).values() if isinstance(v, Function)]
        if len(candidates) != 1:
            raise RuntimeError(f"{module_name}.__main__ declares no single Function")
        found = candidates[0]
    return found


def exit_status(status: int) -> int:
    """A waitpid status as Popen reports it: the exit code, or minus the killing signal."""
    if os.WIFSIGNALED(status):
        return -os.WTERMSIG(status)
    return os.WEXITSTATUS(status) if os.WIFEXITED(status) else status


class Zygote:
    def __init__(self, function: Function[Any, Any, Any], control: socket.socket) -> None:
        self.function = function
        self.control = control
        self.children: set[int] = set()
        #: The platform said it stops this zygote on purpose: its replicas live on.
        self.retired = False
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)

    # -- messages ------------------------------------------------------------------------------
    def send(self, message: dict[str, Any]) -> None:
        self.control.sendall((json.dumps(message, separators=(",", ":")) + "\n").encode())

    def serve_forever(self, phases: dict[str, float]) -> None:
        signal.set_wakeup_fd(self._wake_w)
        signal.signal(signal.SIGCHLD, lambda *_: None)
        self.send({"op": "ready", "pid": os.getpid(), "phases": phases})
        selector = selectors.DefaultSelector()
        selector.register(self.control, selectors.EVENT_READ, "control")
        selector.register(self._wake_r, selectors.EVENT_READ, "signal")
        buffer = b""
        while True:
            for key, _ in selector.select(timeout=1.0):
                if key.data == "signal":
                    with contextlib.suppress(BlockingIOError):
                        os.read(self._wake_r, 4096)
                    continue
                chunk = self.control.recv(1 << 16)
                if not chunk:
                    # Retired: replicas already forked keep serving until their platform stops
                    # them. Closed without a word: the platform died (SIGKILL, OOM killer) and
                    # nobody would ever stop them.
                    log("zygote.control_closed", function=self.function.name, retired=self.retired)
                    if not self.retired:
                        self.stop_children()
                    return
                buffer += chunk
                while b"\n" in buffer:
                    line, buffer = buffer.split(b"\n", 1)
                    if line.strip():
                        self.handle(json.loads(line))
            self.reap()

    def reap(self) -> None:
        while self.children:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                self.children.clear()
                return
            if pid == 0:
                return
            self.children.discard(pid)
            with contextlib.suppress(OSError):  # the platform may be gone (stop_children)
                self.send({"op": "exit", "pid": pid, "returncode": exit_status(status)})

    def stop_children(self, grace_s: float = 5.0) -> None:
        """SIGTERM every live replica's process group (it leads its own session), then SIGKILL
        what is left after `grace_s`."""
        self.reap()
        orphans = sorted(self.children)
        for sig in (signal.SIGTERM, signal.SIGKILL):
            for pid in orphans:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(pid, sig)
            deadline = time.monotonic() + grace_s
            while self.children and time.monotonic() < deadline:
                time.sleep(0.05)
                self.reap()
            orphans = sorted(self.children)
            if not orphans:
                break
        log("zygote.children_stopped", function=self.function.name, left=orphans)

    def handle(self, request: dict[str, Any]) -> None:
        if request.get("op") == "retire":
            self.retired = True
            return
        if request.get("op") != "spawn":
            self.send({"op": "error", "id": request.get("id"), "message": "unknown op"})
            return
        # Python threads do not survive a fork: a pool started by preload would hang the child.
        threads = [t.name for t in threading.enumerate() if t is not threading.main_thread()]
        if threads:
            message = f"cannot fork with running threads {threads}"
            self.send({"op": "error", "id": request.get("id"), "message": message})
            return
        sys.stdout.flush()
        sys.stderr.flush()
        before = time.monotonic()
        pid = os.fork()
        if pid == 0:
            code = CHILD_SETUP_FAILED
            try:
                code = self._become_replica(request)
            except SystemExit as exc:  # uvicorn exits so when it cannot bind its port
                code = exc.code if isinstance(exc.code, int) else CHILD_SETUP_FAILED
            except BaseException as exc:  # the child must never return to the zygote's loop
                with contextlib.suppress(BaseException):
                    log("zygote.child_failed", level="error", error=repr(exc)[:500])
            finally:
                with contextlib.suppress(BaseException):
                    sys.stdout.flush()
                    sys.stderr.flush()
                os._exit(code)
        self.children.add(pid)
        fork_s = round(time.monotonic() - before, 4)
        self.send({"op": "spawned", "id": request.get("id"), "pid": pid, "fork_s": fork_s})

    # -- the child -----------------------------------------------------------------------------
    def _become_replica(self, request: dict[str, Any]) -> int:
        forked = time.monotonic()
        signal.set_wakeup_fd(-1)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        os.setsid()  # the platform stops a replica by its process group
        pid = os.getpid()
        for path in request.get("cgroup_procs") or []:
            # Before anything else allocates: the replica's memory is charged to its own group.
            try:
                with open(path, "w") as procs:
                    procs.write(str(pid))
            except OSError:
                return CGROUP_JOIN_FAILED
        self.control.close()
        os.close(self._wake_r)
        os.close(self._wake_w)
        log_fd = os.open(request["log_path"], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        null_fd = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null_fd, 0)
        os.dup2(log_fd, 1)
        os.dup2(log_fd, 2)
        os.close(log_fd)
        os.close(null_fd)
        os.environ.clear()
        os.environ.update(request["env"])
        # glibc read MALLOC_* when the zygote started; the replica's own values apply from here.
        tuned = malloc.apply_env(os.environ)
        if tuned:
            log("zygote.malloc", **tuned)
        if request.get("cwd"):
            os.chdir(request["cwd"])
        reseed()
        origin = {
            "from_zygote": True,
            "zygote_pid": os.getppid(),
            "fork_to_child_s": round(time.monotonic() - forked, 4),
        }
        serve(self.function, imported_monotonic=time.monotonic(), origin=origin)
        return 0


def reseed() -> None:
    """Each replica gets its own random streams (a fork copies the template's state)."""
    random.seed()
    numpy = sys.modules.get("numpy")
    if numpy is not None:
        numpy.random.seed()


def warm_server() -> None:
    """uvicorn imports its HTTP protocol and lifespan modules (h11, ...) when a server is
    configured: do it once here rather than in every replica (about 20 modules, 20-30 ms of CPU
    per start on this host)."""
    import uvicorn

    async def nothing(scope: Any, receive: Any, send: Any) -> None:
        return None

    uvicorn.Config(nothing, log_config=None, access_log=False).load()


def freeze_heap() -> None:
    """Move everything the zygote allocated out of the collector's reach (gc.freeze), so a
    replica's full collection does not touch it.

    A full collection writes to the header of every tracked object: in a fork that copies each
    shared page it reaches. Measured in a child forked after preload: one gc.collect() faulted
    in 18,900 pages (74 MiB) and took 0.19 CPU-s for segment-speech, 7,000-7,700 pages and
    0.07-0.08 CPU-s for the orchestrator, transcribe and detect-objects; after freezing, 10-18
    pages and no measurable CPU. In the bench it removed replica peaks 20-61 MiB above the
    usual (a full collection's copies; README, issue 13). The frozen objects were the zygote's
    for good anyway.
    """
    gc.collect()  # what is garbage now is not kept alive forever
    gc.freeze()


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: python -m base.zygote <function module, e.g. stages.transcribe>")
        return 2
    clock = ProcessClock()
    control = socket.socket(fileno=int(os.environ[FD_ENV]))
    os.environ.pop(FD_ENV, None)
    imports_started = time.monotonic()
    function = find_function(argv[1])
    imported = time.monotonic()
    if function.preload is not None:
        function.preload()
    storage.warm()  # every replica creates an S3 client: its service model is parsed here once
    warm_server()
    freeze_heap()
    phases = {
        "process_start_s": round(max(0.0, RUNTIME_IMPORTED - clock.started_monotonic), 3),
        "imports_s": round(imported - imports_started, 3),
        "preload_s": round(time.monotonic() - imported, 3),
    }
    log("zygote.ready", function=function.name, **phases)
    Zygote(function, control).serve_forever(phases)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
