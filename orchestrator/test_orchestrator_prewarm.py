"""Prewarming: at request arrival every stage at zero replicas is scaled to one, at once, through
the gateway's authenticated scale API; nothing is scaled down and a failure never fails."""

from __future__ import annotations

import asyncio
import base64
import json
from typing import Any

import httpx
import pytest

from orchestrator.prewarm import STAGES, Prewarmer


def _gateway(replicas: dict[str, int], seen: list[httpx.Request], *, fail: bool = False) -> Any:
    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if fail:
            return httpx.Response(500, text="down")
        if request.url.path == "/system/functions":
            body = [{"name": n, "replicas": r, "availableReplicas": r} for n, r in replicas.items()]
            return httpx.Response(200, json=body)
        if request.url.path.startswith("/system/scale-function/"):
            return httpx.Response(202, json={"replicas": 1})
        return httpx.Response(404)

    return httpx.MockTransport(handle)


def test_every_cold_stage_is_scaled_to_one_with_the_gateway_credentials() -> None:
    seen: list[httpx.Request] = []
    replicas = {name: 0 for name in STAGES} | {"transcribe": 2, "orchestrator": 1}
    prewarmer = Prewarmer("http://gw:8080/", "admin", "pw")

    async def go() -> list[str]:
        async with httpx.AsyncClient(transport=_gateway(replicas, seen)) as http:
            return await prewarmer.prewarm(http, "r1")

    started = asyncio.run(go())
    assert started == [n for n in STAGES if n != "transcribe"]
    posts = [r for r in seen if r.method == "POST"]
    assert sorted(r.url.path.rsplit("/", 1)[1] for r in posts) == sorted(started)
    for r in posts:
        assert json.loads(r.content) == {"serviceName": r.url.path.rsplit("/", 1)[1], "replicas": 1}
    token = base64.b64encode(b"admin:pw").decode()
    assert all(r.headers["authorization"] == f"Basic {token}" for r in seen)


def test_a_gateway_failure_is_logged_not_raised() -> None:
    seen: list[httpx.Request] = []

    async def go() -> list[str]:
        transport = _gateway({}, seen, fail=True)
        async with httpx.AsyncClient(transport=transport) as http:
            return await Prewarmer("http://gw", "u", "p").prewarm(http, "r2")

    assert asyncio.run(go()) == []
    assert [r.method for r in seen] == ["GET"]


def test_without_credentials_there_is_no_prewarmer(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("GATEWAY_AUTH_USER", "GATEWAY_AUTH_PASSWORD"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(f"{name}_FILE", raising=False)
    assert Prewarmer.from_env("http://gw") is None
    monkeypatch.setenv("GATEWAY_AUTH_USER", "admin")
    monkeypatch.setenv("GATEWAY_AUTH_PASSWORD", "pw")
    assert Prewarmer.from_env("http://gw/") == Prewarmer("http://gw", "admin", "pw")
