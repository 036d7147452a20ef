"""Zygote replicas: real forks from a template process that imported the function."""

from __future__ import annotations

import os
import signal
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest

from harness.embedded import replicas as replica_pool
from harness.embedded.cgroups import CgroupManager
from harness.embedded.function_process import FunctionStartError, process_env
from harness.embedded.platform import EmbeddedPlatform
from harness.embedded.zygote import ForkedProcess, ZygoteError, ZygoteProcess
from harness.functions import FunctionDeclaration

MODULE = "base.tests.sample_function"


def _zygote(tmp_path: Path, s3_server: Any, **env: str) -> ZygoteProcess:
    zygote = ZygoteProcess(
        MODULE, process_env({**s3_server.env(), **env}), log_path=tmp_path / "zygote.log"
    ).start()
    assert zygote.wait_ready(60), zygote.log_tail()
    return zygote


def _fork(zygote: ZygoteProcess, tmp_path: Path, s3_server: Any, **kw: Any) -> ForkedProcess:
    name = uuid.uuid4().hex[:6]
    env = {**s3_server.env(), "REPLICA_NAME": f"sample-{name}", "max_inflight": "2"}
    return ForkedProcess(zygote, MODULE, env, log_path=tmp_path / f"{name}.log", **kw)


def test_a_forked_replica_serves_and_says_where_it_came_from(
    tmp_path: Path, s3_server: Any
) -> None:
    zygote = _zygote(tmp_path, s3_server)
    try:
        assert set(zygote.phases) == {"process_start_s", "imports_s", "preload_s"}
        replica = _fork(zygote, tmp_path, s3_server).start()
        try:
            ready_s = replica.wait_ready(30)
            child = psutil.Process(replica.pid)
            assert child.ppid() == zygote.pid  # a fork of the template, not a new interpreter
            assert os.getsid(replica.pid) == replica.pid  # its own session: killpg stops it
            ready = httpx.get(replica.url + "/_/ready").json()
            assert ready["pid"] == replica.pid
            startup = ready["startup"]
            assert startup["from_zygote"] is True and startup["zygote_pid"] == zygote.pid
            # Imported once, in the zygote: what is left is the runtime's set-up (S3 client).
            assert startup["imports_s"] < 1.0
            assert ready_s < 5.0
            body = {"request_id": "z-1", "input": {}, "config": {"mode": "echo"}}
            response = httpx.post(replica.url + "/", json=body, timeout=30)
            assert response.status_code == 200, response.text
            assert response.json()["outputs"]["mode"] == "echo"
            # The replica's own environment, not the template's.
            assert response.json()["metrics"]["replica"].startswith("sample-")
            # The template's heap is frozen, so the replica's collections leave its pages shared.
            body = {"request_id": "z-2", "input": {}, "config": {"mode": "gc"}}
            frozen = httpx.post(replica.url + "/", json=body, timeout=30).json()["outputs"]
            assert frozen["frozen"] > 10_000, frozen
            # Each fork reseeds: two replicas do not share the template's random stream.
            second = _fork(zygote, tmp_path, s3_server).start()
            second.wait_ready(30)
            assert second.pid != replica.pid
            second.stop()
            # Reported by the zygote: uvicorn re-raises SIGTERM after its graceful shutdown.
            assert second.exited() and second.returncode == -signal.SIGTERM
        finally:
            replica.stop()
    finally:
        zygote.stop()


def test_the_zygote_reports_how_its_replica_died(tmp_path: Path, s3_server: Any) -> None:
    zygote = _zygote(tmp_path, s3_server)
    try:
        replica = _fork(zygote, tmp_path, s3_server).start()
        replica.wait_ready(30)
        replica.kill(signal.SIGKILL)
        deadline = time.monotonic() + 5
        while not replica.exited() and time.monotonic() < deadline:
            time.sleep(0.02)
        assert replica.returncode == -signal.SIGKILL
    finally:
        zygote.stop()


