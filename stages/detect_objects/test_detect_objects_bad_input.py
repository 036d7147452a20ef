"""detect-objects refuses bad requests and bad frames with clear 4xx errors, then keeps serving."""

from __future__ import annotations

import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from stages.detect_objects.conftest import labels_of, ok_outputs

Invoke = Callable[..., httpx.Response]


@pytest.fixture(scope="module")
def bad_frames(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("bad-frames")
    files = {
        "empty": d / "empty.jpg",
        "text": d / "notes.jpg",
        "random": d / "random.jpg",
    }
    files["empty"].write_bytes(b"")
    files["text"].write_text("Meeting notes\n- a text file renamed to .jpg\n")
    files["random"].write_bytes(random.Random(7).randbytes(16 * 1024))
    return files


@pytest.fixture(scope="module")
def good_uri(upload: Callable[..., str], photo: Callable[[str], Path]) -> str:
    return upload(photo("zidane"))


def error_of(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["status"] == "error" and body["function"] == "detect-objects"
    assert "Traceback" not in body["error"]["message"]
    return body["error"]


def body_for(request_id: str, uris: list[str], **config: Any) -> dict[str, Any]:
    frames = [{"uri": u, "time_s": float(i), "index": i} for i, u in enumerate(uris)]
    return {"request_id": request_id, "input": {"frames": frames}, "config": config}


def test_missing_frame_is_404(
    detect_url: str, invoke: Invoke, request_id: str, s3_server: Any, good_uri: str
) -> None:
    missing = f"s3://{s3_server.bucket}/uploads/nothing-here/frame-00000.jpg"
    err = error_of(invoke(detect_url, body_for(request_id, [good_uri, missing])), 404)
    assert err["code"] == "input_not_found" and "nothing-here" in err["message"]


def test_zero_byte_frame_is_422(
    detect_url: str,
    invoke: Invoke,
    request_id: str,
    upload: Callable[..., str],
    bad_frames: dict[str, Path],
) -> None:
    err = error_of(invoke(detect_url, body_for(request_id, [upload(bad_frames["empty"])])), 422)
    assert err["code"] == "empty_input"


@pytest.mark.parametrize("kind", ["text", "random"])
def test_undecodable_frame_is_422_naming_the_frame(
    detect_url: str,
    invoke: Invoke,
    request_id: str,
    upload: Callable[..., str],
    bad_frames: dict[str, Path],
    good_uri: str,
    kind: str,
) -> None:
    bad = upload(bad_frames[kind])
    body = body_for(request_id, [good_uri, good_uri, bad])
    body["input"]["frames"][2]["index"] = 41
    err = error_of(invoke(detect_url, body), 422)
    assert err["code"] == "bad_image"
    assert "frame 2 " in err["message"] and "index 41" in err["message"]
    assert bad in err["message"]


@pytest.mark.parametrize(
    ("count", "fragment"), [(65, "at most 64"), (0, "at least 1")], ids=["65", "0"]
)
def test_frame_count_outside_1_to_64_is_400(
    detect_url: str, invoke: Invoke, request_id: str, good_uri: str, count: int, fragment: str
) -> None:
    err = error_of(invoke(detect_url, body_for(request_id, [good_uri] * count)), 400)
    assert err["code"] == "invalid_request" and fragment in err["message"]


@pytest.mark.parametrize(
    ("config", "fragment"),
    [
        ({"input_size": 400}, "multiple of 32"),
        ({"input_size": 2048}, "input_size"),
        ({"score_threshold": 0}, "score_threshold"),
        ({"nms_iou": 1.5}, "nms_iou"),
        ({"labels": []}, "labels"),
        ({"labels": ["person", "unicorn"]}, "unicorn"),
        ({"treshold": 0.5}, "treshold"),
    ],
    ids=["size-not-32", "size-big", "threshold-0", "iou-1.5", "labels-empty", "label", "typo"],
)
def test_bad_config_is_400(
    detect_url: str,
    invoke: Invoke,
    request_id: str,
    good_uri: str,
    config: dict[str, Any],
    fragment: str,
) -> None:
    err = error_of(invoke(detect_url, body_for(request_id, [good_uri], **config)), 400)
    assert fragment in err["message"]


@pytest.mark.parametrize(
    "content",
    [
        b"{not json",
        b"[]",
        b'{"request_id": "t-1", "input": {}}',
        b'{"request_id": "t-1", "input": {"frames": [{"uri": "s3://b/k.jpg"}]}}',
        b'{"request_id": "t-1", "input": {"frames": [{"uri": "/etc/passwd", "time_s": 0,'
        b' "index": 0}]}}',
        b'{"request_id": "t-1", "input": {"frames": [{"uri": "s3://b/k.jpg", "time_s": "NaN",'
        b' "index": 0}]}}',
    ],
    ids=["not-json", "list", "no-frames", "frame-fields", "local-path", "nan-time"],
)
def test_malformed_body_is_400(detect_url: str, content: bytes) -> None:
    response = httpx.post(
        detect_url + "/", content=content, headers={"content-type": "application/json"}, timeout=30
    )
    error_of(response, 400)


@pytest.mark.parametrize(
    ("uri", "code"),
    [
        ("s3://someone-elses-bucket/uploads/x/frame.jpg", "foreign_bucket"),
        ("s3://{bucket}/uploads/../secrets/frame.jpg", "bad_key"),
    ],
    ids=["foreign-bucket", "dotdot"],
)
def test_unsafe_uri_is_400(
    detect_url: str, invoke: Invoke, request_id: str, s3_server: Any, uri: str, code: str
) -> None:
    err = error_of(
        invoke(detect_url, body_for(request_id, [uri.format(bucket=s3_server.bucket)])), 400
    )
    assert err["code"] == code


def test_still_serves_after_bad_inputs(
    detect_url: str, invoke: Invoke, request_id: str, good_uri: str
) -> None:
    # Runs last in this module: every bad request above went to the same process.
    out = ok_outputs(invoke(detect_url, body_for(request_id, [good_uri])))
    assert "person" in labels_of(out["frames"][0], 0.5)
    health = httpx.get(detect_url + "/_/health", timeout=10)
    assert health.status_code == 200 and health.json()["status"] == "ok"
