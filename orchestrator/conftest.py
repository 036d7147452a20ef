"""Fixtures for the orchestrator's tests: the real S3 server, uploads, scripted gateways."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from base.config import StorageSettings
from base.storage import ObjectStore
from orchestrator.testing import FakeStages, FakeVideo, Handler, ScriptedGateway


@pytest.fixture(scope="session")
def store(s3_server: Any) -> ObjectStore:
    return ObjectStore(StorageSettings.from_env(s3_server.env()))


@pytest.fixture(scope="session")
def put_upload(s3_server: Any) -> Callable[..., str]:
    """Store bytes as a client upload under `uploads/`; returns the s3:// URI."""
    client = s3_server.client()

    def put(data: bytes = b"\x00fake-video\x00" * 100, name: str = "video.mp4") -> str:
        key = f"uploads/{uuid.uuid4().hex[:8]}/{name}"
        client.put_object(Bucket=s3_server.bucket, Key=key, Body=data)
        return f"s3://{s3_server.bucket}/{key}"

    return put


@pytest.fixture
def rid() -> str:
    return f"t-{uuid.uuid4().hex[:12]}"


@pytest.fixture
def gateway() -> Iterator[Callable[..., ScriptedGateway]]:
    """`gateway(handlers)` -> a started ScriptedGateway, stopped after the test."""
    started: list[ScriptedGateway] = []

    def start(handlers: dict[str, Handler] | None = None) -> ScriptedGateway:
        gw = ScriptedGateway(handlers).start()
        started.append(gw)
        return gw

    yield start
    for gw in started:
        gw.stop()


@pytest.fixture
def fake(s3_server: Any) -> Callable[..., FakeStages]:
    """`fake(**FakeVideo fields)` -> fake stages for a video with that content."""

    def make(**fields: Any) -> FakeStages:
        return FakeStages(FakeVideo(bucket=s3_server.bucket, **fields))

    return make