def test_a_zygote_stopped_on_purpose_leaves_its_replicas_serving(
    tmp_path: Path, s3_server: Any
) -> None:
    """The platform retires a failing zygote and keeps its replicas; only a zygote that lost
    its platform stops them (harness/test_termination.py kills the platform)."""
    zygote = _zygote(tmp_path, s3_server)
    replica = _fork(zygote, tmp_path, s3_server).start()
    try:
        replica.wait_ready(30)
        zygote.stop()
        time.sleep(0.5)
        assert httpx.get(replica.url + "/_/ready", timeout=5).status_code == 200
    finally:
        os.killpg(replica.pid, signal.SIGKILL)
        zygote.stop()


def test_a_zygote_with_a_running_thread_refuses_to_fork(tmp_path: Path, s3_server: Any) -> None:
    zygote = _zygote(tmp_path, s3_server, SAMPLE_PRELOAD_THREAD="1")
    try:
        with pytest.raises(ZygoteError, match="running threads"):
            zygote.spawn({}, log_path=tmp_path / "x.log", cgroup_procs=[], timeout_s=10)
    finally:
        zygote.stop()


def test_a_dead_zygote_cannot_fork(tmp_path: Path, s3_server: Any) -> None:
    zygote = _zygote(tmp_path, s3_server)
    assert zygote.proc is not None
    os.killpg(zygote.proc.pid, signal.SIGKILL)
    zygote.proc.wait(5)
    with pytest.raises(FunctionStartError):
        _fork(zygote, tmp_path, s3_server).start()
    zygote.stop()


def test_a_forked_replica_joins_its_own_cgroup(tmp_path: Path, s3_server: Any) -> None:
    cgroups = CgroupManager(f"zyg-{uuid.uuid4().hex[:6]}")
    if not cgroups.enforced:
        pytest.skip(f"no writable cgroup here: {cgroups.reason}")
    zygote_group = cgroups.create("sample-z1", 512 << 20)
    group = cgroups.create("sample-1", 256 << 20)
    zygote = ZygoteProcess(
        MODULE,
        process_env(s3_server.env()),
        log_path=tmp_path / "zygote.log",
        cgroup_procs=zygote_group.procs_files(),
    ).start()
    try:
        assert zygote.wait_ready(60), zygote.log_tail()
        replica = _fork(zygote, tmp_path, s3_server, cgroup_procs=group.procs_files()).start()
        try:
            replica.wait_ready(30)
            assert replica.pid is not None
            for procs in group.procs_files():
                assert replica.pid in _pids(procs)  # the replica's own limits
            for procs in zygote_group.procs_files():
                assert replica.pid not in _pids(procs)
                assert zygote.pid in _pids(procs)
            assert group.memory_limit_bytes == 256 << 20
            assert group.stats().memory_bytes > 0  # its allocations are charged there
        finally:
            replica.stop()
    finally:
        zygote.stop()
        group.remove()
        zygote_group.remove()
        cgroups.cleanup()


def _pids(procs: str) -> set[int]:
    return {int(line) for line in Path(procs).read_text().split()}


