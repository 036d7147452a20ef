"""The bad-input suite every media function must pass, shared by the functions' test modules.

A test module subclasses `BadInputSuite`, names its function, input field and configs, and says
what a good answer contains; pytest then runs every case against a real function process:
missing, empty, non-media, truncated and random inputs; foreign buckets and unsafe keys; malformed
bodies; size and duration limits; and a good request after all of them.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

import httpx
import pytest

from harness.media.generate import VideoTruth, make_bad_files, make_speech_video

CASES = [
    "missing", "empty", "text", "truncated", "random", "partial", "foreign_bucket", "dotdot",
    "not_s3", "not_json", "no_input", "extra_field", "bad_config", "bad_request_id",
]  # fmt: skip


def send(url: str, body: Any) -> httpx.Response:
    if isinstance(body, bytes):
        return httpx.post(url + "/", content=body, timeout=60)
    return httpx.post(url + "/", json=body, timeout=60)


def check_refused(resp: httpx.Response, status: int, code: str | tuple[str, ...] | None) -> None:
    assert resp.status_code == status, resp.text
    err = resp.json()
    assert err["status"] == "error"
    assert err["error"]["message"] and "Traceback" not in err["error"]["message"]
    if code is not None:
        assert err["error"]["code"] in ((code,) if isinstance(code, str) else code), err


def object_size(s3: Any, uri: str) -> int:
    bucket, _, key = uri.removeprefix("s3://").partition("/")
    return int(s3.client().head_object(Bucket=bucket, Key=key)["ContentLength"])


class BadInputSuite:
    MODULE: ClassVar[str]
    FIELD: ClassVar[str]
    CONFIG: ClassVar[dict[str, Any]] = {}
    BAD_CONFIG: ClassVar[dict[str, Any]]

    def check_good(self, out: dict[str, Any], truth: VideoTruth, s3: Any) -> None:
        """The content of a good answer on the short speech video."""
        raise AssertionError("each function's suite says what a good answer contains")

    @classmethod
    def name(cls) -> str:
        return cls.MODULE.rsplit(".", 1)[-1]

    @classmethod
    def request(cls, request_id: str, uri: str) -> dict[str, Any]:
        return {"request_id": request_id, "input": {cls.FIELD: uri}, "config": cls.CONFIG}

    @pytest.fixture(scope="class")
    @classmethod
    def good(cls, media_dir: Path) -> VideoTruth:
        out = media_dir / cls.name() / "short.mp4"
        return make_speech_video(out, ["hello there"], lead_s=0.3, tail_s=0.3, reuse=True)

    @pytest.fixture(scope="class")
    @classmethod
    def good_uri(cls, good: VideoTruth, upload: Callable[[Path], str]) -> str:
        return upload(Path(good.path))

    @pytest.fixture(scope="class")
    @classmethod
    def url(cls, start_function: Callable[..., str]) -> str:
        return start_function(cls.MODULE)

    @pytest.fixture(scope="class")
    @classmethod
    def cases(
        cls, media_dir: Path, upload: Callable[[Path], str], s3_server: Any
    ) -> dict[str, tuple[Any, int, Any]]:
        """case -> (request body or raw bytes, expected status, expected error code or None)."""
        bad = make_bad_files(media_dir / f"{cls.name()}-bad", include_partial=True)
        b = s3_server.bucket
        up = {k: upload(p) for k, p in bad.items()}
        rid = "bad-input"
        req = cls.request
        return {
            "missing": (req(rid, f"s3://{b}/uploads/nowhere/missing.mp4"), 404, "input_not_found"),
            "empty": (req(rid, up["empty"]), 422, "empty_input"),
            "text": (req(rid, up["notes"]), 422, None),
            "truncated": (req(rid, up["truncated"]), 422, None),
            "random": (req(rid, up["random"]), 422, None),
            # Its index survives, so it probes fine; ffmpeg then fails or stops early.
            "partial": (
                req(rid, up["truncated_faststart"]), 422, ("truncated_media", "corrupt_media")
            ),
            "foreign_bucket": (req(rid, "s3://someone-else/uploads/x.mp4"), 400, "foreign_bucket"),
            "dotdot": (req(rid, f"s3://{b}/uploads/../requests/x/secret.mp4"), 400, "bad_key"),
            "not_s3": (req(rid, "https://example.com/x.mp4"), 400, None),
            "not_json": (b"{not json", 400, "bad_json"),
            "no_input": ({"request_id": rid, "config": cls.CONFIG}, 400, "invalid_request"),
            "extra_field": ({**req(rid, up["empty"]), "surprise": 1}, 400, "invalid_request"),
            "bad_config": (
                {**req(rid, up["empty"]), "config": cls.BAD_CONFIG}, 400, "invalid_request"
            ),
            "bad_request_id": (req("../x", up["empty"]), 400, "invalid_request"),
        }  # fmt: skip

    @pytest.mark.parametrize("case", CASES)
    def test_bad_input_is_refused(self, url: str, cases: dict[str, Any], case: str) -> None:
        body, status, code = cases[case]
        check_refused(send(url, body), status, code)

    def test_still_serves_after_bad_inputs(
        self, url: str, cases: dict[str, Any], good: VideoTruth, good_uri: str,
        request_id: str, s3_server: Any,
    ) -> None:  # fmt: skip
        for body, status, code in cases.values():
            check_refused(send(url, body), status, code)
        resp = send(url, self.request(request_id, good_uri))
        assert resp.status_code == 200, resp.text
        self.check_good(resp.json()["outputs"], good, s3_server)

    def test_input_over_the_size_limit_is_413(
        self, start_function: Callable[..., str], good_uri: str, request_id: str
    ) -> None:
        small = start_function(self.MODULE, MAX_INPUT_BYTES="1000")
        check_refused(send(small, self.request(request_id, good_uri)), 413, "input_too_large")

    def test_media_over_the_duration_limit_is_413(
        self, start_function: Callable[..., str], good_uri: str, request_id: str
    ) -> None:
        short = start_function(self.MODULE, MAX_DURATION_S="1")
        check_refused(send(short, self.request(request_id, good_uri)), 413, "too_long")
