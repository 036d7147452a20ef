"""Per-replica cgroups against the real kernel (skipped where this host does not permit them)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness.embedded.cgroups import CgroupManager, SampledGroup, Support, detect, run_name
from harness.embedded.function_process import JOIN_CGROUPS

MiB = 1 << 20
SUPPORT = detect()
needs_cgroups = pytest.mark.skipif(
    not SUPPORT.enforced, reason=f"cgroups not usable here: {SUPPORT.reason}"
)


@pytest.fixture
def manager() -> Iterator[CgroupManager]:
    mgr = CgroupManager(run_name())
    yield mgr
    mgr.cleanup()


def _python_in(group_procs: list[str], code: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [*JOIN_CGROUPS, *group_procs, "--", sys.executable, "-c", code],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


@needs_cgroups
def test_memory_limit_is_enforced_and_the_oom_kill_counted(manager: CgroupManager) -> None:
    group = manager.create("hog-1", 64 * MiB)
    # Touch every page: a lazily zeroed allocation would never reach the limit.
    proc = _python_in(group.procs_files(), "x = [b'\\x01' * (8 << 20) for _ in range(25)]")

    assert proc.wait(30) == -9
    time.sleep(0.05)  # the OOM counter may trail the kill
    stats = group.stats()
    assert stats.oom_kills == 1
    assert 0.9 * 64 * MiB <= stats.peak_bytes <= 64 * MiB
    assert stats.cpu_s > 0
    group.remove()
    assert all(not Path(p).exists() for p in group.procs_files())


@needs_cgroups
def test_usage_within_the_limit_is_measured(manager: CgroupManager) -> None:
    group = manager.create("fit-1", 256 * MiB, cpu_limit=0.5)
    proc = _python_in(group.procs_files(), "x = b'\\x01' * (96 << 20)")

    assert proc.wait(30) == 0, proc.stderr.read() if proc.stderr else ""
    stats = group.stats()
    assert stats.oom_kills == 0
    assert 96 * MiB <= stats.peak_bytes < 256 * MiB
    assert stats.cpu_s > 0.01


@needs_cgroups
def test_remove_kills_what_is_left_inside(manager: CgroupManager) -> None:
    group = manager.create("stuck-1", 128 * MiB)
    proc = _python_in(group.procs_files(), "import time; time.sleep(60)")
    deadline = time.monotonic() + 5
    while not Path(group.procs_files()[0]).read_text().strip():
        assert time.monotonic() < deadline, "the process never joined its group"
        time.sleep(0.01)

    group.remove()

    assert proc.wait(5) == -9
    assert all(not Path(p).exists() for p in group.procs_files())


def test_without_permission_it_degrades_with_a_reason(tmp_path: Path) -> None:
    # A memory hierarchy "mounted" on a read-only file system: group creation must fail.
    mountinfo = tmp_path / "mountinfo"
    mountinfo.write_text("35 31 0:32 / /proc/sys rw,relatime - cgroup cgroup rw,memory\n")
    proc_cgroup = tmp_path / "cgroup"
    proc_cgroup.write_text("4:memory:/\n")

    support = detect(mountinfo, proc_cgroup)

    assert not support.enforced
    assert "cannot create /proc/sys/vsearch" in support.reason
    mgr = CgroupManager(run_name(), support=support)
    group = mgr.create("echo-1", 64 * MiB)
    assert isinstance(group, SampledGroup) and not group.enforced


def test_sampled_group_measures_a_process_tree() -> None:
    group = CgroupManager(run_name(), enforce=False).create("echo-1", 64 * MiB)
    proc = subprocess.Popen(
        [sys.executable, "-c", "x = b'\\x01' * (48 << 20); import time; time.sleep(30)"]
    )
    try:
        group.watch(proc.pid)
        deadline = time.monotonic() + 10
        while group.stats().memory_bytes < 48 * MiB:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        assert group.stats().peak_bytes >= 48 * MiB
        assert group.memory_limit_bytes is None
    finally:
        proc.kill()
        proc.wait()


def test_no_memory_hierarchy_is_reported(tmp_path: Path) -> None:
    empty = tmp_path / "mountinfo"
    empty.write_text("")
    support = detect(empty, tmp_path / "missing")
    assert not support.enforced
    assert "no cgroup hierarchy with a memory controller" in support.reason


def _fake_v2(tmp_path: Path, controllers: str = "cpu memory") -> tuple[Path, Support]:
    """A simulated v2 hierarchy with this process in `/job`: its own cgroup and the detection."""
    root = tmp_path / "unified"
    own = root / "job"
    own.mkdir(parents=True)
    (own / "cgroup.controllers").write_text(f"{controllers}\n")
    mountinfo = tmp_path / "mountinfo"
    mountinfo.write_text(f"41 31 0:38 / {root} rw,relatime - cgroup2 cgroup2 rw\n")
    proc_cgroup = tmp_path / "cgroup"
    proc_cgroup.write_text("0::/job\n")
    return own, detect(mountinfo, proc_cgroup)


def test_v2_files_are_written_and_read(tmp_path: Path) -> None:
    """cgroup v2 wiring on a simulated hierarchy (this host's v2 has no memory controller)."""
    own, support = _fake_v2(tmp_path, "cpu io memory pids")

    assert support.version == 2, support.reason
    assert support.bases == {"unified": own / "vsearch"}
    assert "+memory" in (own / "cgroup.subtree_control").read_text()
    group = CgroupManager(run_name(), support=support).create("echo-1", 64 * MiB, 0.5)
    path = Path(group.procs_files()[0]).parent
    assert (path / "memory.max").read_text() == str(64 * MiB)
    assert (path / "cpu.max").read_text() == "50000 100000"
    (path / "memory.current").write_text("1000\n")
    (path / "memory.peak").write_text("5000\n")
    (path / "memory.events").write_text("low 0\nhigh 0\nmax 3\noom 1\noom_kill 1\n")
    (path / "cpu.stat").write_text("usage_usec 2500000\nuser_usec 2000000\n")
    stats = group.stats()
    assert (stats.memory_bytes, stats.peak_bytes, stats.oom_kills) == (1000, 5000, 1)
    assert stats.cpu_s == 2.5


@needs_cgroups
def test_a_weighted_group_gets_a_cpu_weight_of_its_own(manager: CgroupManager) -> None:
    """Request-age priority (priority.py) needs each replica in the cpu hierarchy, quota or not."""
    if SUPPORT.version == 1 and "cpu" not in SUPPORT.bases:
        pytest.skip("no writable v1 cpu hierarchy here")
    plain = manager.create("plain-1", 64 * MiB)
    weighted = manager.create("weighted-1", 64 * MiB, cpu_shares=True)
    weighted.set_cpu_shares(8192)
    if SUPPORT.version == 1:
        cpu_base = SUPPORT.bases["cpu"]
        assert not (cpu_base / manager.run / "plain-1").exists(), plain
        assert (cpu_base / manager.run / "weighted-1" / "cpu.shares").read_text().strip() == "8192"
        assert str(cpu_base / manager.run / "weighted-1" / "cgroup.procs") in (
            weighted.procs_files()
        ), "the replica must join its cpu group, or the weight moves nothing"
        manager.set_run_cpu_shares(3072)
        assert (cpu_base / manager.run / "cpu.shares").read_text().strip() == "3072"
        assert int((cpu_base / "cpu.shares").read_text()) >= 3072, "the top weighs as its runs"
    else:
        weight = Path(weighted.procs_files()[0]).parent / "cpu.weight"
        assert weight.read_text().strip() == "800"
    plain.remove()
    weighted.remove()


def test_v2_weights_are_scaled_to_cpu_weight(tmp_path: Path) -> None:
    own, support = _fake_v2(tmp_path)
    manager = CgroupManager(run_name(), support=support)
    group = manager.create("echo-1", 64 * MiB, cpu_shares=True)
    path = Path(group.procs_files()[0]).parent
    (path / "cpu.weight").write_text("100\n")  # the kernel's file, default weight
    group.set_cpu_shares(8192)
    assert (path / "cpu.weight").read_text() == "800"
    group.set_cpu_shares(1 << 30)
    assert (path / "cpu.weight").read_text() == "10000", "clamped to the kernel's range"
    (path.parent / "cpu.weight").write_text("100\n")
    (own / "vsearch" / "cpu.weight").write_text("100\n")
    manager.set_run_cpu_shares(2048)
    assert (path.parent / "cpu.weight").read_text() == "200"
    assert (own / "vsearch" / "cpu.weight").read_text() == "200"


# -- the platform's own processes (weigh_services) -------------------------------------------


def _cpu_line(pid: int) -> str:
    lines = Path(f"/proc/{pid}/cgroup").read_text().splitlines()
    return next(line for line in lines if line.split(":")[1] in ("cpu", "cpu,cpuacct", ""))


def _weight(group: Path) -> str:
    name = "cpu.shares" if SUPPORT.version == 1 else "cpu.weight"
    return (group / name).read_text().strip()


needs_cpu_hierarchy = pytest.mark.skipif(
    not SUPPORT.enforced or (SUPPORT.version == 1 and "cpu" not in SUPPORT.bases),
    reason=f"no writable cpu hierarchy here ({SUPPORT.reason})",
)


@needs_cpu_hierarchy
def test_services_are_weighted_then_moved_back_never_killed(manager: CgroupManager) -> None:
    children = [subprocess.Popen(["sleep", "60"]) for _ in range(2)]
    try:
        before = [_cpu_line(c.pid) for c in children]
        group = manager.weigh_services([c.pid for c in children], 8192)
        assert group is not None and group.name == "services"
        assert {int(p) for p in (group / "cgroup.procs").read_text().split()} == {
            c.pid for c in children
        }
        assert _weight(group) == ("8192" if SUPPORT.version == 1 else "800")
        assert all(_cpu_line(c.pid).endswith(f"/{manager.run}/services") for c in children)

        manager.cleanup()

        assert all(c.poll() is None for c in children), "the platform's processes live on"
        assert [_cpu_line(c.pid) for c in children] == before, "back where they came from"
        assert not group.exists()
    finally:
        for child in children:
            child.kill()
            child.wait()


@needs_cpu_hierarchy
def test_a_second_platform_in_a_weighted_process_puts_its_groups_beside_the_first() -> None:
    """The process itself moves (the gateway runs in it); a second manager in it must not build
    its groups inside the first run's services group, and each cleanup moves it out again."""
    code = """
import json, os
from harness.embedded.cgroups import CgroupManager, run_name
def where():
    lines = open("/proc/self/cgroup").read().splitlines()
    return next(l for l in lines if l.split(":")[1] in ("cpu", "cpu,cpuacct", ""))
before = where()
first = CgroupManager(run_name())
first.weigh_services([os.getpid()], 8192)
inside = where()
second = CgroupManager(run_name())
second.weigh_services([os.getpid()], 8192)
print(json.dumps({
    "before": before, "inside": inside, "inside_second": where(),
    "bases": [str(first.support.bases), str(second.support.bases)],
    "runs": [first.run, second.run],
}))
first.cleanup()
after_first = where()
second.cleanup()
print(json.dumps({"after_first": after_first, "after": where()}))
"""
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    seen, after = (json.loads(line) for line in done.stdout.splitlines())
    first_run, second_run = seen["runs"]
    assert seen["inside"].endswith(f"/{first_run}/services")
    assert seen["inside_second"].endswith(f"/{second_run}/services")
    assert seen["bases"][0] == seen["bases"][1], "the second run's groups sit beside the first's"
    assert after["after_first"] == seen["inside_second"], "the first leaves the second's alone"
    assert after["after"] == seen["before"]


def test_a_process_in_a_services_group_counts_as_where_it_came_from(tmp_path: Path) -> None:
    mountinfo = tmp_path / "mountinfo"
    mountinfo.write_text(
        f"35 31 0:32 / {tmp_path / 'memory'} rw,relatime - cgroup cgroup rw,memory\n"
        f"36 31 0:33 / {tmp_path / 'cpu'} rw,relatime - cgroup cgroup rw,cpu\n"
    )
    proc_cgroup = tmp_path / "cgroup"
    proc_cgroup.write_text("4:memory:/job\n1:cpu:/job/vsearch/77-abcdef/services\n")
    for controller in ("memory", "cpu"):
        (tmp_path / controller / "job").mkdir(parents=True)

    support = detect(mountinfo, proc_cgroup)

    assert support.bases["cpu"] == tmp_path / "cpu" / "job" / "vsearch"
    assert support.bases["memory"] == tmp_path / "memory" / "job" / "vsearch"


def test_v2_services_are_weighted_as_cpu_weight(tmp_path: Path) -> None:
    own, support = _fake_v2(tmp_path)
    manager = CgroupManager(run_name(), support=support)
    services = own / "vsearch" / manager.run / "services"
    services.mkdir(parents=True)
    (services / "cpu.weight").write_text("100\n")  # the kernel's file, default weight

    assert manager.weigh_services([4242], 8192) == services

    assert (services / "cpu.weight").read_text() == "800"
    assert (services / "cgroup.procs").read_text() == "4242"
    assert "cpu" in (own / "vsearch" / manager.run / "cgroup.subtree_control").read_text()