def test_platform_forks_replicas_and_restarts_a_dead_zygote(
    tmp_path: Path, s3_server: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    decl = FunctionDeclaration(name="sample", module=MODULE, min_replicas=1, max_replicas=3)
    with EmbeddedPlatform(tmp_path / "state", [decl], s3=s3_server.env()) as platform:
        extras = platform.function("sample")["vsearch"]
        first = extras["replicas"][0]
        assert first["from_zygote"] is True, extras
        assert first["startup"]["from_zygote"] is True
        zygote = extras["zygote"]
        assert zygote["state"] == "ready" and zygote["rss_bytes"] > 0 and zygote["pss_bytes"] > 0
        assert zygote["pss_bytes"] <= zygote["rss_bytes"]
        # Status calls in a row reuse the warm zygote's figures instead of walking its mappings.
        reads: list[int] = []
        real_rollup = replica_pool.smaps_rollup

        def counted(pid: int) -> tuple[int, int]:
            reads.append(pid)
            return real_rollup(pid)

        monkeypatch.setattr(replica_pool, "smaps_rollup", counted)
        for _ in range(3):
            again = platform.function("sample")["vsearch"]["zygote"]
            assert (again["rss_bytes"], again["pss_bytes"]) == (
                zygote["rss_bytes"],
                zygote["pss_bytes"],
            )
        assert reads == []
        os.killpg(zygote["pid"], signal.SIGKILL)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            now = platform.function("sample")["vsearch"]["zygote"]
            if now["state"] == "ready" and now["pid"] != zygote["pid"]:
                break
            time.sleep(0.1)
        assert now["starts"] == 2 and now["state"] == "ready", now
        # A new zygote is a new process: its own figures, read afresh.
        assert now["pid"] in reads and now["rss_bytes"] > 0
        # The replica forked by the dead zygote still serves; a new one forks from the new one.
        platform.scale("sample", 2)
        replicas = platform.function("sample")["vsearch"]["replicas"]
        assert len(replicas) == 2 and all(r["from_zygote"] for r in replicas), replicas
        body = {"request_id": "z-2", "input": {}, "config": {"mode": "echo"}}
        assert platform.invoke("sample", body, timeout_s=30).status_code == 200


def test_without_zygotes_replicas_start_fresh(
    tmp_path: Path, s3_server: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("VSEARCH_ZYGOTE", "0")
    decl = FunctionDeclaration(name="sample", module=MODULE, min_replicas=1)
    with EmbeddedPlatform(tmp_path / "state", [decl], s3=s3_server.env()) as platform:
        extras = platform.function("sample")["vsearch"]
        assert extras["zygote"] is None
        assert extras["replicas"][0]["from_zygote"] is False
        body = {"request_id": "z-4", "input": {}, "config": {"mode": "gc"}}
        answer = platform.invoke("sample", body, timeout_s=30).json()["outputs"]
        assert answer["frozen"] == 0  # nothing to share without a fork


def test_without_fork_replicas_start_fresh_and_say_why(
    tmp_path: Path, s3_server: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delattr(os, "fork")  # as on a platform without fork
    decl = FunctionDeclaration(name="sample", module=MODULE, min_replicas=1)
    with EmbeddedPlatform(tmp_path / "state", [decl], s3=s3_server.env()) as platform:
        extras = platform.function("sample")["vsearch"]
        assert extras["zygote"]["state"] == "given_up"
        assert "fork" in extras["zygote"]["given_up"]
        assert extras["replicas"][0]["from_zygote"] is False
        body = {"request_id": "z-3", "input": {}, "config": {"mode": "echo"}}
        assert platform.invoke("sample", body, timeout_s=30).status_code == 200


def test_a_forked_replica_takes_the_malloc_settings_of_its_own_env(
    tmp_path: Path, s3_server: Any
) -> None:
    # glibc reads MALLOC_* at exec, which a forked replica never does: the zygote here starts
    # without them, and only the replica that asks for a 64 MiB mmap threshold must keep a
    # 40 MiB block in its heap (transcribe's per-call buffers, manifests/functions.yaml).
    from base import malloc

    if malloc.mmapped_blocks() is None:
        pytest.skip("mallinfo2 is glibc's (>= 2.33); this libc has none")
    zygote = _zygote(tmp_path, s3_server)
    body = {"request_id": "z-malloc", "input": {}, "config": {"mode": "malloc"}}
    try:
        mmapped = {}
        for label, extra in (("tuned", {"MALLOC_MMAP_THRESHOLD_": str(64 << 20)}), ("plain", {})):
            env = {**s3_server.env(), "REPLICA_NAME": f"sample-{label}", **extra}
            replica = ForkedProcess(zygote, MODULE, env, log_path=tmp_path / f"{label}.log")
            replica.start()
            try:
                replica.wait_ready(30)
                response = httpx.post(replica.url + "/", json=body, timeout=30)
                assert response.status_code == 200, response.text
                mmapped[label] = response.json()["outputs"]["mmapped"]
            finally:
                replica.stop()
        assert mmapped == {"tuned": False, "plain": True}
    finally:
        zygote.stop()
