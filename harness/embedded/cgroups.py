"""Per-replica resource control: one cgroup per function replica (cgroup v1 or v2).

A replica's cgroup enforces the function's memory limit (and CPU quota when declared) the way a
container runtime would, and it is where the platform reads the replica's true peak memory,
CPU time and OOM kills from: those cover the replica and every child it spawned (ffmpeg).

Groups are created below the cgroup this process already runs in (`<own>/vsearch/<run>/...`),
never at the hierarchy's root: whatever limits a CI job or systemd slice put on the platform
then bound its replicas too. In a container (own cgroup "/") this is
`/sys/fs/cgroup/memory/vsearch/<run>/<replica>` on v1.

Without the right (not root, read-only cgroupfs, no memory controller) everything degrades to
`SampledGroup`: replicas still run, unlimited, and their usage is sampled with psutil; the
platform then reports `limits_enforced: false` with the reason.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Protocol

import psutil

#: The directory below each hierarchy's own cgroup that holds every run's groups.
TOP = "vsearch"
#: The group in each run that holds the platform's own processes (gateway, S3 server).
SERVICES = "services"
_CFS_PERIOD_US = 100_000
#: v1 cpu.shares bounds and default; v2's cpu.weight is these scaled by 100/1024 (1..10000).
DEFAULT_SHARES = 1024
_MIN_SHARES, _MAX_SHARES = 2, 262_144
_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")


class CgroupError(RuntimeError):
    pass


@dataclass(frozen=True)
class GroupStats:
    memory_bytes: int
    peak_bytes: int
    cpu_s: float
    oom_kills: int


class ReplicaGroup(Protocol):
    """What the replica manager needs from a group, enforced or not."""

    name: str
    enforced: bool
    memory_limit_bytes: int | None

    def procs_files(self) -> list[str]: ...

    def watch(self, pid: int) -> None: ...

    def stats(self) -> GroupStats: ...

    def oom_kills(self) -> int: ...

    def reset_peak(self) -> None:
        """Start a new high-water mark at the current usage (a new measurement window)."""
        ...

    def set_cpu_shares(self, shares: int) -> None:
        """The group's CPU weight against its siblings, in v1 cpu.shares units (1024 = default)."""
        ...

    def remove(self) -> None: ...


# -- discovery -------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Mount:
    path: Path
    root: str
    fstype: str
    options: frozenset[str]


def _mounts(mountinfo: Path) -> list[_Mount]:
    mounts = []
    try:
        lines = mountinfo.read_text().splitlines()
    except OSError:
        return []
    for line in lines:
        pre, _, post = line.partition(" - ")
        fields, tail = pre.split(), post.split()
        if len(fields) < 5 or len(tail) < 3 or tail[0] not in ("cgroup", "cgroup2"):
            continue
        options = frozenset(tail[2].split(",")) | frozenset(fields[5].split(","))
        mounts.append(_Mount(Path(fields[4]), fields[3], tail[0], options))
    return mounts


def _own_paths(proc_cgroup: Path) -> dict[str, str]:
    """Controller (or "" for v2) -> this process's cgroup path in that hierarchy.

    A process in a run's services group (`.../vsearch/<run>/services`) counts as being where it
    was before: a second platform in it puts its groups beside the first's, not inside them.
    """
    paths: dict[str, str] = {}
    try:
        lines = proc_cgroup.read_text().splitlines()
    except OSError:
        return paths
    for line in lines:
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        for controller in parts[1].split(",") if parts[1] else [""]:
            paths[controller] = _outside_services(parts[2])
    return paths


def _outside_services(path: str) -> str:
    parts = path.split("/")
    if len(parts) >= 3 and parts[-1] == SERVICES and parts[-3] == TOP:
        return "/".join(parts[:-3]) or "/"
    return path


def _below(mount: _Mount, own: str) -> Path:
    # In a container the mount's root is the container's own cgroup, which /proc/self/cgroup
    # names by its full path: strip that prefix so the path resolves inside the mount.
    if mount.root != "/" and own.startswith(mount.root):
        own = own[len(mount.root) :]
    return mount.path / own.lstrip("/")


