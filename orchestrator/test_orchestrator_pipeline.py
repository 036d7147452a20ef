"""The DAG against fake stage functions over real HTTP, with state in the real S3 server."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from typing import Any

import pytest

from base.errors import InputNotFound, InvalidRequest, StorageUnavailable
from base.storage import ObjectStore
from orchestrator.client import StageError
from orchestrator.contracts import ErrorInfo, Output
from orchestrator.pipeline import PipelineSettings, speech_packs
from orchestrator.state import RequestState, read_status, step_key
from orchestrator.testing import (
    PER_SENTENCE,
    SPEECH,
    Call,
    FakeStages,
    Reply,
    ScriptedGateway,
    error,
    run_request,
)

PERSON = ("person", 6.5, 13.0)  # visible in clips 1 and 2 only


def speech_video(fake: Callable[..., FakeStages], **kw: Any) -> FakeStages:
    return fake(duration_s=22.0, speech=SPEECH, objects=[PERSON], **kw)


def test_clips_run_concurrently_and_the_result_has_the_content(
    fake: Callable[..., FakeStages],
    gateway: Callable[..., ScriptedGateway],
    put_upload: Callable[..., str],
    store: ObjectStore,
    s3_server: Any,
    rid: str,
) -> None:
    stages = speech_video(fake, delays={"transcribe": 2.0})
    gw = gateway(stages.handlers())
    data = b"pretend this is an mp4 " * 5000
    video = put_upload(data, name="My-Video_1.MP4")
    t0 = time.monotonic()
    out: Output = run_request(
        store, gw.url, rid, video, {"query": "flour", "clip_concurrency": 4, **PER_SENTENCE}
    )
    elapsed = time.monotonic() - t0

    # 4 clips x 2 s of transcription, 4 at a time: about 2 s, far from the 8 s of a loop
    # (the margin is for busy CI machines, not for a sequential loop to slip through).
    assert elapsed < 5.0, elapsed
    assert gw.max_overlap("transcribe") == 4
    assert out.metrics.request.critical_path_s == pytest.approx(2.0, abs=0.4)
    assert out.metrics.request.end_to_end_s >= out.metrics.request.critical_path_s

    assert out.mode == "speech"
    assert [c.index for c in out.clips] == [0, 1, 2, 3]
    assert [c.transcript for c in out.clips] == [s[2] for s in SPEECH]
    for clip, (start, end, _) in zip(out.clips, SPEECH, strict=True):
        assert clip.start_s <= start and clip.end_s >= end
        assert clip.words and clip.words[0].start_s == pytest.approx(start)
        assert all(clip.start_s <= w.start_s <= clip.end_s for w in clip.words)
    assert [c.index for c in out.clips if c.objects] == [1, 2]
    assert {o.label for o in out.objects} == {"person"}
    assert all(PERSON[1] <= o.frame_time_s <= PERSON[2] for o in out.objects)
    assert [(m.clip_index, "flour" in m.text) for m in out.matches] == [(1, True)]

    # The request's own copy was hashed, under a safe name, and the upload was not moved.
    assert out.video.sha256 == hashlib.sha256(data).hexdigest()
    assert out.video.size_bytes == len(data)
    assert out.video.uri == f"s3://{s3_server.bucket}/requests/{rid}/input/My-Video_1.mp4"
    assert out.video.duration_s == 22.0 and out.video.has_audio and out.video.has_video
    assert store.exists(store.key_of(video))
    # Stages read the copy, never the client's upload.
    assert stages.video and gw.calls_to("extract-audio")[0].body["input"]["video"] == out.video.uri

    # Every call is accounted for; every completed step left a record; state says ok.
    functions = [r.function for r in out.metrics.invocations]
    assert sorted(functions) == sorted(
        ["extract-audio", "segment-speech", "cut-clips", "search"]
        + ["transcode-clip", "transcribe", "sample-frames", "detect-objects"] * 4
    )
    assert len(gw.calls) == len(functions)
    for step in ["extract-audio", "cut-clips", "transcribe-0003", "detect-objects-0002-00"]:
        assert store.exists(step_key(rid, step)), step
    status = read_status(store, rid)
    assert status is not None and status["status"] == "ok"
    assert status["result"]["matches"][0]["clip_index"] == 1
    assert status["progress"]["stage"] == "done" and status["progress"]["clips_done"] == 4

    # Per-call envelope: deadline header, fanout = clip index, clip start as time offset.
    transcribe = sorted(gw.calls_to("transcribe"), key=lambda c: c.fanout or 0)
    assert [c.fanout for c in transcribe] == [0, 1, 2, 3]
    assert all(0 < float(c.headers["x-timeout-seconds"]) <= 600 for c in gw.calls)
    # Speech and vision read windows of the whole audio / video, not the cut clips.
    frames = gw.calls_to("sample-frames")
    assert {c.body["config"]["start_s"] for c in frames} == {c.start_s for c in out.clips}
    assert {c.body["input"]["video"] for c in frames} == {out.video.uri}
    wav = f"s3://{s3_server.bucket}/requests/{rid}/extract-audio/audio.wav"
    assert {c.body["input"]["audio"] for c in transcribe} == {wav}
    assert [
        [(w["start_s"], w["end_s"]) for w in c.body["config"]["windows"]] for c in transcribe
    ] == [[(c.start_s, c.end_s)] for c in out.clips]


def test_sentences_within_one_whisper_window_are_transcribed_in_one_call(
    fake: Callable[..., FakeStages],
    gateway: Callable[..., ScriptedGateway],
    put_upload: Callable[..., str],
    store: ObjectStore,
    rid: str,
) -> None:
    stages = speech_video(fake)
    gw = gateway(stages.handlers())
    out = run_request(store, gw.url, rid, put_upload(), {"query": "flour", "speech_pack_s": 12})
    # 4 sentences of 3 s: two fit in 12 s with the gap between them, so 2 calls of 2 windows.
    transcribe = sorted(gw.calls_to("transcribe"), key=lambda c: c.fanout or 0)
    assert [c.fanout for c in transcribe] == [0, 2]
    assert [len(c.body["config"]["windows"]) for c in transcribe] == [2, 2]
    # Each clip still gets its own transcript, and search reads each one.
    assert [c.transcript for c in out.clips] == [s[2] for s in SPEECH]
    (search,) = gw.calls_to("search")
    uris = [e["transcript"] for e in search.body["input"]["transcripts"]]
    assert len(set(uris)) == 4 and all(stages.transcripts[u] for u in uris)
    assert [(m.clip_index, "flour" in m.text) for m in out.matches] == [(1, True)]


def test_speech_packs() -> None:
    spans = {0: (0.0, 3.0), 1: (5.0, 8.0), 2: (9.0, 39.0), 3: (40.0, 41.0)}
    assert speech_packs(spans, 28.0) == [[0, 1], [2], [3]]
    assert speech_packs(spans, 0) == [[0], [1], [2], [3]]
    assert speech_packs({}, 28.0) == []


def test_speech_and_vision_do_not_wait_for_cut_clips(
    fake: Callable[..., FakeStages],
    gateway: Callable[..., ScriptedGateway],
    put_upload: Callable[..., str],
    store: ObjectStore,
    rid: str,
) -> None:
    stages = speech_video(fake, delays={"cut-clips": 1.5, "transcribe": 0.5})
    gw = gateway(stages.handlers())
    out = run_request(store, gw.url, rid, put_upload(), {"query": "flour"})
    (cut,) = gw.calls_to("cut-clips")
    assert all(c.received < cut.finished - 1.0 for c in gw.calls_to("transcribe"))
    assert all(c.received < cut.finished - 1.0 for c in gw.calls_to("sample-frames"))
    assert all(c.received >= cut.finished for c in gw.calls_to("transcode-clip"))
    (search,) = gw.calls_to("search")
    assert search.received >= max(c.finished for c in gw.calls_to("transcode-clip"))
    # The critical path is cut-clips (1.5 s) and not cut-clips + transcribe (2.0 s).
    assert out.metrics.request.critical_path_s == pytest.approx(1.5, abs=0.3)
    assert [m.clip_index for m in out.matches] == [1]
    # The delivery encode happens once, in cut-clips.
    assert cut.body["config"]["max_width"] == 640 and cut.body["config"]["crf"] == 28


def test_clip_concurrency_bounds_the_fan_out(
    fake: Callable[..., FakeStages],
    gateway: Callable[..., ScriptedGateway],
    put_upload: Callable[..., str],
    store: ObjectStore,
    rid: str,
) -> None:
    stages = speech_video(fake, delays={"transcribe": 0.3})
    gw = gateway(stages.handlers())
    out = run_request(
        store, gw.url, rid, put_upload(), {"query": "bus", "clip_concurrency": 2, **PER_SENTENCE}
    )
    assert gw.max_overlap("transcribe") == 2
    assert [m.clip_index for m in out.matches] == [2]


def test_silent_video_samples_frames_over_the_whole_video(
    fake: Callable[..., FakeStages],
    gateway: Callable[..., ScriptedGateway],
    put_upload: Callable[..., str],
    store: ObjectStore,
    rid: str,
) -> None:
    stages = fake(duration_s=30.0, speech=[], objects=[("person", 9.0, 16.0)])
    gw = gateway(stages.handlers())
    out = run_request(
        store,
        gw.url,
        rid,
        put_upload(),
        {"query": "flour", "frame_interval_s": 5.0, "detect_batch": 4},
    )
    assert out.mode == "whole_video"
    assert out.clips == [] and out.matches == []
    sampled = gw.calls_to("sample-frames")
    assert len(sampled) == 1
    assert sampled[0].body["input"]["video"] == out.video.uri  # the whole video, not a clip
    assert sampled[0].body["config"]["time_offset_s"] == 0.0
    assert out.frames_without_clip is not None
    assert [f.time_s for f in out.frames_without_clip] == [0.0, 5.0, 10.0, 15.0, 20.0, 25.0]
    assert len(gw.calls_to("detect-objects")) == 2  # 6 frames in batches of 4
    assert [(o.label, o.frame_time_s, o.clip_index) for o in out.objects] == [
        ("person", 10.0, None),
        ("person", 15.0, None),
    ]
    for skipped in ["cut-clips", "transcode-clip", "transcribe", "search"]:
        assert gw.calls_to(skipped) == [], skipped


def test_video_without_audio_skips_the_speech_branch(
    fake: Callable[..., FakeStages],
    gateway: Callable[..., ScriptedGateway],
    put_upload: Callable[..., str],
    store: ObjectStore,
    rid: str,
) -> None:
    stages = fake(duration_s=12.0, has_audio=False, objects=[("dog", 0.0, 4.0)])
    gw = gateway(stages.handlers())
    out = run_request(store, gw.url, rid, put_upload(), {"query": "x"})
    assert out.mode == "whole_video" and not out.video.has_audio
    assert gw.calls_to("segment-speech") == []
    assert [f.time_s for f in out.frames_without_clip or []] == [0.0, 5.0, 10.0]
    assert [o.frame_time_s for o in out.objects] == [0.0]


def test_audio_only_runs_the_speech_branch_only(
    fake: Callable[..., FakeStages],
    gateway: Callable[..., ScriptedGateway],
    put_upload: Callable[..., str],
    store: ObjectStore,
    rid: str,
) -> None:
    stages = speech_video(fake, has_video=False)
    gw = gateway(stages.handlers())
    out = run_request(store, gw.url, rid, put_upload(name="talk.m4a"), {"query": "fox"})
    assert out.mode == "speech" and not out.video.has_video
    assert gw.calls_to("sample-frames") == [] and gw.calls_to("detect-objects") == []
    assert [c.transcript for c in out.clips] == [s[2] for s in SPEECH]
    assert out.objects == [] and [m.clip_index for m in out.matches] == [0]


def test_bad_input_from_a_stage_fails_the_request_naming_it(
    fake: Callable[..., FakeStages],
    gateway: Callable[..., ScriptedGateway],
    put_upload: Callable[..., str],
    store: ObjectStore,
    rid: str,
) -> None:
    stages = speech_video(fake)
    handlers = stages.handlers()
    good = handlers["transcode-clip"]

    def corrupt_clip_1(call: Call) -> Reply:
        if call.fanout == 1:
            return error(call, 422, "bad_input", "clip-0001.mp4 is not decodable media")
        return good(call)  # type: ignore[return-value]

    handlers["transcode-clip"] = corrupt_clip_1
    gw = gateway(handlers)
    with pytest.raises(StageError) as caught:
        run_request(store, gw.url, rid, put_upload(), {"query": "flour"})
    exc = caught.value
    assert (exc.status, exc.code) == (422, "bad_input")
    assert exc.function == "transcode-clip" and exc.step == "transcode-clip-0001"
    assert "transcode-clip" in exc.message and "not decodable" in exc.message
    assert len([c for c in gw.calls_to("transcode-clip") if c.fanout == 1]) == 1  # no retry
    assert gw.calls_to("search") == []
    status = read_status(store, rid)
    assert status is not None and status["status"] == "error"
    assert status["error"]["function"] == "transcode-clip"
    assert status["error"]["code"] == "bad_input" and status["error"]["status"] == 422
    assert status["progress"]["stage"] == "error"


def test_transient_failures_are_retried_and_counted(
    fake: Callable[..., FakeStages],
    gateway: Callable[..., ScriptedGateway],
    put_upload: Callable[..., str],
    store: ObjectStore,
    rid: str,
) -> None:
    stages = speech_video(fake)
    handlers = stages.handlers()
    good = handlers["transcribe"]
    busy = {"left": 2}

    def busy_twice(call: Call) -> Reply:
        if call.fanout == 2 and busy["left"]:
            busy["left"] -= 1
            return error(call, 429, "overloaded", "all max_inflight slots are busy")
        return good(call)  # type: ignore[return-value]

    handlers["transcribe"] = busy_twice
    gw = gateway(handlers)
    out = run_request(store, gw.url, rid, put_upload(), {"query": "bus", **PER_SENTENCE})
    assert out.metrics.request.retries == 2
    assert [m.clip_index for m in out.matches] == [2]
    retried = [r for r in out.metrics.invocations if r.step == "transcribe-0002"]
    assert [r.outcome for r in retried] == ["retried", "retried", "ok"]


def test_input_outside_the_bucket_is_refused_before_any_work(
    gateway: Callable[..., ScriptedGateway], store: ObjectStore, rid: str
) -> None:
    gw = gateway({})
    for uri in ["s3://someone-elses-bucket/uploads/v.mp4", "s3://vsearch/uploads/../secret"]:
        with pytest.raises(InvalidRequest):
            run_request(store, gw.url, rid, uri, {"query": "x"})
    assert gw.calls == []
    assert read_status(store, rid) is None


def test_missing_upload_is_a_404_recorded_in_the_state(
    gateway: Callable[..., ScriptedGateway], store: ObjectStore, s3_server: Any, rid: str
) -> None:
    gw = gateway({})
    with pytest.raises(InputNotFound):
        run_request(store, gw.url, rid, f"s3://{s3_server.bucket}/uploads/nope.mp4", {"query": "x"})
    assert gw.calls == []
    status = read_status(store, rid)
    assert status is not None and status["status"] == "error"
    assert status["error"]["status"] == 404


@pytest.mark.parametrize(("outage", "recorded"), [(2, True), (9, False), (-1, False)])
def test_a_failure_is_recorded_once_storage_is_back(
    fake: Callable[..., FakeStages],
    gateway: Callable[..., ScriptedGateway],
    put_upload: Callable[..., str],
    store: ObjectStore,
    rid: str,
    monkeypatch: pytest.MonkeyPatch,
    outage: int,
    recorded: bool,
) -> None:
    # CI: an S3 restart (11 s) swallowed the error's state write, and the request answered 502
    # while its state said running. The write is tried again while storage is unavailable.
    handlers = speech_video(fake).handlers()
    handlers["cut-clips"] = lambda call: error(call, 422, "bad_input", "not decodable")
    gw = gateway(handlers)
    real = RequestState.finish_error
    tries: list[int] = []

    def flaky(self: RequestState, info: ErrorInfo) -> None:
        tries.append(1)
        if outage < 0:  # not an outage: waiting would not help
            raise ValueError("state document does not validate")
        if len(tries) <= outage:
            raise StorageUnavailable("object store unreachable: ConnectError")
        real(self, info)

    monkeypatch.setattr(RequestState, "finish_error", flaky)
    settings = PipelineSettings(error_record_waits_s=(0.01, 0.01, 0.01, 0.01))
    with pytest.raises(StageError):
        run_request(store, gw.url, rid, put_upload(), {"query": "flour"}, settings=settings)
    status = read_status(store, rid)
    assert status is not None
    if recorded:
        assert len(tries) == outage + 1
        assert status["status"] == "error" and status["error"]["code"] == "bad_input"
    else:  # it gives up after its waits, and says so in the log (state_write_failed, error)
        assert len(tries) == (1 if outage < 0 else 5)
        assert status["status"] == "running"
