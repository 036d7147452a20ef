"""The hostile and bad inputs, as data: what is sent and what the platform must answer.

Each case goes through the gateway like any client request (the pipeline cases through the
whole pipeline). A case expects a status and an error code; a valid input expects 200 and a
result whose content is checked against the input's ground truth.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from harness.media.generate import VideoTruth
from harness.reliability.media import QUERY, Media
from harness.reliability.support import Answer, Rig, new_id, request_prefix


@dataclass
class Sent:
    answer: Answer
    #: Key prefixes this request may write (its upload, its own requests/{id}/).
    own: tuple[str, ...] = ()
    #: Set by system cases that must not have changed anything: what to compare after.
    unchanged: Callable[[], Any] | None = None


Send = Callable[[Rig, Media], Sent]


@dataclass(frozen=True)
class Case:
    id: str
    #: What is sent, in the words of the table.
    input: str
    status: int
    code: str | None
    send: Send
    group: str
    #: Ground truth of a valid input (its 200 is checked against it).
    truth: Callable[[Media], VideoTruth] | None = None
    #: The result's mode a valid input must give.
    mode: str | None = None
    check_objects: bool = True
    #: A known product bug that makes this case fail (the test is xfail, strict).
    bug: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


# -- senders -------------------------------------------------------------------------------------


def _own(request_id: str, *keys: str) -> tuple[str, ...]:
    return (request_prefix(request_id), *keys)


def upload_file(pick: Callable[[Media], Path | str], name: str | None = None) -> Send:
    """Upload a file under a fresh key and search it through the whole pipeline."""

    def send(rig: Rig, media: Media) -> Sent:
        path = Path(pick(media))
        key = f"uploads/{uuid.uuid4().hex[:10]}/{name or path.name}"
        rig.s3.upload_file(str(path), rig.bucket, key)
        request_id = new_id("bad")
        answer = rig.search(f"s3://{rig.bucket}/{key}", QUERY, request_id=request_id)
        return Sent(answer, _own(request_id, key))

    return send


def upload_as(key: str, pick: Callable[[Media], Path]) -> Send:
    """Store a file under exactly this (hostile) key, then search it."""

    def send(rig: Rig, media: Media) -> Sent:
        rig.s3.upload_file(str(pick(media)), rig.bucket, key)
        request_id = new_id("bad")
        answer = rig.search(f"s3://{rig.bucket}/{key}", QUERY, request_id=request_id)
        return Sent(answer, _own(request_id, key))

    return send


def video_uri(uri: Callable[[Rig], str]) -> Send:
    """Search a URI given as is (no upload)."""

    def send(rig: Rig, media: Media) -> Sent:
        request_id = new_id("bad")
        return Sent(rig.search(uri(rig), QUERY, request_id=request_id), _own(request_id))

    return send


def body(make: Callable[[Rig, str], Any]) -> Send:
    """POST an envelope built for this rig and a fresh request id."""

    def send(rig: Rig, media: Media) -> Sent:
        request_id = new_id("bad")
        return Sent(rig.post(make(rig, request_id), request_id=request_id), _own(request_id))

    return send


def raw(content: Callable[[], bytes], content_type: str = "application/json") -> Send:
    def send(rig: Rig, media: Media) -> Sent:
        answer = rig.post(content=content(), headers={"content-type": content_type})
        return Sent(answer)

    return send


def http(
    method: str,
    path: str,
    *,
    auth: tuple[str, str] | None = None,
    header: str | None = None,
    watch: Callable[[Rig], Any] | None = None,
) -> Send:
    """Any request to the gateway; `watch` reads what must not change because of it."""

    def send(rig: Rig, media: Media) -> Sent:
        headers = {"authorization": header} if header else {}
        before = watch(rig) if watch else None
        t0 = time.monotonic()
        response = httpx.request(
            method, rig.gateway_url + path, auth=auth, headers=headers, timeout=30, json=None
        )
        try:
            payload: Any = response.json()
        except ValueError:
            payload = response.text[:300]
        answer = Answer(
            None,
            response.status_code,
            payload,
            time.monotonic() - t0,
            via_replica="x-vsearch-replica" in response.headers,
        )
        check = (lambda: (before, watch(rig))) if watch else None
        return Sent(answer, unchanged=check)

    return send


def _replicas(name: str) -> Callable[[Rig], Any]:
    def read(rig: Rig) -> Any:
        status = rig.platform.function(name)
        pids = [r["pid"] for r in status["vsearch"]["replicas"]]
        return status["vsearch"]["desired_replicas"], pids

    return read


def _envelope(**changes: Any) -> Callable[[Rig, str], dict[str, Any]]:
    def make(rig: Rig, request_id: str) -> dict[str, Any]:
        envelope: dict[str, Any] = {
            "request_id": request_id,
            "input": {"video": f"s3://{rig.bucket}/uploads/none/video.mp4"},
            "config": {"query": QUERY},
        }
        for key, value in changes.items():
            if value is None:
                envelope.pop(key, None)
            elif key == "config":
                envelope["config"] = {**envelope["config"], **value}
            else:
                envelope[key] = value
        return envelope

    return make


def _nested(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


def _deep(depth: int) -> Any:
    value: Any = 1
    for _ in range(depth):
        value = {"x": value}
    return value


def _padded(size: int) -> bytes:
    return json.dumps({"request_id": "pad", "pad": "x" * size}).encode()


# -- the table -----------------------------------------------------------------------------------

LONG_NAME = "a-very-long-but-valid-file-name-" + "x" * 150 + ".mp4"

CASES: tuple[Case, ...] = (
    # Media that is not usable: refused by extract-audio's probe, before any real work.
    Case("corrupt", "random bytes named .mp4", 422, "not_media",
         upload_file(lambda m: m.bad["random"]), "media"),
    Case("truncated", "mp4 cut at 30 % (index lost)", 422, "not_media",
         upload_file(lambda m: m.bad["truncated"]), "media"),
    Case("truncated-indexed", "mp4 cut at 30 % (index kept)", 422, "truncated_media",
         upload_file(lambda m: m.bad["truncated_faststart"]), "media"),
    Case("zero-bytes", "0-byte file", 422, "empty_input",
         upload_file(lambda m: m.bad["empty"]), "media"),
    Case("text", "text file renamed .mp4", 422, "not_media",
         upload_file(lambda m: m.bad["notes"]), "media"),
    Case("pdf", "PDF renamed .mp4", 422, "not_media", upload_file(lambda m: m.pdf), "media"),
    Case("too-long", "valid video of 90 s (MAX_DURATION_S=60)", 413, "too_long",
         upload_file(lambda m: m.long), "media"),
    Case("too-large", "valid video of 2.3 MB (MAX_INPUT_BYTES=1.5 MB)", 413, "input_too_large",
         upload_file(lambda m: m.large), "media"),
    # Valid but unusual media: a correct result.
    Case("audio-only", "audio only (m4a, speech)", 200, None,
         upload_file(lambda m: m.audio_only.path), "media",
         truth=lambda m: m.audio_only, mode="speech"),
    Case("video-only", "video without an audio track", 200, None,
         upload_file(lambda m: m.no_audio.path), "media",
         truth=lambda m: m.no_audio, mode="whole_video"),
    Case("one-frame", "video of a single frame", 200, None,
         upload_file(lambda m: m.one_frame), "media", mode="whole_video"),
    Case("fps-7.5", "7.5 fps video", 200, None, upload_file(lambda m: m.fps_7_5.path), "media",
         truth=lambda m: m.fps_7_5, mode="speech"),
    Case("rotated", "rotation metadata (90 degrees)", 200, None,
         upload_file(lambda m: m.rotated.path), "media",
         truth=lambda m: m.rotated, mode="speech", check_objects=False),
    Case("long-name", f"valid {len(LONG_NAME)}-character file name", 200, None,
         upload_file(lambda m: m.one_frame, LONG_NAME), "media", mode="whole_video"),
    # Keys and URIs: refused before anything is read or written.
    Case("non-ascii-key", "key with non-ASCII characters (vidéo-日本.mp4)", 400, "bad_key",
         upload_as("uploads/nonascii/vidéo-日本.mp4", lambda m: m.short.path), "key"),
    Case("very-long-key", "key segment of 250 characters", 400, "bad_key",
         upload_as("uploads/long/" + "b" * 246 + ".mp4", lambda m: m.short.path), "key"),
    Case("dotdot", "key with `..` (uploads/../secrets.mp4)", 400, "bad_key",
         video_uri(lambda r: f"s3://{r.bucket}/uploads/../secrets.mp4"), "key"),
    Case("dotdot-other-request", "`..` into another request's prefix", 400, "bad_key",
         video_uri(lambda r: f"s3://{r.bucket}/uploads/x/../../requests/other/state.json"),
         "key"),
    Case("absolute-key", "absolute key (s3://bucket//etc/passwd)", 400, "bad_key",
         video_uri(lambda r: f"s3://{r.bucket}//etc/passwd"), "key"),
    Case("other-bucket", "another bucket (s3://other-bucket/...)", 400, "foreign_bucket",
         video_uri(lambda r: "s3://other-bucket/uploads/a.mp4"), "key"),
    Case("local-path", "local file path (/etc/passwd)", 400, "invalid_request",
         video_uri(lambda r: "/etc/passwd"), "key"),
    Case("file-url", "file:// URL", 400, "invalid_request",
         video_uri(lambda r: "file:///etc/passwd"), "key"),
    Case("http-url", "arbitrary URL (cloud metadata service)", 400, "invalid_request",
         video_uri(lambda r: "http://169.254.169.254/latest/meta-data/"), "key"),
    Case("missing-object", "key that does not exist", 404, "input_not_found",
         video_uri(lambda r: f"s3://{r.bucket}/uploads/none/video.mp4"), "key"),
    # Envelopes.
    Case("malformed-json", "malformed JSON", 400, "bad_json",
         raw(lambda: b'{"request_id": "x", "input": '), "body"),
    Case("json-array", "JSON array instead of an object", 400, "invalid_request",
         raw(lambda: b"[1, 2, 3]"), "body"),
    Case("deep-json", "JSON nested 100 000 levels deep", 400, "bad_json",
         raw(lambda: _nested(100_000)), "body"),
    Case("deep-override", "per-function config nested 600 levels deep", 400, "invalid_request",
         body(_envelope(config={"functions": {"search": {"x": _deep(600)}}})), "body"),
    Case("body-2mib", "2 MiB body (function limit 1 MiB)", 413, "body_too_large",
         raw(lambda: _padded(2 << 20)), "body"),
    Case("body-65mib", "65 MiB body (gateway limit 64 MiB)", 413, "body_too_large",
         raw(lambda: _padded(65 << 20)), "body"),
    Case("bad-request-id", "request_id `../../etc`", 400, "invalid_request",
         body(_envelope(request_id="../../etc")), "body"),
    Case("missing-input", "no input", 400, "invalid_request", body(_envelope(input=None)), "body"),
    Case("unknown-field", "unknown config field", 400, "invalid_request",
         body(_envelope(config={"qeury": "typo"})), "body"),
    Case("empty-query", "blank query", 400, "invalid_request",
         body(_envelope(config={"query": "   "})), "body"),
    Case("long-query", "query of 201 characters", 400, "invalid_request",
         body(_envelope(config={"query": "w" * 201})), "body"),
    Case("reserved-override", "override of a key the pipeline sets", 400, "invalid_request",
         body(_envelope(config={"functions": {"search": {"query": "other"}}})), "body"),
    Case("bad-status-id", "GET /requests/{id} with an invalid id", 400, "invalid_request",
         http("GET", "/function/orchestrator/requests/bad.id"), "body"),
    Case("unknown-status-id", "GET /requests/{id} never sent", 404, "not_found",
         http("GET", "/function/orchestrator/requests/r-never-sent"), "body"),
    Case("unknown-function", "unknown function", 404, "function_not_found",
         http("POST", "/function/no-such-function"), "gateway"),
    # The gateway's API: basic auth on every /system path, known or not.
    Case("system-no-auth", "GET /system/functions without auth", 401, "unauthorized",
         http("GET", "/system/functions"), "gateway"),
    Case("system-wrong-password", "wrong password", 401, "unauthorized",
         http("GET", "/system/functions", auth=("admin", "not-the-password")), "gateway"),
    Case("system-wrong-user", "wrong user", 401, "unauthorized",
         http("GET", "/system/info", auth=("root", "not-the-password")), "gateway"),
    Case("system-bearer", "a Bearer token instead of basic auth", 401, "unauthorized",
         http("GET", "/system/functions", header="Bearer abc.def.ghi"), "gateway"),
    Case("system-garbled", "garbled basic-auth header", 401, "unauthorized",
         http("GET", "/system/functions", header="Basic !!!not-base64"), "gateway"),
    Case("system-unknown-path", "unknown /system path without auth", 401, "unauthorized",
         http("GET", "/system/secrets"), "gateway"),
    Case("scale-no-auth", "scale a function without auth", 401, "unauthorized",
         http("POST", "/system/scale-function/search", watch=_replicas("search")), "gateway"),
    Case("kill-no-auth", "kill a replica without auth", 401, "unauthorized",
         http("POST", "/system/kill-replica/search", watch=_replicas("search")), "gateway"),
)  # fmt: skip

CASE_IDS = [c.id for c in CASES]
