"""The versions of the platform a cluster run used, as the cluster itself reports them."""

from __future__ import annotations

import contextlib
import json
from typing import Any

import httpx

from harness.backends import kind_manifests as km
from harness.backends.cluster.tools import ClusterError


def platform_versions(backend: Any) -> dict[str, Any]:
    """What actually runs on the cluster ``backend`` (a connected K8sBackend) is attached to:
    Kubernetes (the API server's /version), OpenFaaS (the gateway's /system/info: release, sha,
    provider) and MinIO (its image and the image ID its pod runs, the S3 ``Server`` header).
    A part that cannot be asked says why instead."""
    out: dict[str, Any] = {}
    try:
        raw = backend.runner.run([*backend.kubectl, "get", "--raw", "/version"], timeout=30)
        version = json.loads(raw.stdout)
        # What the binaries were stamped with (harness/cluster/builder.py for the local one).
        keys = ("gitVersion", "gitCommit", "gitTreeState", "buildDate", "goVersion", "platform")
        out["kubernetes"] = {key: version.get(key) for key in keys}
    except (ClusterError, ValueError) as exc:
        out["kubernetes"] = {"error": str(exc)[-300:]}
    try:
        info = backend.api.info()
        provider = info.get("provider") or {}
        gateway = info.get("version") or {}
        out["openfaas"] = {
            "gateway": {"release": gateway.get("release"), "sha": gateway.get("sha")},
            "provider": {
                "name": provider.get("provider"),
                "release": (provider.get("version") or {}).get("release"),
                "sha": (provider.get("version") or {}).get("sha"),
            },
        }
    except (ClusterError, httpx.HTTPError, AttributeError) as exc:
        out["openfaas"] = {"error": str(exc)[-300:]}
    out["openfaas_async"] = async_versions(backend)
    minio: dict[str, Any] = {}
    try:
        pods = (
            backend._kubectl_json(
                "get", "pods", "--namespace", km.STORAGE_NAMESPACE, "-l", "app=minio"
            ).get("items")
            or []
        )
        running = [
            cs for p in pods for cs in (p.get("status") or {}).get("containerStatuses") or []
            if cs.get("name") == "minio"
        ]  # fmt: skip
        if running:
            minio["image"] = running[0].get("image")
            minio["image_id"] = running[0].get("imageID")
    except (ClusterError, ValueError) as exc:
        minio["error"] = str(exc)[-300:]
    if backend._minio is not None:
        url = f"http://127.0.0.1:{backend._minio.local(9000)}/minio/health/live"
        with (
            contextlib.suppress(httpx.HTTPError, ClusterError),
            httpx.Client(trust_env=False, timeout=5.0) as http,
        ):
            minio["server"] = http.get(url).headers.get("Server")
    out["minio"] = minio
    return out


#: The async path's Deployments (app label) in the gateway's namespace, as the CE chart names them.
ASYNC_COMPONENTS = {"nats": "nats", "queue_worker": "queue-worker"}


def async_versions(backend: Any) -> dict[str, Any]:
    """The images (and the image IDs the pods run) of NATS Streaming and the queue-worker, or
    ``None`` for one that does not run: without both, /async-function has no queue."""
    namespace = str(backend.chart["namespace"])
    out: dict[str, Any] = {}
    for key, app in ASYNC_COMPONENTS.items():
        try:
            pods = (
                backend._kubectl_json(
                    "get", "pods", "--namespace", namespace, "-l", f"app={app}"
                ).get("items")
                or []
            )
        except (ClusterError, ValueError) as exc:
            out[key] = {"error": str(exc)[-300:]}
            continue
        running = [
            cs for p in pods for cs in (p.get("status") or {}).get("containerStatuses") or []
            if cs.get("name") == app and cs.get("ready")
        ]  # fmt: skip
        out[key] = (
            {"image": running[0].get("image"), "image_id": running[0].get("imageID")}
            if running
            else None
        )
    out["enabled"] = all(isinstance(v, dict) and "image" in v for v in out.values())
    return out
