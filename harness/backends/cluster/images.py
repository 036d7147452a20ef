"""The Bazel hand-off: function images from Bazel's OCI layouts to the cluster's registry,
tagged by the git commit and pinned by the digest the registry serves.

Bazel (platforms/image.bzl) writes each function's multi-arch index as an OCI layout at
``bazel-bin/<package>/index``, where the package is the function's module in
manifests/functions.yaml (``stages.cut_clips`` -> ``bazel-bin/stages/cut_clips/index``,
``orchestrator`` -> ``bazel-bin/orchestrator/index``): underscores, not the function's hyphens.
:func:`image_layout` finds it there (``image_dir`` = bazel-bin or bazel-bin/stages), or at
``<image_dir>/<function>`` (a directory of layouts named by function).

The pushed digest must equal the layout's own (``index.json``'s manifest): skopeo copies it
byte for byte, so a difference means the registry holds something else under that tag.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path

from harness.backends.cluster.registry import registry_digest
from harness.backends.cluster.tools import ClusterError, Runner
from harness.functions import FunctionDeclaration

ROOT = Path(__file__).resolve().parents[3]
REPOSITORY_PREFIX = "vsearch"


def package_of(decl: FunctionDeclaration) -> Path:
    """The Bazel package of a function: its module as a path (``stages/cut_clips``)."""
    return Path(*decl.module.split("."))


def image_layout(image_dir: Path, decl: FunctionDeclaration) -> Path | None:
    """The function's OCI layout under ``image_dir`` (see the module docstring), or None."""
    package = package_of(decl)
    candidates = [
        image_dir / decl.name,  # <dir>/<function>
        image_dir / package / "index",  # bazel-bin/stages/cut_clips/index
        image_dir / package.name / "index",  # bazel-bin/stages + cut_clips/index
    ]
    for candidate in candidates:
        if (candidate / "index.json").is_file():
            return candidate
    return None


def layout_digest(layout: Path) -> str:
    """The digest of the (single) image or index an OCI layout holds."""
    index = json.loads((layout / "index.json").read_text())
    manifests = index.get("manifests") or []
    if len(manifests) != 1:
        raise ClusterError(f"{layout}: expected one manifest in index.json, found {len(manifests)}")
    return str(manifests[0]["digest"])


def commit_tag(root: Path = ROOT) -> str:
    """``git rev-parse --short HEAD``, with ``-dirty`` when tracked files differ from it."""
    head = subprocess.run(
        ["git", "-C", str(root), "rev-parse", "--short", "HEAD"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    if head.returncode != 0:
        raise ClusterError(f"no git commit to tag the images with: {head.stderr.strip()}")
    status = subprocess.run(
        ["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    return head.stdout.strip() + ("-dirty" if status.stdout.strip() else "")


def is_loopback(registry: str) -> bool:
    host = registry.split("/")[0].rsplit(":", 1)[0]
    return host in ("127.0.0.1", "localhost")


def pushed_digest(runner: Runner, registry: str, function: str, tag: str) -> str:
    """The digest the registry now serves for ``<registry>/vsearch/<function>:<tag>``."""
    repository = f"{REPOSITORY_PREFIX}/{function}"
    if is_loopback(registry):
        return registry_digest(registry.split("/")[0], repository, tag)
    raw = runner.run(["skopeo", "inspect", "--raw", f"docker://{registry}/{repository}:{tag}"])
    return "sha256:" + hashlib.sha256(raw.stdout.encode()).hexdigest()


def find_layouts(declarations: Sequence[FunctionDeclaration], image_dir: Path) -> dict[str, Path]:
    """Each function's OCI layout under ``image_dir``; the missing ones all named in one error."""
    layouts: dict[str, Path] = {}
    missing = []
    for decl in declarations:
        layout = image_layout(image_dir, decl)
        if layout is None:
            missing.append(f"{decl.name} (no OCI layout at {image_dir}/{package_of(decl)}/index)")
        else:
            layouts[decl.name] = layout
    if missing:
        raise ClusterError(
            "function images are missing: " + "; ".join(missing) + ". Build them first "
            "(bazel build //... writes bazel-bin/<package>/index), or pass the right image_dir."
        )
    return layouts


def push_layouts(
    runner: Runner,
    declarations: Sequence[FunctionDeclaration],
    image_dir: Path,
    registry: str,
    tag: str,
    *,
    expected: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """skopeo-copy every function's layout to ``<registry>/vsearch/<function>:<tag>`` and return
    the digests read back from the registry, each checked against the layout's own digest (and
    ``expected`` when given). Missing layouts are all named in one error."""
    layouts = find_layouts(declarations, image_dir)
    tls = "false" if is_loopback(registry) else "true"
    digests: dict[str, str] = {}
    for name, layout in layouts.items():
        target = f"{registry}/{REPOSITORY_PREFIX}/{name}:{tag}"
        runner.run(
            ["skopeo", "copy", "--all", f"--dest-tls-verify={tls}", f"oci:{layout}",
             f"docker://{target}"],
            timeout=1800,
        )  # fmt: skip
        digest = pushed_digest(runner, registry, name, tag)
        own = layout_digest(layout)
        for source, want in (("its OCI layout", own), ("the build", (expected or {}).get(name))):
            if want and want != digest:
                raise ClusterError(f"{name}: the registry serves {digest} for {target}, "
                                   f"{source} says {want}")  # fmt: skip
        digests[name] = digest
    return digests
