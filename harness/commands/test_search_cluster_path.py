"""`search --backend k8s|kind` on a fake connection: the upload, the orchestrator's call and
the answer's figures go through the same code as the embedded platform's search."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import httpx
import pytest

from harness.commands import search


class FakeConnection:
    instances: list[FakeConnection] = []

    def __init__(self, backend: Any) -> None:
        self.gateway_url = "http://127.0.0.1:9"
        self.bucket = "vsearch"
        self.uploads: list[str] = []
        self.bodies: list[dict[str, Any]] = []
        self.closed = False
        self.reply = httpx.Response(200, json={"status": "error", "error": {"code": "x"}})
        self.gateway = self
        self.instances.append(self)

    def invoke(self, function: str, body: dict[str, Any], *, timeout_s: float) -> Any:
        assert function == "orchestrator"
        self.bodies.append(body)
        return self.reply

    def s3_client(self) -> Any:
        return self

    def upload_file(self, path: str, bucket: str, key: str) -> None:
        self.uploads.append(f"{bucket}/{key}")

    def close(self) -> None:
        self.closed = True


@pytest.fixture
def video(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    FakeConnection.instances = []
    monkeypatch.setattr(search, "ClusterConnection", FakeConnection)
    path = tmp_path / "My Talk.MP4"
    path.write_bytes(b"not decoded here")
    return path


def test_the_cluster_search_uploads_calls_and_times_like_the_embedded_one(video: Path) -> None:
    answer = search.run_search(
        video, "flour", state_dir=video.parent, config={"top_k": 2}, quiet=True, cluster=object()
    )
    conn = FakeConnection.instances[0]
    assert re.fullmatch(r"vsearch/uploads/[0-9a-f]{12}/My_Talk\.mp4", conn.uploads[0])
    (body,) = conn.bodies
    assert re.fullmatch(r"cli-\d{8}T\d{6}-[0-9a-f]{8}", body["request_id"])
    assert body["input"] == {"video": f"s3://{conn.uploads[0]}"}
    assert body["config"] == {"query": "flour", "top_k": 2}
    assert answer["http_status"] == 200 and answer["error"] == {"code": "x"}
    assert 0 <= answer["client_wall_s"] < 60
    assert "saved" not in answer and conn.closed


def test_a_reply_that_is_not_json_becomes_a_bad_response_error(
    video: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def garbled(self: FakeConnection, *args: Any, **kwargs: Any) -> Any:
        return httpx.Response(502, text="<html>bad gateway</html>")

    monkeypatch.setattr(FakeConnection, "invoke", garbled)
    answer = search.run_search(video, "flour", state_dir=video.parent, quiet=True, cluster=1)
    assert answer["status"] == "error" and answer["http_status"] == 502
    assert answer["error"] == {"code": "bad_response", "message": "<html>bad gateway</html>"}
    json.dumps(answer)  # --json prints it as one document
