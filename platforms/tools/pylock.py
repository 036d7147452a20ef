"""Read the hash-pinned locks (uv pip compile output) and resolve per-function closures.

A lock line is ``name==version \\`` followed by ``--hash=sha256:...`` lines and ``# via`` comments
naming the packages that require it (``-r`` for a direct requirement). The ``# via`` graph,
reversed, is the dependency graph; the closure of a function's direct requirements
(its requirements.in) is the set of wheels its image needs.

Standard library only: used by the layer rules (both Bazel modes) and by the fetch script.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

_PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)(\[[^\]]*\])?==([^\s\\;]+)")
_HASH = re.compile(r"--hash=sha256:([0-9a-f]{64})")
_REQ = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)")


def canonical(name: str) -> str:
    """PEP 503 normalised project name."""
    return re.sub(r"[-_.]+", "-", name).lower()


@dataclass
class Pin:
    name: str
    version: str
    hashes: list[str] = field(default_factory=list)
    required_by: set[str] = field(default_factory=set)

    def requirement_line(self) -> str:
        hashes = " ".join(f"--hash=sha256:{h}" for h in self.hashes)
        return f"{self.name}=={self.version} {hashes}"


def parse_lock(text: str) -> dict[str, Pin]:
    pins: dict[str, Pin] = {}
    current: Pin | None = None
    in_via = False
    for raw in text.splitlines():
        line = raw.strip()
        match = _PIN.match(raw)
        if match:
            current = Pin(canonical(match.group(1)), match.group(3))
            pins[current.name] = current
            current.hashes.extend(_HASH.findall(raw))
            in_via = False
            continue
        if current is None:
            continue
        if line.startswith("--hash="):
            current.hashes.extend(_HASH.findall(line))
        elif line.startswith("# via"):
            rest = line[len("# via") :].strip()
            if rest:
                current.required_by.add(rest.split()[0])
            in_via = True
        elif in_via and line.startswith("#   "):
            current.required_by.add(line[4:].split()[0])
        elif not line.startswith("#"):
            in_via = False
    for pin in pins.values():
        pin.required_by = {x if x == "-r" else canonical(x) for x in pin.required_by}
    return pins


def read_requirements_in(text: str) -> list[str]:
    """Project names of a requirements.in (versions, extras and markers are the lock's job)."""
    names = []
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line or line.startswith("-"):
            continue
        match = _REQ.match(line)
        if match:
            names.append(canonical(match.group(1)))
    return names


def closure(pins: dict[str, Pin], direct: list[str]) -> list[str]:
    """Every pinned package that `direct` needs, sorted. Unknown names are an error."""
    children: dict[str, set[str]] = {name: set() for name in pins}
    for pin in pins.values():
        for parent in pin.required_by:
            if parent in children:
                children[parent].add(pin.name)
    missing = [name for name in direct if name not in pins]
    if missing:
        raise KeyError(f"not in the lock: {', '.join(missing)} (run ./vsearch lock)")
    seen: set[str] = set()
    stack = list(direct)
    while stack:
        name = stack.pop()
        if name in seen:
            continue
        seen.add(name)
        stack.extend(children[name] - seen)
    return sorted(seen)


def wheel_project(filename: str) -> str:
    """The canonical project name of a wheel file name."""
    return canonical(Path(filename).name.split("-", 1)[0])


def wheel_version(filename: str) -> str:
    return Path(filename).name.split("-")[1]


def load(path: str | Path) -> dict[str, Pin]:
    return parse_lock(Path(path).read_text())


def function_wheels(
    lock: dict[str, Pin], requirements: list[str], exclude_requirements: list[str]
) -> list[str]:
    """Closure of `requirements` minus the closure of `exclude_requirements` (the base's)."""
    base = set(closure(lock, exclude_requirements)) if exclude_requirements else set()
    return [name for name in closure(lock, requirements) if name not in base]


def requirement_files(root: Path) -> dict[str, Path]:
    """Bazel package -> its requirements.in, for base, the orchestrator and every stage."""
    files = [root / "base" / "requirements.in", root / "orchestrator" / "requirements.in"]
    files += sorted((root / "stages").glob("*/requirements.in"))
    return {f.parent.relative_to(root).as_posix(): f for f in files if f.exists()}


def wheel_group_name(package: str) -> str:
    """`stages/segment_speech` -> `stages_segment_speech`: the package's target in @wheels."""
    return package.replace("/", "_")


def wheel_groups(root: Path, lock: dict[str, Pin]) -> dict[str, list[str]]:
    """@wheels target -> the pinned packages a package's image layers need, sorted.

    A function's closure together with the base's: its `:wheels` layer installs the first minus
    the second, and the numba warm-up also unpacks the base's wheels.
    """
    files = requirement_files(root)
    base = read_requirements_in(files["base"].read_text())
    groups = {}
    for package, path in files.items():
        direct = base if package == "base" else base + read_requirements_in(path.read_text())
        groups[wheel_group_name(package)] = closure(lock, direct)
    return groups