@dataclass(frozen=True)
class Support:
    """What this host allows: which cgroup version manages memory, and where our groups go."""

    version: Literal[1, 2] | None
    reason: str
    #: v1: controller -> base dir ("memory", "cpu", "cpuacct"); v2: {"unified": base dir}.
    bases: dict[str, Path]
    #: The same keys -> the hierarchy's mount, to find where another process's cgroup is.
    mounts: dict[str, _Mount] = field(default_factory=dict)

    @property
    def enforced(self) -> bool:
        return self.version is not None


def detect(
    mountinfo: Path = Path("/proc/self/mountinfo"), proc_cgroup: Path = Path("/proc/self/cgroup")
) -> Support:
    """Find the hierarchy that has a memory controller and check we may create groups in it."""
    mounts, own = _mounts(mountinfo), _own_paths(proc_cgroup)
    v2 = next((m for m in mounts if m.fstype == "cgroup2"), None)
    if v2 is not None:
        base = _below(v2, own.get("", "/"))
        controllers = _read(base / "cgroup.controllers").split()
        if "memory" in controllers:
            return _probe_v2(base, v2, controllers)
    bases: dict[str, Path] = {}
    found: dict[str, _Mount] = {}
    for controller in ("memory", "cpu", "cpuacct"):
        mount = next((m for m in mounts if m.fstype == "cgroup" and controller in m.options), None)
        if mount is not None:
            bases[controller] = _below(mount, own.get(controller, "/")) / TOP
            found[controller] = mount
    if "memory" not in bases:
        return Support(None, "no cgroup hierarchy with a memory controller is mounted", {})
    problem = _writable(bases["memory"])
    if problem:
        return Support(None, f"cgroup v1 memory controller not usable: {problem}", {})
    # CPU accounting and quotas are extras: without them memory limits still hold.
    for controller in ("cpu", "cpuacct"):
        if controller in bases and _writable(bases[controller]):
            del bases[controller]
    return Support(1, "cgroup v1", bases, {c: found[c] for c in bases})


def _probe_v2(own: Path, mount: _Mount, controllers: list[str]) -> Support:
    root = mount.path
    wanted = [c for c in ("memory", "cpu") if c in controllers]
    problems = []
    # Below our own cgroup first (stays inside our limits); that fails when it holds processes
    # (v2's no-internal-processes rule), so then below the root cgroup, which is exempt.
    for parent in dict.fromkeys([own, root]):
        try:
            _enable_v2(parent, wanted)
        except OSError as exc:
            problems.append(f"cannot enable {'+'.join(wanted)} in {parent}: {exc.strerror}")
            continue
        base = parent / TOP
        problem = _writable(base)
        if problem is None:
            try:
                _enable_v2(base, wanted)
            except OSError as exc:
                problem = f"cannot enable controllers in {base}: {exc.strerror}"
        if problem is None:
            where = "" if parent == own else f" (below the root: {own} holds processes)"
            return Support(2, f"cgroup v2{where}", {"unified": base}, {"unified": mount})
        problems.append(problem)
    return Support(
        None,
        f"cgroup v2 not usable: {'; '.join(problems)} "
        "(run as root, or in a delegated cgroup of its own)",
        {},
    )


def _writable(base: Path) -> str | None:
    if os.geteuid() != 0 and not os.access(base.parent, os.W_OK):
        return f"not root and {base.parent} is not writable"
    try:
        base.mkdir(exist_ok=True)
    except OSError as exc:
        return f"cannot create {base}: {exc.strerror or exc}"
    return None


def _subtree(group: Path) -> list[str]:
    # The kernel lists "cpu memory"; tolerate the "+cpu" form of what was written, too.
    return [c.lstrip("+") for c in _read(group / "cgroup.subtree_control").split()]


def _v2_run_dir(base: Path, run: str) -> tuple[Path, list[str]]:
    """Create the run's directory below `base` and pass every controller `base` has on to its
    groups (v2 hands a controller down one level at a time). Returns it and those controllers."""
    run_dir = base / run
    run_dir.mkdir(exist_ok=True)
    controllers = _subtree(base)
    _enable_v2(run_dir, controllers)
    return run_dir, controllers


def _enable_v2(group: Path, controllers: list[str]) -> None:
    enabled = _subtree(group)
    missing = [c for c in controllers if c not in enabled]
    if missing:
        (group / "cgroup.subtree_control").write_text(" ".join(f"+{c}" for c in missing))


