"""The local registry's HTTP API (our own registry, plain HTTP on loopback)."""

from __future__ import annotations

import re

import httpx

from harness.backends.cluster.tools import ClusterError

_MANIFEST_ACCEPT = ", ".join(
    [
        "application/vnd.oci.image.index.v1+json",
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
        "application/vnd.docker.distribution.manifest.v2+json",
    ]
)


def registry_ready(registry: str, *, timeout_s: float = 3.0) -> bool:
    try:
        with httpx.Client(trust_env=False, timeout=timeout_s) as http:
            return http.get(f"http://{registry}/v2/").status_code == 200
    except httpx.HTTPError:
        return False


def registry_digest(registry: str, repository: str, tag: str, *, timeout_s: float = 10.0) -> str:
    """The digest the registry serves for ``repository:tag`` (an index's for multi-arch)."""
    url = f"http://{registry}/v2/{repository}/manifests/{tag}"
    with httpx.Client(trust_env=False, timeout=timeout_s) as http:
        response = http.head(url, headers={"Accept": _MANIFEST_ACCEPT})
    digest = response.headers.get("Docker-Content-Digest", "")
    if response.status_code != 200 or not re.fullmatch(r"sha256:[0-9a-f]{64}", digest):
        raise ClusterError(f"registry has no {repository}:{tag} (HTTP {response.status_code})")
    return digest
