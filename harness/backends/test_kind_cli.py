"""`vsearch up|status|down --backend kind` and `bench --backend kind`'s reuse, end to end.

The CLI runs as a subprocess with the fake kind/kubectl/helm/docker first on PATH (the fake world
of test_kind_backend.py), so what is checked is the command sequences the real tools would get,
the detached gateway port-forward, and what the user is told, including the failure paths.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from harness.backends import kind as kb
from harness.backends import kind_forward
from harness.backends.cluster import tools as cluster_tools
from harness.backends.factory import create_backend
from harness.backends.test_kind_backend import TAG, FakeCluster, _milestones, fake_world
from harness.backends.testing import fake_cluster_tools as fake
from harness.cli import build_parser
from harness.commands.kind import backend_options
from harness.functions import load

ROOT = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    return cluster_tools.free_port()


def vsearch(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    environ = dict(os.environ if env is None else env)
    environ["PYTHONPATH"] = str(ROOT)
    environ.pop("VSEARCH_IMAGE_TAG", None)
    return subprocess.run(
        [sys.executable, "-m", "harness.cli", *args],
        cwd=ROOT,
        env=environ,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )


def _kind_args(world: FakeCluster) -> list[str]:
    return ["--backend", "kind", "--workdir", str(world.workdir)]


def _up_args(world: FakeCluster, port: int) -> list[str]:
    return [
        "up", *_kind_args(world), "--registry", world.registry, "--image-tag", TAG,
        "--manifests-dir", str(world.manifests), "--timeout", "20", "--gateway-port", str(port),
    ]  # fmt: skip


def _children(pid: int) -> list[int]:
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rpartition(")")[2].split()
        except OSError:
            continue
        if fields[1] == str(pid) and fields[0] != "Z":
            out.append(int(stat.parent.name))
    return out


def _pid_alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes() != b""
    except OSError:
        return False


@contextlib.contextmanager
def cli_world(tmp: Path) -> Iterator[FakeCluster]:
    """The fake world; the detached forward `up` starts is stopped even when a test fails."""
    with fake_world(tmp) as world:
        try:
            yield world
        finally:
            kind_forward.stop(world.workdir)


def test_kind_up_status_bench_reuse_down(tmp_path: Path) -> None:
    with cli_world(tmp_path) as world:
        port = _free_port()
        up = vsearch(*_up_args(world, port))
        assert up.returncode == 0, up.stderr
        assert "Traceback" not in up.stderr
        # What up says: where the gateway is and how to go on.
        assert f"gateway      http://127.0.0.1:{port}" in up.stdout
        bench = f"bench        ./vsearch bench warm-steady --backend kind --workdir {world.workdir}"
        assert bench in up.stdout
        assert "./vsearch down --backend kind" in up.stdout
        # The whole deploy ran, in order, with command lines the real tools accept.
        trace = _milestones(world.calls())
        steps = ["docker run", "kind create", "docker push", "helm upgrade", "gateway post"]
        positions = [next(i for i, t in enumerate(trace) if t.startswith(s)) for s in steps]
        assert positions == sorted(positions), trace
        assert world.errors() == []
        # It is left running: state says so, and the detached forward serves the gateway.
        state = json.loads((world.workdir / kb.STATE_FILE).read_text())
        assert state["left_up"] and state["created_cluster"] and state["image_tag"] == TAG
        record = kind_forward.read(world.workdir)
        assert record is not None and record["port"] == port
        with httpx.Client(trust_env=False, timeout=5) as http:
            assert http.get(f"http://127.0.0.1:{port}/healthz").status_code == 200
        password = world.state()["secrets"]["openfaas/basic-auth"]["basic-auth-password"]
        plain = base64.b64decode(password).decode()
        assert plain not in up.stdout + up.stderr

        status = vsearch("status", *_kind_args(world), "--json")
        assert status.returncode == 0, status.stderr
        document = json.loads(status.stdout)
        assert document["cluster"] == "vsearch" and document["left_running_by_up"]
        assert document["gateway"] == {
            "url": f"http://127.0.0.1:{port}",
            "forward_running": True,
            "healthy": True,
        }
        names = sorted(f["name"] for f in document["functions"])
        assert names == sorted(load().names)
        for fn in document["functions"]:
            assert fn["availableReplicas"] >= 1, fn
            assert fn["vsearch"]["memory_limit_bytes"] > 0
        assert plain not in status.stdout
        table = vsearch("status", *_kind_args(world))
        assert table.returncode == 0 and "orchestrator" in table.stdout

        # The gateway pod going away ends kubectl's forward: the supervisor starts another.
        (kubectl,) = _children(record["pid"])
        os.kill(kubectl, signal.SIGKILL)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if _children(record["pid"]) not in ([], [kubectl]) and kind_forward.gateway_healthy(
                port
            ):
                break
            time.sleep(0.2)
        else:
            raise AssertionError((world.workdir / kind_forward.LOG_FILE).read_text())
        assert "exited -9; again in" in (world.workdir / kind_forward.LOG_FILE).read_text()

        # bench --backend kind builds its backend from the same options: it attaches to the
        # cluster up left (no cluster, registry, image or chart work), redeploys the functions
        # with the regime's declarations, and leaves the cluster running afterwards.
        args = build_parser().parse_args(
            ["bench", "warm-steady", *_kind_args(world), "--manifests-dir", str(world.manifests)]
        )
        options = {**backend_options(args), "keep_cluster": args.keep_cluster}
        assert options["workdir"] == world.workdir and options["keep_cluster"] is False
        before = len(world.calls())
        backend = create_backend("kind", state_dir=None, enforce_limits=True, **options)
        assert isinstance(backend, kb.KindBackend)
        backend.forward_backoff_s = 0.05
        backend.deploy(load().functions)
        assert backend.attached and backend.describe()["attached_to_running_cluster"]
        backend.teardown()
        reuse = _milestones(world.calls()[before:])
        for step in (
            "kind create",
            "docker run",
            "docker push",
            "helm upgrade",
            "helm pull",
            "kubectl create",
            "kubectl apply",
        ):
            assert not any(t.startswith(step) for t in reuse), (step, reuse)
        assert sum(t == "gateway put" for t in reuse) == len(load().names)
        assert world.state()["clusters"] == ["vsearch"]
        assert world.errors() == []

        # `up` again is the whole deploy on the same cluster (images pushed again, nothing
        # created), and the port-forward is restarted.
        before = len(world.calls())
        again = vsearch(*_up_args(world, port))
        assert again.returncode == 0, again.stderr
        redo = _milestones(world.calls()[before:])
        assert any(t.startswith("docker push") for t in redo)
        assert any(t.startswith("helm upgrade") for t in redo)
        assert not any(t.startswith(("kind create", "docker run", "kubectl create")) for t in redo)
        assert not _pid_alive(record["pid"])
        record = kind_forward.read(world.workdir)
        assert record is not None and record["port"] == port

        pid = record["pid"]
        down = vsearch("down", *_kind_args(world))
        assert down.returncode == 0, down.stderr
        assert "stopped the gateway port-forward" in down.stderr
        assert world.state()["clusters"] == []
        assert "kind-registry" not in world.state()["containers"]
        deadline = time.monotonic() + 10
        while _pid_alive(pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not _pid_alive(pid)
        assert kind_forward.read(world.workdir) is None
        with pytest.raises(httpx.HTTPError), httpx.Client(trust_env=False, timeout=2) as http:
            http.get(f"http://127.0.0.1:{port}/healthz")
        assert not json.loads((world.workdir / kb.STATE_FILE).read_text())["left_up"]
        # Nothing to attach to any more: status says so in one line.
        gone = vsearch("status", *_kind_args(world))
        assert gone.returncode == 1 and "no kind cluster 'vsearch'" in gone.stderr
        assert "Traceback" not in gone.stderr
        assert world.errors() == []


def test_kind_up_failure_collects_pod_logs(tmp_path: Path) -> None:
    with cli_world(tmp_path) as world:
        world.update(local_images=[])  # the build's images are not in the Docker engine
        up = vsearch(*_up_args(world, _free_port()))
        assert up.returncode == 3
        assert "Traceback" not in up.stderr
        assert "function images are missing" in up.stderr
        line = next(x for x in up.stderr.splitlines() if "pod logs, events and pod desc" in x)
        logs = Path(line.rsplit(": ", 1)[1])
        assert logs.parent == world.workdir / "logs"
        assert {"openfaas.pods.json", "openfaas-fn.events.json"} <= {p.name for p in logs.iterdir()}
        assert kind_forward.read(world.workdir) is None  # no forward for a failed up
        down = vsearch("down", *_kind_args(world))
        assert down.returncode == 0 and world.state()["clusters"] == []


def test_kind_commands_name_missing_tools_in_one_line(tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    fake.install(bin_dir, tmp_path / "state.json", tmp_path / "calls.jsonl")
    for tool in ("kubectl", "docker", "skopeo"):
        (bin_dir / tool).unlink()
    env = {**os.environ, "PATH": str(bin_dir)}
    for command in ("up", "status"):
        done = vsearch(command, "--backend", "kind", "--workdir", str(tmp_path / "w"), env=env)
        assert done.returncode == 2, done.stderr
        (line,) = done.stderr.strip().splitlines()
        assert line.startswith(f"vsearch {command}: missing tools: kubectl v1.36, docker 28 (")
        assert "https://kubernetes.io/docs/tasks/tools/" in line
        assert "https://docs.docker.com/engine/install/" in line
        assert "kind v" not in line and "helm v" not in line
    assert fake.read_log(tmp_path / "calls.jsonl") == []  # nothing ran


def test_kind_gateway_port_in_use_is_named(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(kind_forward.ForwardError, match=f"127.0.0.1:{port} is in use"):
            kind_forward.start(tmp_path, kubeconfig=tmp_path / "k", context="kind-x", port=port)
    assert not (tmp_path / kind_forward.PID_FILE).exists()