def _write_shares(group: Path, version: int, shares: int) -> None:
    shares = max(_MIN_SHARES, min(_MAX_SHARES, int(shares)))
    if version == 1:
        target, value = group / "cpu.shares", shares
    else:
        target, value = group / "cpu.weight", max(1, min(10_000, round(shares * 100 / 1024)))
    if not target.exists():
        return  # no cpu controller here: the weight is a wish, never a failure
    try:
        target.write_text(str(value))
    except OSError as exc:
        raise CgroupError(f"cannot set {target}: {exc.strerror or exc}") from exc


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except OSError:
        return ""


def _read_int(path: Path) -> int | None:
    text = _read(path).strip()
    return int(text) if text.isdigit() else None


def _read_key(path: Path, key: str) -> int | None:
    """A `key value` line from files like memory.oom_control, memory.events or cpu.stat."""
    for line in _read(path).splitlines():
        name, _, value = line.partition(" ")
        if name == key and value.strip().isdigit():
            return int(value)
    return None


def _pids(procs: Path) -> list[int]:
    return [int(p) for p in _read(procs).split() if p.isdigit()]


def _kill_and_rmdir(group: Path, procs: Path, timeout_s: float = 5.0) -> None:
    """Empty a group (SIGKILL whatever is left in it) and remove the directory."""
    if not group.exists():
        return
    kill_file = group / "cgroup.kill"
    deadline = time.monotonic() + timeout_s
    while True:
        pids = _pids(procs)
        if pids and kill_file.exists():
            with contextlib.suppress(OSError):
                kill_file.write_text("1")
        for pid in pids:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        try:
            group.rmdir()
            return
        except FileNotFoundError:
            return
        except OSError as exc:
            # EBUSY while killed processes are still exiting; anything else will not heal.
            if exc.errno != errno.EBUSY or time.monotonic() > deadline:
                raise CgroupError(f"cannot remove {group}: {exc.strerror}") from exc
        time.sleep(0.02)


# -- groups ----------------------------------------------------------------------------------


class V1Group:
    """One replica's groups in the v1 memory, cpu and cpuacct hierarchies."""

    enforced = True

    def __init__(
        self,
        name: str,
        dirs: dict[str, Path],
        memory_limit_bytes: int,
        cpu_limit: float | None,
    ) -> None:
        self.name = name
        self.dirs = dirs
        self.memory_limit_bytes: int | None = memory_limit_bytes
        self.cpu_limit = cpu_limit

    @classmethod
    def create(
        cls,
        bases: dict[str, Path],
        run: str,
        name: str,
        memory_limit_bytes: int,
        cpu_limit: float | None,
        cpu_shares: bool = False,
    ) -> V1Group:
        dirs: dict[str, Path] = {}
        # cpu and cpuacct are often co-mounted (cpu,cpuacct): one directory serves both.
        seen: dict[Path, Path] = {}
        for controller, base in bases.items():
            if controller == "cpu" and cpu_limit is None and not cpu_shares:
                continue
            group = base / run / name
            real = group.parent.resolve() / name
            if real in seen:
                dirs[controller] = seen[real]
                continue
            group.mkdir(parents=True, exist_ok=True)
            dirs[controller] = seen[real] = group
        self = cls(name, dirs, memory_limit_bytes, cpu_limit)
        try:
            memory = dirs["memory"]
            (memory / "memory.limit_in_bytes").write_text(str(memory_limit_bytes))
            # Without memsw a replica could page out past its limit where swap exists.
            memsw = memory / "memory.memsw.limit_in_bytes"
            if memsw.exists():
                memsw.write_text(str(memory_limit_bytes))
            if cpu_limit is not None and "cpu" in dirs:
                (dirs["cpu"] / "cpu.cfs_period_us").write_text(str(_CFS_PERIOD_US))
                quota = max(1000, int(cpu_limit * _CFS_PERIOD_US))
                (dirs["cpu"] / "cpu.cfs_quota_us").write_text(str(quota))
        except OSError as exc:
            self.remove()
            raise CgroupError(f"cannot configure cgroup {name}: {exc.strerror or exc}") from exc
        return self

    def procs_files(self) -> list[str]:
        return sorted({str(d / "cgroup.procs") for d in self.dirs.values()})

    def watch(self, pid: int) -> None:
        """The replica joins its groups itself before exec (see FunctionProcess)."""

    def stats(self) -> GroupStats:
        memory = self.dirs["memory"]
        usage_ns = (
            _read_int(self.dirs["cpuacct"] / "cpuacct.usage") if "cpuacct" in self.dirs else 0
        )
        return GroupStats(
            memory_bytes=_read_int(memory / "memory.usage_in_bytes") or 0,
            peak_bytes=_read_int(memory / "memory.max_usage_in_bytes") or 0,
            cpu_s=(usage_ns or 0) / 1e9,
            oom_kills=self.oom_kills(),
        )

    def oom_kills(self) -> int:
        return _read_key(self.dirs["memory"] / "memory.oom_control", "oom_kill") or 0

    def reset_peak(self) -> None:
        # v1 documents writing 0 to max_usage_in_bytes as "reset to the current usage".
        (self.dirs["memory"] / "memory.max_usage_in_bytes").write_text("0")

    def set_cpu_shares(self, shares: int) -> None:
        if "cpu" in self.dirs:
            _write_shares(self.dirs["cpu"], 1, shares)

    def remove(self) -> None:
        errors = []
        for group in {d.resolve() for d in self.dirs.values() if d.exists()}:
            try:
                _kill_and_rmdir(group, group / "cgroup.procs")
            except CgroupError as exc:
                errors.append(str(exc))
        if errors:
            raise CgroupError("; ".join(errors))


