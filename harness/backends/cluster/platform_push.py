"""The local platform's own images (gateway, provider, NATS, queue-worker, Prometheus, MinIO)
into the local registry before the manifests that name them are applied.

manifests/openfaas/local and manifests/minio/local name ``127.0.0.1:5001/platform/<name>:<tag>``,
the tag being the version the builder pins (harness/cluster/platform_images.py). A registry
that lacks one leaves its pod in ImagePullBackOff, so ``up --openfaas local`` builds or reuses
the program, writes its FROM-scratch layout and pushes it with skopeo, for each image missing.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import yaml

from harness.backends.cluster.registry import registry_digest
from harness.backends.cluster.tools import ClusterError, Runner

PLATFORM_REF = re.compile(r"(?P<registry>[^/\s]+)/platform/(?P<name>[a-z0-9-]+):(?P<tag>[\w.-]+)")


def _images(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "image" and isinstance(value, str):
                yield value
            else:
                yield from _images(value)
    elif isinstance(node, list):
        for item in node:
            yield from _images(item)


def referenced(paths: Iterable[Path], registry: str) -> list[tuple[str, str]]:
    """(name, tag) of every platform image in ``registry`` that the manifests name: container
    images, and a kustomization's ``images`` override (newName + newTag)."""
    found: set[tuple[str, str]] = set()
    for path in paths:
        for doc in yaml.safe_load_all(path.read_text()):
            if not isinstance(doc, dict):
                continue
            refs = list(_images(doc))
            if doc.get("kind") == "Kustomization":
                refs += [
                    f"{o['newName']}:{o['newTag']}"
                    for o in doc.get("images") or []
                    if o.get("newName") and o.get("newTag")
                ]
            for ref in refs:
                match = PLATFORM_REF.fullmatch(ref.split("@", 1)[0])
                if match and match["registry"] == registry:
                    found.add((match["name"], match["tag"]))
    return sorted(found)


def _in_registry(registry: str, name: str, tag: str) -> bool:
    try:
        registry_digest(registry, f"platform/{name}", tag)
    except ClusterError:
        return False
    return True


def _layout(name: str, out: Path) -> tuple[Path, str]:
    """Build or reuse the program, write its image's layout; (layout dir, tag)."""
    from harness.cluster import builder, platform_images

    image = platform_images.IMAGES.get(name)
    if image is None:
        raise ClusterError(f"the manifests name platform/{name}, which no platform image builds")
    try:
        builder.build(image.component)  # reuses the cached binary of the same inputs
    except builder.PlatformBuildError as err:
        raise ClusterError(f"building {image.component} for platform/{name}: {err}") from err
    built = platform_images.write_layouts([name], out)[name]
    return built.layout, built.name.rsplit(":", 1)[1]


def push_missing(
    runner: Runner,
    registry: str,
    wanted: Iterable[tuple[str, str]],
    workdir: Path,
    *,
    in_registry: Callable[[str, str, str], bool] = _in_registry,
    layout: Callable[[str, Path], tuple[Path, str]] = _layout,
) -> list[str]:
    """Push each wanted image the registry lacks; returns the references pushed."""
    pushed = []
    for name, tag in wanted:
        if in_registry(registry, name, tag):
            continue
        directory, built_tag = layout(name, workdir / "platform-layouts")
        if built_tag != tag:
            raise ClusterError(
                f"the manifests name {registry}/platform/{name}:{tag} but the pinned build is "
                f"{built_tag}: update the manifest's tag (test_local_manifests.py checks them)"
            )
        ref = f"{registry}/platform/{name}:{tag}"
        runner.run(
            ["skopeo", "copy", "--quiet", "--dest-tls-verify=false",
             f"oci:{directory}:{tag}", f"docker://{ref}"],
            timeout=600,
        )  # fmt: skip
        pushed.append(ref)
    return pushed
