"""The OpenFaaS gateway's REST API and its Prometheus invocation counters."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import httpx

from harness.backends import kind_manifests as km
from harness.backends.cluster.tools import ClusterError
from harness.embedded.auth import BasicAuth


class OpenFaaSAPI:
    def __init__(self, base_url: str, auth: BasicAuth, *, timeout_s: float = 60.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.auth = auth
        self._http = httpx.Client(base_url=self.base_url, timeout=timeout_s, trust_env=False)

    def close(self) -> None:
        self._http.close()

    def _call(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        return self._http.request(method, path, auth=self.auth.as_tuple(), **kwargs)

    def healthy(self) -> bool:
        try:
            return self._http.get("/healthz", timeout=5.0).status_code == 200
        except httpx.HTTPError:
            return False

    def info(self) -> dict[str, Any]:
        response = self._call("GET", "/system/info")
        response.raise_for_status()
        return dict(response.json())

    def functions(self) -> list[dict[str, Any]]:
        response = self._call("GET", "/system/functions")
        response.raise_for_status()
        return list(response.json() or [])

    def function(self, name: str) -> dict[str, Any] | None:
        response = self._call(
            "GET", f"/system/function/{name}", params={"namespace": km.FUNCTION_NAMESPACE}
        )
        if response.status_code == 404:
            return None
        response.raise_for_status()
        return dict(response.json())

    def deploy(self, body: Mapping[str, Any]) -> str:
        """Create or update; returns "created" or "updated"."""
        exists = self.function(str(body["service"])) is not None
        response = self._call("PUT" if exists else "POST", "/system/functions", json=dict(body))
        if response.status_code >= 300:
            hint = ""
            if "public images" in response.text:
                hint = (
                    " (faas-netes CE fetches the image anonymously from inside the cluster: "
                    "is the registry reachable at the image's address?)"
                )
            raise ClusterError(
                f"deploying {body['service']}: HTTP {response.status_code}: "
                f"{response.text.strip()[:500]}{hint}"
            )
        return "updated" if exists else "created"

    def scale(self, name: str, replicas: int) -> None:
        response = self._call(
            "POST",
            f"/system/scale-function/{name}",
            json={"serviceName": name, "namespace": km.FUNCTION_NAMESPACE, "replicas": replicas},
        )
        if response.status_code >= 300:
            raise ClusterError(f"scaling {name} to {replicas}: HTTP {response.status_code}")


def parse_gateway_metrics(text: str) -> dict[str, dict[str, float]]:
    """``gateway_function_invocation_total`` per function and status code."""
    out: dict[str, dict[str, float]] = {}
    pattern = re.compile(r"^gateway_function_invocation_total\{(?P<labels>[^}]*)\}\s+(?P<v>\S+)")
    for line in text.splitlines():
        m = pattern.match(line)
        if not m:
            continue
        labels = dict(re.findall(r'(\w+)="([^"]*)"', m.group("labels")))
        name = labels.get("function_name", "?").split(".")[0]
        out.setdefault(name, {})[labels.get("code", "?")] = float(m.group("v"))
    return out


# --------------------------------------------------------------------------------------------