class V2Group:
    enforced = True

    def __init__(self, name: str, path: Path, memory_limit_bytes: int) -> None:
        self.name = name
        self.path = path
        self.memory_limit_bytes: int | None = memory_limit_bytes
        self._sampled_peak = 0
        #: After a reset the kernel's memory.peak still holds the old maximum (a write resets it
        #: only for the writing file descriptor, Linux 6.12+), so sampling takes over.
        self._sampled_only = False

    @classmethod
    def create(
        cls, base: Path, run: str, name: str, memory_limit_bytes: int, cpu_limit: float | None
    ) -> V2Group:
        # v2 enables the cpu controller for every group it can, so cpu.weight is always there.
        group = base / run / name
        try:
            _, controllers = _v2_run_dir(base, run)
            group.mkdir(exist_ok=True)
        except OSError as exc:
            raise CgroupError(f"cannot create cgroup {group}: {exc.strerror or exc}") from exc
        self = cls(name, group, memory_limit_bytes)
        try:
            (group / "memory.max").write_text(str(memory_limit_bytes))
            swap = group / "memory.swap.max"
            if swap.exists():
                swap.write_text("0")
            if cpu_limit is not None and "cpu" in controllers:
                quota = max(1000, int(cpu_limit * _CFS_PERIOD_US))
                (group / "cpu.max").write_text(f"{quota} {_CFS_PERIOD_US}")
        except OSError as exc:
            self.remove()
            raise CgroupError(f"cannot configure cgroup {name}: {exc.strerror or exc}") from exc
        return self

    def procs_files(self) -> list[str]:
        return [str(self.path / "cgroup.procs")]

    def watch(self, pid: int) -> None:
        """The replica joins its group itself before exec (see FunctionProcess)."""

    def stats(self) -> GroupStats:
        current = _read_int(self.path / "memory.current") or 0
        # memory.peak exists from Linux 5.19; before that the sampled maximum is the best we have.
        peak = None if self._sampled_only else _read_int(self.path / "memory.peak")
        self._sampled_peak = max(self._sampled_peak, current)
        usage_us = _read_key(self.path / "cpu.stat", "usage_usec") or 0
        return GroupStats(
            memory_bytes=current,
            peak_bytes=peak if peak is not None else self._sampled_peak,
            cpu_s=usage_us / 1e6,
            oom_kills=self.oom_kills(),
        )

    def oom_kills(self) -> int:
        return _read_key(self.path / "memory.events", "oom_kill") or 0

    def reset_peak(self) -> None:
        self._sampled_only = True
        self._sampled_peak = _read_int(self.path / "memory.current") or 0

    def set_cpu_shares(self, shares: int) -> None:
        _write_shares(self.path, 2, shares)

    def remove(self) -> None:
        _kill_and_rmdir(self.path, self.path / "cgroup.procs")


