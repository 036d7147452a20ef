"""segment-speech refuses unusable input with a clear 4xx, and keeps serving afterwards."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from harness.media.generate import make_bad_files


@pytest.fixture(scope="session")
def bad_wavs(media_dir: Path, seg_media: dict[str, Any]) -> dict[str, Path]:
    d = media_dir / "segment-speech-bad"
    files = make_bad_files(d)
    good = seg_media["demo"].wav.read_bytes()
    files["truncated_wav"] = d / "truncated.wav"
    files["truncated_wav"].write_bytes(good[: len(good) // 3])
    files["header_only_wav"] = d / "header_only.wav"
    header = good[: good.index(b"data") + 8]
    files["header_only_wav"].write_bytes(header)
    # A well-formed WAV that declares and holds no samples.
    files["no_samples_wav"] = d / "no_samples.wav"
    files["no_samples_wav"].write_bytes(header[:-4] + b"\x00\x00\x00\x00")
    files["video_not_wav"] = Path(seg_media["demo"].truth.path)
    return files


def call(
    invoke: Callable[..., httpx.Response], url: str, request_id: str, audio: str
) -> httpx.Response:
    return invoke(url, {"request_id": request_id, "input": {"audio": audio}})


@pytest.mark.parametrize(
    ("name", "code"),
    [
        ("empty", "empty_input"),
        ("notes", "not_wav"),
        ("truncated", "not_wav"),
        ("random", "not_wav"),
        ("truncated_wav", "truncated_audio"),
        ("header_only_wav", "truncated_audio"),
        ("no_samples_wav", "empty_audio"),
        ("video_not_wav", "not_wav"),
    ],
)
def test_unusable_audio_is_422(
    name: str,
    code: str,
    bad_wavs: dict[str, Path],
    upload: Callable[[Path], str],
    seg_url: str,
    invoke: Callable[..., httpx.Response],
    request_id: str,
) -> None:
    resp = call(invoke, seg_url, request_id, upload(bad_wavs[name]))
    assert resp.status_code == 422, resp.text
    body = resp.json()
    assert body["status"] == "error" and body["error"]["code"] == code
    assert "Traceback" not in resp.text


def test_missing_object_is_404(
    s3_server: Any, seg_url: str, invoke: Callable[..., httpx.Response], request_id: str
) -> None:
    resp = call(invoke, seg_url, request_id, f"s3://{s3_server.bucket}/uploads/nope/audio.wav")
    assert resp.status_code == 404, resp.text
    assert resp.json()["error"]["code"] == "input_not_found"


@pytest.mark.parametrize(
    "uri",
    ["s3://someone-elses-bucket/audio.wav", "s3://{bucket}/uploads/../secrets/audio.wav"],
)
def test_foreign_bucket_or_unsafe_key_is_400(
    uri: str,
    s3_server: Any,
    seg_url: str,
    invoke: Callable[..., httpx.Response],
    request_id: str,
) -> None:
    resp = call(invoke, seg_url, request_id, uri.format(bucket=s3_server.bucket))
    assert resp.status_code == 400, resp.text
    assert resp.json()["error"]["code"] in {"foreign_bucket", "bad_key"}


@pytest.mark.parametrize(
    "body",
    [
        b"{not json",
        b'{"request_id": "x1", "input": {}}',
        b'{"request_id": "x1", "input": {"audio": "http://example.com/a.wav"}}',
        b'{"request_id": "../x", "input": {"audio": "s3://b/a.wav"}}',
    ],
)
def test_malformed_body_is_400(body: bytes, seg_url: str) -> None:
    resp = httpx.post(
        seg_url + "/", content=body, headers={"content-type": "application/json"}, timeout=30
    )
    assert resp.status_code == 400, resp.text
    assert resp.json()["status"] == "error"


def test_still_serves_after_bad_inputs(
    bad_wavs: dict[str, Path],
    upload: Callable[[Path], str],
    seg_media: dict[str, Any],
    seg_uris: dict[str, str],
    seg_url: str,
    invoke: Callable[..., httpx.Response],
    request_id: str,
) -> None:
    for name in ("random", "truncated_wav"):
        bad = call(invoke, seg_url, f"{request_id}-{name}", upload(bad_wavs[name]))
        assert bad.status_code == 422
    resp = call(invoke, seg_url, request_id, seg_uris["demo"])
    assert resp.status_code == 200, resp.text
    segments = resp.json()["outputs"]["segments"]
    truth = seg_media["demo"].sentences
    assert len(segments) == len(truth)
    for seg, t in zip(segments, truth, strict=True):
        assert abs(seg["start_s"] - t.start_s) <= 0.5 and abs(seg["end_s"] - t.end_s) <= 0.5
