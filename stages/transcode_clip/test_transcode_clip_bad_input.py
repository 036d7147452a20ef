"""transcode-clip refuses unusable requests with clear 4xx errors and keeps serving."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from harness.media.generate import VideoTruth, make_bad_files, make_speech_video

MODULE = "stages.transcode_clip"
FIELD = "clip"
CONFIG: dict[str, Any] = {"max_width": 160}
BAD_CONFIG: dict[str, Any] = {"max_width": -5}


def check_good(out: dict[str, Any], truth: VideoTruth, s3: Any) -> None:
    """The content of a good answer on the short speech video."""
    assert out["mp4"].endswith("/transcode-clip/clip-0000.mp4")
    assert out["duration_s"] == pytest.approx(truth.duration_s, abs=0.1)
    bucket, _, key = out["wav"].removeprefix("s3://").partition("/")
    size = s3.client().head_object(Bucket=bucket, Key=key)["ContentLength"]
    assert size == pytest.approx(truth.duration_s * 32000, abs=0.1 * 32000 + 200)


@pytest.fixture(scope="module")
def good(media_dir: Path) -> VideoTruth:
    out = media_dir / "transcode_clip" / "short.mp4"
    return make_speech_video(out, ["hello there"], lead_s=0.3, tail_s=0.3, reuse=True)


@pytest.fixture(scope="module")
def good_uri(good: VideoTruth, upload: Callable[[Path], str]) -> str:
    return upload(Path(good.path))


@pytest.fixture(scope="module")
def bad(media_dir: Path) -> dict[str, Path]:
    return make_bad_files(media_dir / "transcode_clip-bad", include_partial=True)


@pytest.fixture(scope="module")
def url(start_function: Callable[..., str]) -> str:
    return start_function(MODULE)


def _req(request_id: str, uri: str) -> dict[str, Any]:
    return {"request_id": request_id, "input": {FIELD: uri}, "config": CONFIG}


@pytest.fixture(scope="module")
def cases(
    bad: dict[str, Path], upload: Callable[[Path], str], s3_server: Any
) -> dict[str, tuple[Any, int, Any]]:
    """case -> (request body or raw bytes, expected status, expected error code or None)."""
    b = s3_server.bucket
    up = {k: upload(p) for k, p in bad.items()}
    rid = "bad-input"
    broken = ("truncated_media", "corrupt_media")
    return {
        "missing": (_req(rid, f"s3://{b}/uploads/nowhere/missing.mp4"), 404, "input_not_found"),
        "empty": (_req(rid, up["empty"]), 422, "empty_input"),
        "text": (_req(rid, up["notes"]), 422, None),
        "truncated": (_req(rid, up["truncated"]), 422, None),
        "random": (_req(rid, up["random"]), 422, None),
        # Its index survives, so it probes fine; ffmpeg then fails or stops early.
        "partial": (_req(rid, up["truncated_faststart"]), 422, broken),
        "foreign_bucket": (_req(rid, "s3://someone-else/uploads/x.mp4"), 400, "foreign_bucket"),
        "dotdot": (_req(rid, f"s3://{b}/uploads/../requests/x/secret.mp4"), 400, "bad_key"),
        "not_s3": (_req(rid, "https://example.com/x.mp4"), 400, None),
        "not_json": (b"{not json", 400, "bad_json"),
        "no_input": ({"request_id": rid, "config": CONFIG}, 400, "invalid_request"),
        "extra_field": ({**_req(rid, up["empty"]), "surprise": 1}, 400, "invalid_request"),
        "bad_config": ({**_req(rid, up["empty"]), "config": BAD_CONFIG}, 400, "invalid_request"),
        "bad_request_id": (_req("../x", up["empty"]), 400, "invalid_request"),
    }


CASES = [
    "missing", "empty", "text", "truncated", "random", "partial", "foreign_bucket", "dotdot",
    "not_s3", "not_json", "no_input", "extra_field", "bad_config", "bad_request_id",
]  # fmt: skip


def _send(url: str, body: Any) -> httpx.Response:
    if isinstance(body, bytes):
        return httpx.post(url + "/", content=body, timeout=60)
    return httpx.post(url + "/", json=body, timeout=60)


def _check(resp: httpx.Response, status: int, code: str | tuple[str, ...] | None) -> None:
    assert resp.status_code == status, resp.text
    err = resp.json()
    assert err["status"] == "error"
    assert err["error"]["message"] and "Traceback" not in err["error"]["message"]
    if code is not None:
        assert err["error"]["code"] in ((code,) if isinstance(code, str) else code), err


@pytest.mark.parametrize("case", CASES)
def test_bad_input_is_refused(url: str, cases: dict[str, Any], case: str) -> None:
    body, status, code = cases[case]
    _check(_send(url, body), status, code)


def test_still_serves_after_bad_inputs(
    url: str, cases: dict[str, Any], good: VideoTruth, good_uri: str, request_id: str,
    s3_server: Any,
) -> None:  # fmt: skip
    for body, status, code in cases.values():
        _check(_send(url, body), status, code)
    resp = _send(url, _req(request_id, good_uri))
    assert resp.status_code == 200, resp.text
    check_good(resp.json()["outputs"], good, s3_server)


def test_input_over_the_size_limit_is_413(
    start_function: Callable[..., str], good_uri: str, request_id: str
) -> None:
    small = start_function(MODULE, MAX_INPUT_BYTES="1000")
    _check(_send(small, _req(request_id, good_uri)), 413, "input_too_large")


def test_media_over_the_duration_limit_is_413(
    start_function: Callable[..., str], good_uri: str, request_id: str
) -> None:
    short = start_function(MODULE, MAX_DURATION_S="1")
    _check(_send(short, _req(request_id, good_uri)), 413, "too_long")
