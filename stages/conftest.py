"""Fixtures for function tests: real function processes, a real S3 server, generated media."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from harness.embedded.function_process import FunctionProcess


@pytest.fixture(scope="session")
def start_function(
    s3_server: Any, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Callable[..., str]]:
    """`start_function("stages.x", exec_timeout="5")` -> base URL of a ready process (cached)."""
    logs = tmp_path_factory.mktemp("function-logs")
    started: dict[tuple[str, tuple[tuple[str, str], ...]], FunctionProcess] = {}

    def start(module: str, **env: str) -> str:
        key = (module, tuple(sorted(env.items())))
        if key not in started:
            name = module.rsplit(".", 1)[-1] + (f"-{len(started)}" if env else "")
            proc = FunctionProcess(
                module, {**s3_server.env(), **env}, log_path=logs / f"{name}.log"
            ).start()
            proc.wait_ready()
            started[key] = proc
        return started[key].url

    yield start
    for proc in started.values():
        proc.stop()


@pytest.fixture
def request_id() -> str:
    return f"t-{uuid.uuid4().hex[:12]}"


@pytest.fixture(scope="session")
def upload(s3_server: Any) -> Callable[[Path], str]:
    """Store a local file as a client would, under `uploads/`; returns its s3:// URI."""
    client = s3_server.client()

    def put(path: Path, key: str | None = None) -> str:
        key = key or f"uploads/{uuid.uuid4().hex[:8]}/{path.name}"
        client.upload_file(str(path), s3_server.bucket, key)
        return f"s3://{s3_server.bucket}/{key}"

    return put


@pytest.fixture(scope="session")
def invoke() -> Callable[..., httpx.Response]:
    def call(url: str, body: Any, timeout: float = 300.0, **kwargs: Any) -> httpx.Response:
        return httpx.post(url + "/", json=body, timeout=timeout, **kwargs)

    return call


@pytest.fixture(scope="session")
def media_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("media")
