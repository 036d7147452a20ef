"""The async path's versions: the images of NATS and the queue-worker as their pods run them."""

from __future__ import annotations

from typing import Any

from harness.backends.cluster.tools import ClusterError
from harness.backends.cluster.versions import async_versions


def _pod(container: str, image: str, *, ready: bool = True) -> dict[str, Any]:
    status = {"name": container, "image": image, "imageID": f"{image}@sha256:ab", "ready": ready}
    return {"status": {"containerStatuses": [status]}}


class _Backend:
    chart = {"namespace": "openfaas"}

    def __init__(self, pods: dict[str, list[dict[str, Any]]], fail: str = "") -> None:
        self.pods, self.fail = pods, fail
        self.asked: list[tuple[str, ...]] = []

    def _kubectl_json(self, *args: str) -> dict[str, Any]:
        self.asked.append(args)
        app = args[args.index("-l") + 1].removeprefix("app=")
        if app == self.fail:
            raise ClusterError("kubectl get pods: connection refused")
        return {"items": self.pods.get(app, [])}


def test_both_running_are_recorded_with_their_image_ids() -> None:
    backend = _Backend(
        {
            "nats": [_pod("nats", "r/platform/nats-streaming-server:v0.25.6")],
            "queue-worker": [_pod("queue-worker", "r/platform/queue-worker:v0.0.0-x")],
        }
    )
    found = async_versions(backend)
    assert found["enabled"] is True
    assert found["nats"] == {
        "image": "r/platform/nats-streaming-server:v0.25.6",
        "image_id": "r/platform/nats-streaming-server:v0.25.6@sha256:ab",
    }
    assert found["queue_worker"]["image"] == "r/platform/queue-worker:v0.0.0-x"
    assert all(a[a.index("--namespace") + 1] == "openfaas" for a in backend.asked)


def test_a_missing_or_unready_part_means_no_queue() -> None:
    backend = _Backend({"nats": [_pod("nats", "n:1")], "queue-worker": [
        _pod("queue-worker", "q:1", ready=False)]})  # fmt: skip
    found = async_versions(backend)
    assert found["queue_worker"] is None and found["enabled"] is False
    assert async_versions(_Backend({})) == {"nats": None, "queue_worker": None, "enabled": False}


def test_an_unanswered_question_is_said() -> None:
    found = async_versions(_Backend({"nats": [_pod("nats", "n:1")]}, fail="queue-worker"))
    assert "connection refused" in found["queue_worker"]["error"]
    assert found["enabled"] is False
