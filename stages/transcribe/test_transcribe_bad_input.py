"""transcribe refuses bad requests and inputs with clear 4xx errors, stops at its deadline, and
keeps serving good requests afterwards."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import soundfile as sf

from harness.embedded.function_process import FunctionProcess, FunctionStartError
from harness.media.generate import VideoTruth, make_bad_files, make_video_without_audio


def _rid() -> str:
    return f"t-{uuid.uuid4().hex[:12]}"


@pytest.fixture(scope="module")
def bad_uris(media_dir: Path, upload: Callable[[Path], str]) -> dict[str, str]:
    d = media_dir / "transcribe-bad"
    files = make_bad_files(d)
    files["no_audio"] = Path(make_video_without_audio(d / "mute.mp4", 2.0, reuse=True).path)
    return {name: upload(path) for name, path in files.items()}


def _error(resp: httpx.Response, status: int, code: str | None = None) -> dict[str, Any]:
    assert resp.status_code == status, resp.text
    body = resp.json()
    assert body["status"] == "error" and body["function"] == "transcribe"
    assert body["error"]["message"] and "Traceback" not in body["error"]["message"]
    if code is not None:
        assert body["error"]["code"] == code, body
    return dict(body["error"])


@pytest.mark.parametrize(
    ("kind", "code"),
    [
        ("empty", "empty_input"),
        ("notes", "not_media"),
        ("random", "not_media"),
        ("truncated", "not_media"),
        ("no_audio", "no_audio"),
    ],
)
def test_unusable_input_is_422(
    kind: str,
    code: str,
    bad_uris: dict[str, str],
    transcribe_url: str,
    invoke: Callable[..., httpx.Response],
) -> None:
    body = {"request_id": _rid(), "input": {"audio": bad_uris[kind]}}
    _error(invoke(transcribe_url, body), 422, code)


def test_missing_object_is_404(
    s3_server: Any, transcribe_url: str, invoke: Callable[..., httpx.Response]
) -> None:
    uri = f"s3://{s3_server.bucket}/uploads/nothing-here/{uuid.uuid4().hex}.wav"
    _error(invoke(transcribe_url, {"request_id": _rid(), "input": {"audio": uri}}), 404)


@pytest.mark.parametrize(
    ("audio", "code"),
    [
        ("s3://someone-elses-bucket/uploads/a.wav", "foreign_bucket"),
        ("s3://{bucket}/uploads/../../etc/passwd", "bad_key"),
        ("s3://{bucket}//uploads/a.wav", "bad_key"),
        ("/etc/passwd", "invalid_request"),
        ("https://example.com/a.wav", "invalid_request"),
    ],
)
def test_bad_uri_is_400(
    audio: str,
    code: str,
    s3_server: Any,
    transcribe_url: str,
    invoke: Callable[..., httpx.Response],
) -> None:
    body = {"request_id": _rid(), "input": {"audio": audio.format(bucket=s3_server.bucket)}}
    _error(invoke(transcribe_url, body), 400, code)


_AUDIO = {"audio": "s3://b/k.wav"}


def _with(config: dict[str, Any]) -> dict[str, Any]:
    return {"request_id": "x", "input": _AUDIO, "config": config}


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"input": _AUDIO}, "invalid_request"),  # no request_id
        ({"request_id": "x"}, "invalid_request"),  # no input
        ({"request_id": "x", "input": {}}, "invalid_request"),
        ({"request_id": "x", "input": {**_AUDIO, "video": "s3://b/v"}}, "invalid_request"),
        ({"request_id": "../x", "input": _AUDIO}, "invalid_request"),
        (_with({"beam": 5}), "invalid_request"),
        (_with({"beam_size": 0}), "invalid_request"),
        (_with({"language": "E"}), "invalid_request"),
        (_with({"time_offset_s": -1}), "invalid_request"),
        (_with({"language": "de"}), "unsupported_language"),  # tiny.en is English-only
        ([1, 2, 3], None),
    ],
)
def test_malformed_request_is_400(
    body: Any, code: str | None, transcribe_url: str, invoke: Callable[..., httpx.Response]
) -> None:
    _error(invoke(transcribe_url, body), 400, code)


def test_body_that_is_not_json_is_400(transcribe_url: str) -> None:
    resp = httpx.post(transcribe_url + "/", content=b"{not json", timeout=30)
    _error(resp, 400, "bad_json")


def test_a_directory_without_a_model_stops_start_up(s3_server: Any, tmp_path: Path) -> None:
    env = {**s3_server.env(), "WHISPER_MODEL_DIR": str(tmp_path)}
    proc = FunctionProcess("stages.transcribe", env, log_path=tmp_path / "log").start()
    with pytest.raises(FunctionStartError):
        proc.wait_ready(timeout_s=60)
    proc.stop()
    assert "is not a CTranslate2 Whisper model dir" in proc.log_tail()
    assert "model.bin" in proc.log_tail()


def test_deadline_stops_the_transcription(
    speech: VideoTruth,
    media_dir: Path,
    upload: Callable[[Path], str],
    transcribe_url: str,
    invoke: Callable[..., httpx.Response],
) -> None:
    # ~5 minutes of speech: about a minute of model work, far beyond a 1 s deadline.
    samples, rate = sf.read(speech.path, dtype="int16")
    long_wav = media_dir / "transcribe-long.wav"
    sf.write(long_wav, np.tile(samples, 25), rate, "PCM_16")
    body = {"request_id": _rid(), "input": {"audio": upload(long_wav)}}
    t0 = time.monotonic()
    resp = invoke(transcribe_url, body, headers={"X-Timeout-Seconds": "1"})
    _error(resp, 504, "timeout")
    assert time.monotonic() - t0 < 5
    # The slot frees only when the work has really stopped (between two whisper segments),
    # which is well before the ~60 s the whole file would take.
    while time.monotonic() - t0 < 20:
        health = invoke(transcribe_url, {"request_id": "x", "input": {}}, timeout=10)
        if health.status_code != 429:
            break
        time.sleep(0.2)
    assert health.status_code == 400, health.text
    assert time.monotonic() - t0 < 20


def test_still_serves_after_bad_input(
    transcribe_url: str,
    speech_uri: str,
    speech: VideoTruth,
    transcribe: Callable[..., dict[str, Any]],
    transcript_checks: Any,
) -> None:
    out = transcribe(transcribe_url, speech_uri, _rid())["outputs"]
    assert transcript_checks.wer(speech.transcript, out["text"]) < transcript_checks.MAX_WER
    transcript_checks.check_words(out)
