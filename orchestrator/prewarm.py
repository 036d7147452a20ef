"""Prewarming the whole chain when a request arrives (after Xanadu, Middleware 2020).

Functions scaled to zero used to start one after another, each when the pipeline first called
it, so their start-up waits added up along the DAG. At request arrival the orchestrator now
asks the gateway's scale API (`/system/scale-function/{name}`, OpenFaaS and the embedded
gateway alike) for one replica of every stage that has none, so they all start at once while
extract-audio runs. It only ever scales up from zero (never down), and it is advisory: a
failure is logged and the request goes on (a call still waits for its replica as before).

The scale API needs the gateway's basic auth: `GATEWAY_AUTH_USER` and `GATEWAY_AUTH_PASSWORD`
(or `_FILE` variants, as OpenFaaS mounts secrets). Without them prewarming is off.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import get_args

import httpx

from base.config import env
from base.telemetry import log
from orchestrator.contracts import StageName

#: What a request may call, in pipeline order.
STAGES: tuple[str, ...] = get_args(StageName)


@dataclass(frozen=True)
class Prewarmer:
    gateway_url: str
    user: str
    password: str
    timeout_s: float = 5.0

    @classmethod
    def from_env(cls, gateway_url: str) -> Prewarmer | None:
        user, password = env("GATEWAY_AUTH_USER"), env("GATEWAY_AUTH_PASSWORD")
        if not user or not password:
            return None
        return cls(gateway_url.rstrip("/"), user, password)

    async def prewarm(
        self, http: httpx.AsyncClient, request_id: str, functions: tuple[str, ...] = STAGES
    ) -> list[str]:
        """Scale every function in `functions` that has no replica to one; returns those."""
        t0 = time.monotonic()
        auth = (self.user, self.password)
        base = self.gateway_url.rstrip("/")
        try:
            response = await http.get(f"{base}/system/functions", auth=auth, timeout=self.timeout_s)
            response.raise_for_status()
            status = {f["name"]: f for f in response.json()}
        except (httpx.HTTPError, ValueError, KeyError, TypeError) as exc:
            log("prewarm_failed", level="warning", request_id=request_id, error=repr(exc)[:200])
            return []
        cold = [
            name
            for name in functions
            if name in status
            and not status[name].get("replicas")
            and not status[name].get("availableReplicas")
        ]

        async def scale(name: str) -> bool:
            try:
                answer = await http.post(
                    f"{base}/system/scale-function/{name}",
                    json={"serviceName": name, "replicas": 1},
                    auth=auth,
                    timeout=self.timeout_s,
                )
            except httpx.HTTPError as exc:
                log("prewarm_failed", level="warning", function=name, error=repr(exc)[:200])
                return False
            return answer.status_code < 300

        done = await asyncio.gather(*(scale(n) for n in cold))
        started = [n for n, ok in zip(cold, done, strict=True) if ok]
        log(
            "prewarm",
            request_id=request_id,
            scaled=started,
            already_warm=len(functions) - len(cold),
            took_s=round(time.monotonic() - t0, 3),
        )
        return started
