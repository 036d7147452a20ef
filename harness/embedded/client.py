"""A synchronous client of the embedded gateway's API, for tests, the harness and the CLI.

It speaks only HTTP, so it works the same against a platform in this process and against one
started by `python -m harness.embedded up` in another (see `from_state_dir`).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import httpx

from harness.embedded.auth import BasicAuth
from harness.embedded.models import PlatformEvent

STATE_FILE = "state.json"
CREDENTIALS_FILE = "credentials.json"


class GatewayClient:
    def __init__(self, gateway_url: str, auth: BasicAuth, *, timeout_s: float = 30.0) -> None:
        self.gateway_url = gateway_url.rstrip("/")
        self.auth = auth
        self._http = httpx.Client(base_url=self.gateway_url, timeout=timeout_s, trust_env=False)

    @classmethod
    def from_state_dir(cls, state_dir: Path | str) -> GatewayClient:
        state_dir = Path(state_dir)
        state = json.loads((state_dir / STATE_FILE).read_text())
        creds = json.loads((state_dir / CREDENTIALS_FILE).read_text())["gateway"]
        return cls(state["gateway_url"], BasicAuth(creds["user"], creds["password"]))

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> GatewayClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"GatewayClient({self.gateway_url!r})"

    # -- system --------------------------------------------------------------------------------

    def _system(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self._http.request(method, path, auth=self.auth.as_tuple(), **kwargs)
        response.raise_for_status()
        return response.json()

    def healthy(self) -> bool:
        try:
            return self._http.get("/healthz", timeout=2.0).status_code == 200
        except httpx.TransportError:
            return False

    def info(self) -> dict[str, Any]:
        return dict(self._system("GET", "/system/info"))

    def functions(self) -> list[dict[str, Any]]:
        return list(self._system("GET", "/system/functions"))

    def function(self, name: str) -> dict[str, Any]:
        return dict(self._system("GET", f"/system/function/{name}"))

    def ready_replicas(self, name: str) -> int:
        return int(self.function(name)["availableReplicas"])

    def replica_names(self, name: str, state: str = "ready") -> list[str]:
        return [
            r["name"] for r in self.function(name)["vsearch"]["replicas"] if r["state"] == state
        ]

    def scale(
        self, name: str, replicas: int, *, wait: bool = True, timeout_s: float = 120.0
    ) -> None:
        """Set a function's replica count; with wait, return once exactly that many are ready."""
        self._system(
            "POST",
            f"/system/scale-function/{name}",
            json={"serviceName": name, "replicas": replicas},
        )
        if wait:
            self.wait_replicas(name, replicas, timeout_s=timeout_s)

    def wait_replicas(self, name: str, replicas: int, *, timeout_s: float = 120.0) -> None:
        deadline = time.monotonic() + timeout_s
        while True:
            status = self.function(name)
            live = status["vsearch"]["replicas"]
            ready = [r for r in live if r["state"] == "ready"]
            # Exactly: no replica still stopping either, so a following cold start is real.
            if len(ready) == replicas and len(live) == replicas:
                return
            if time.monotonic() > deadline:
                states = [f"{r['name']}:{r['state']}" for r in live]
                raise TimeoutError(f"{name}: wanted {replicas} ready replicas, have {states}")
            time.sleep(0.05)

    def events(
        self, *, since: int = 0, type: str | None = None, function: str | None = None
    ) -> list[PlatformEvent]:
        params: dict[str, Any] = {"since": since}
        if type:
            params["type"] = type
        if function:
            params["function"] = function
        page = self._system("GET", "/system/events", params=params)
        return [PlatformEvent.model_validate(e) for e in page["events"]]

    def kill_replica(
        self, name: str, replica: str | None = None, *, busy_only: bool = False
    ) -> dict[str, Any]:
        """SIGKILL one replica of a function (the busiest, unless named); returns name and pid.
        busy_only: only while it serves a call (else HTTP 409 replica_idle)."""
        params = {"replica": replica} if replica else {}
        if busy_only:
            params["busy"] = "1"
        return dict(self._system("POST", f"/system/kill-replica/{name}", params=params))

    def reset_window(self) -> dict[str, Any]:
        """Start a new measurement window: run totals to zero, peak memory from now on."""
        return dict(self._system("POST", "/system/reset-window"))

    def metrics(self) -> str:
        response = self._http.get("/metrics")
        response.raise_for_status()
        return response.text

    # -- functions -----------------------------------------------------------------------------

    def invoke(
        self,
        name: str,
        body: Any,
        *,
        path: str = "",
        timeout_s: float = 330.0,
        headers: dict[str, str] | None = None,
    ) -> httpx.Response:
        url = f"/function/{name}" + (f"/{path}" if path else "")
        return self._http.post(url, json=body, headers=headers, timeout=timeout_s)