class SampledGroup:
    """No enforcement: the replica's process tree is sampled with psutil instead."""

    enforced = False
    memory_limit_bytes: int | None = None

    def __init__(self, name: str) -> None:
        self.name = name
        self._proc: psutil.Process | None = None
        self._peak = 0
        self._cpu_s = 0.0

    def procs_files(self) -> list[str]:
        return []

    def watch(self, pid: int) -> None:
        with contextlib.suppress(psutil.Error):
            self._proc = psutil.Process(pid)

    def stats(self) -> GroupStats:
        rss, cpu = 0, 0.0
        if self._proc is not None:
            with contextlib.suppress(psutil.Error):
                for proc in [self._proc, *self._proc.children(recursive=True)]:
                    with contextlib.suppress(psutil.Error):
                        rss += proc.memory_info().rss
                        times = proc.cpu_times()
                        cpu += times.user + times.system
        self._peak = max(self._peak, rss)
        # Children that exited take their CPU time with them: never report a decrease.
        self._cpu_s = max(self._cpu_s, cpu)
        return GroupStats(memory_bytes=rss, peak_bytes=self._peak, cpu_s=self._cpu_s, oom_kills=0)

    def oom_kills(self) -> int:
        return 0

    def reset_peak(self) -> None:
        self._peak = 0
        self._peak = self.stats().memory_bytes

    def set_cpu_shares(self, shares: int) -> None:
        """No group, no weight: without cgroups only the gateway's queue order is by age."""

    def remove(self) -> None:
        self._proc = None


# -- the per-run manager ---------------------------------------------------------------------


class CgroupManager:
    """Creates and removes the replica groups of one platform run."""

    def __init__(self, run: str, *, enforce: bool = True, support: Support | None = None) -> None:
        if not _SAFE_NAME.match(run):
            raise ValueError(f"unsafe run name: {run!r}")
        self.run = run
        if not enforce:
            support = Support(None, "disabled by configuration", {})
        self.support = support if support is not None else detect()
        #: The services group (weigh_services) and where each process in it came from.
        self._services: Path | None = None
        self._origins: dict[int, Path] = {}
        if self.support.enforced:
            _sweep_stale(self.support)

    @property
    def enforced(self) -> bool:
        return self.support.enforced

    @property
    def reason(self) -> str:
        return self.support.reason

    @property
    def version(self) -> int | None:
        return self.support.version

    def create(
        self,
        name: str,
        memory_limit_bytes: int,
        cpu_limit: float | None = None,
        *,
        cpu_shares: bool = False,
    ) -> ReplicaGroup:
        """cpu_shares: give the group a CPU weight of its own (v1 puts it in the cpu hierarchy
        even without a quota), so set_cpu_shares can favour it over its siblings."""
        if not _SAFE_NAME.match(name):
            raise ValueError(f"unsafe replica name: {name!r}")
        if self.support.version == 1:
            return V1Group.create(
                self.support.bases, self.run, name, memory_limit_bytes, cpu_limit, cpu_shares
            )
        if self.support.version == 2:
            return V2Group.create(
                self.support.bases["unified"], self.run, name, memory_limit_bytes, cpu_limit
            )
        return SampledGroup(name)

    def _cpu_base(self) -> tuple[Path, int, str] | None:
        """The cpu hierarchy's base, its version and the weight file's name, if there is one."""
        if self.support.version == 1 and "cpu" in self.support.bases:
            return self.support.bases["cpu"], 1, "cpu.shares"
        if self.support.version == 2:
            return self.support.bases["unified"], 2, "cpu.weight"
        return None

    def set_run_cpu_shares(self, shares: int) -> None:
        """Weigh this run's group (and the shared top group above every run) against the rest of
        the host.

        Grouped under one run directory, busy replicas would weigh as one process against the
        gateway, the S3 server and other work on the host, where ungrouped each weighs as one.
        The caller passes DEFAULT_SHARES per busy replica; the top group weighs as the sum of
        the runs below it (concurrent runs each recompute it, so the last write holds).
        """
        cpu = self._cpu_base()
        if cpu is None:
            return
        base, version, name = cpu
        run_dir = base / self.run
        if not run_dir.is_dir():
            return
        _write_shares(run_dir, version, shares)
        total = 0
        for child in base.glob("*/"):
            value = _read_int(child / name)
            if value is not None:
                total += value if version == 1 else value * 1024 // 100
        _write_shares(base, version, max(total, DEFAULT_SHARES))

    def weigh_services(self, pids: list[int], shares: int) -> Path | None:
        """Move the platform's own processes (the gateway's, the S3 server) into one cpu group of
        this run, weighted `shares` against the replica groups beside it.

        Every call of every request passes through them. Left where they were, they weigh as
        one process (one autogroup, one slice) against the run's group, which weighs as all its
        busy replicas: in a burst they waited 5-10x longer for a CPU than they ran, and the
        oldest request waited on them. Only the cpu hierarchy: no memory limit applies. Children
        started later inherit the group; replicas and zygotes move to their own at once. Returns
        the group, or None where there is no cpu hierarchy to use.
        """
        cpu = self._cpu_base()
        if cpu is None:
            return None
        base, version, _ = cpu
        group = base / self.run / SERVICES
        try:
            if version == 2:
                _v2_run_dir(base, self.run)
            group.mkdir(parents=True, exist_ok=True)
            _write_shares(group, version, shares)
        except OSError as exc:
            raise CgroupError(f"cannot create {group}: {exc.strerror or exc}") from exc
        self._services = group
        for pid in pids:
            origin = self._cgroup_of(pid)
            try:
                (group / "cgroup.procs").write_text(str(pid))
            except OSError as exc:
                raise CgroupError(f"cannot move {pid} to {group}: {exc.strerror or exc}") from exc
            if origin is not None:
                self._origins[pid] = origin
        return group

    def _cgroup_of(self, pid: int) -> Path | None:
        """Where `pid` is in the cpu hierarchy (outside any services group), if it can be read."""
        # v1 names the cpu hierarchy by its controller; v2's one hierarchy has none ("").
        key, controller = ("cpu", "cpu") if self.support.version == 1 else ("unified", "")
        mount = self.support.mounts.get(key)
        path = _own_paths(Path(f"/proc/{pid}/cgroup")).get(controller)
        if mount is None or path is None:
            return None
        return _below(mount, path)

    def _release_services(self) -> None:
        """Move everything in the services group back where it came from, then remove it.

        Never kills: the platform's own process (a test runner, a CLI) is in there.
        """
        group, self._services = self._services, None
        if group is None or not group.is_dir():
            return
        fallback = group.parent.parent.parent  # the cgroup the run's top group was made in
        for pid in _pids(group / "cgroup.procs"):
            for target in dict.fromkeys([self._origins.get(pid, fallback), fallback]):
                try:
                    (target / "cgroup.procs").write_text(str(pid))
                    break
                except OSError:
                    continue  # gone meanwhile, or no such group any more: try the next
        self._origins.clear()
        with contextlib.suppress(OSError):
            group.rmdir()

    def cleanup(self) -> None:
        """Remove this run's directories (replica groups must have been removed first)."""
        self._release_services()
        for base in {b.resolve() for b in self.support.bases.values()}:
            run_dir = base / self.run
            for child in sorted(run_dir.glob("*/"), reverse=True):
                # A services group still there holds a process that could not move back:
                # left, never killed (it may be the one running this).
                if child.is_dir() and child.name != SERVICES:
                    with contextlib.suppress(CgroupError):
                        _kill_and_rmdir(child, child / "cgroup.procs")
            with contextlib.suppress(OSError):
                run_dir.rmdir()
            # Shared by concurrent runs: removable only once the last one is gone (else EBUSY).
            with contextlib.suppress(OSError):
                base.rmdir()


def run_name() -> str:
    """`<pid>-<random>`: the pid lets a later run recognise groups whose owner has died."""
    return f"{os.getpid()}-{os.urandom(3).hex()}"


def _sweep_stale(support: Support) -> None:
    """Remove groups left behind by runs whose platform process no longer exists (a crash)."""
    for base in {b.resolve() for b in support.bases.values()}:
        for run_dir in base.glob("*-*/"):
            pid = run_dir.name.split("-", 1)[0]
            if not pid.isdigit() or psutil.pid_exists(int(pid)):
                continue
            for child in run_dir.iterdir():
                if child.is_dir():
                    with contextlib.suppress(CgroupError):
                        _kill_and_rmdir(child, child / "cgroup.procs")
            with contextlib.suppress(OSError):
                run_dir.rmdir()
