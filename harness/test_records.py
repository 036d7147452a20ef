"""Content checks decide success: handmade results that are right, and ones that are wrong in
the ways the prior attempt's were (dummy transcripts, 1 s processed, no detections)."""

from __future__ import annotations

import copy

import pytest

from harness.records import (
    CheckResult,
    FunctionPlatform,
    InvocationSample,
    RequestRecord,
    check_content,
    classify,
    content_ok,
    expected_frame_times,
    extract_result,
    invocations_from_result,
    normalize_text,
    platform_from_statuses,
    word_error_rate,
)
from harness.synthetic import MIB, broken, demo_truth, envelope, good_result, invocation


def _by_name(checks: list[CheckResult]) -> dict[str, CheckResult]:
    return {c.name: c for c in checks}


def test_correct_result_passes_every_check() -> None:
    truth = demo_truth()
    checks = check_content(good_result(truth), truth)
    assert content_ok(checks)
    names = _by_name(checks)
    assert {"clips", "transcripts", "wer", "query_match", "objects[0]"} <= set(names)
    assert all(f"sentence[{i}]" in names for i in range(3))
    assert names["wer"].value is not None and names["wer"].value < 0.35
    assert classify(200, checks) == "ok"


def test_truth_model_from_generator_is_accepted() -> None:
    generate = pytest.importorskip("harness.media.generate")
    truth = generate.VideoTruth.model_validate(demo_truth())
    assert content_ok(check_content(good_result(demo_truth()), truth))


def test_envelope_and_bare_result_are_both_read() -> None:
    result = good_result()
    assert extract_result(envelope(result)) == result
    assert extract_result(result) == result
    assert extract_result({"status": "error", "error": {"code": "x"}}) is None
    assert content_ok(check_content(envelope(result), demo_truth()))


@pytest.mark.parametrize(
    ("how", "failing"),
    [
        ("dummy_transcripts", {"wer", "sentence[0]", "sentence[1]", "sentence[2]"}),
        ("no_clips", {"clips", "transcripts", "wer", "query_match"}),
        ("one_second", {"wer", "sentence[1]", "sentence[2]"}),
        ("no_objects", {"objects[0]"}),
        ("wrong_match", {"query_match"}),
        ("no_match", {"query_match"}),
    ],
)
def test_wrong_content_fails(how: str, failing: set[str]) -> None:
    truth = demo_truth()
    checks = check_content(broken(good_result(truth), how), truth)
    failed = {c.name for c in checks if c.status == "fail"}
    assert failing <= failed, (how, failed)
    assert classify(200, checks) == "failed_content"


def test_empty_transcript_in_a_speech_clip_fails() -> None:
    truth = demo_truth()
    result = good_result(truth)
    result["clips"][1]["transcript"] = ""
    names = _by_name(check_content(result, truth))
    assert names["transcripts"].status == "fail"
    assert "1" in names["transcripts"].detail


def test_wer_threshold_is_applied() -> None:
    truth = demo_truth()
    result = good_result(truth)
    # Two wrong words out of 27: well under 0.35.
    result["clips"][0]["transcript"] = "The quick brown box jumps over the hazy dog."
    assert _by_name(check_content(result, truth))["wer"].status == "pass"
    strict = check_content(result, truth, wer_threshold=0.05)
    assert _by_name(strict)["wer"].status == "fail"


def test_clip_times_outside_video_fail() -> None:
    truth = demo_truth()
    result = good_result(truth)
    result["clips"][2]["end_s"] = 40.0
    assert _by_name(check_content(result, truth))["clip_times"].status == "fail"


def test_object_check_skipped_when_no_frame_saw_the_span() -> None:
    truth = demo_truth()
    truth["objects"][0].update(start_s=18.0, end_s=20.0)  # after the last clip
    result = good_result(truth)
    assert _by_name(check_content(result, truth))["objects[0]"].status == "skip"


def test_object_missed_by_detector_fails_when_a_frame_was_sampled_inside() -> None:
    truth = demo_truth()
    result = broken(good_result(truth), "no_objects")
    # Clip 1 (6.3-9.3 s) is shorter than the 5 s interval: its middle frame (7.8 s) was examined.
    assert 7.8 in {round(t, 3) for t in expected_frame_times(result, 5.0)}
    assert _by_name(check_content(result, truth))["objects[0]"].status == "fail"
    # Without knowing the sampling, no judgement is possible.
    unknown = check_content(result, truth, frame_interval_s=None)
    assert _by_name(unknown)["objects[0]"].status == "skip"


def test_all_expected_labels_required() -> None:
    truth = demo_truth()
    truth["objects"][0]["labels"] = ["person", "bus"]
    checks = _by_name(check_content(good_result(demo_truth()), truth))
    assert checks["objects[0]"].status == "fail"
    assert "bus" in checks["objects[0]"].detail


def test_query_not_spoken_expects_no_match() -> None:
    truth = demo_truth()
    result = good_result(truth, query="giraffe")
    assert result["matches"] == []
    assert content_ok(check_content(result, truth))
    spurious = copy.deepcopy(result)
    spurious["matches"] = copy.deepcopy(good_result(truth)["matches"])
    assert not content_ok(check_content(spurious, truth))


def test_silent_video_has_no_speech_checks() -> None:
    truth = {**demo_truth(), "sentences": [], "objects": []}
    result = {**good_result(truth), "clips": [], "matches": [], "mode": "whole_video"}
    checks = check_content(result, truth)
    assert content_ok(checks)
    assert _by_name(checks)["clips"].status == "skip"


def test_missing_result_fails() -> None:
    checks = check_content(None, demo_truth())
    assert not content_ok(checks)
    assert classify(200, checks) == "failed_content"
    assert classify(200, []) == "failed_content"  # nothing checked is not a success


def test_normalisation_and_wer() -> None:
    assert normalize_text("Don't add 2 cups!") == "dont add two cups"
    assert word_error_rate("a b c d", "a b c d") == 0.0
    assert word_error_rate("a b c d", "a x c d") == pytest.approx(0.25)
    assert word_error_rate("a b", "") == 1.0


@pytest.mark.parametrize(
    ("status", "timed_out", "outcome"),
    [
        (429, False, "refused"),
        (500, False, "error"),
        (None, False, "error"),
        (504, False, "timeout"),
        (None, True, "timeout"),
        (502, False, "error"),
    ],
)
def test_classify_statuses(status: int | None, timed_out: bool, outcome: str) -> None:
    assert classify(status, None, timed_out=timed_out) == outcome


def test_invocations_flattened_from_nested_metrics() -> None:
    result = good_result()
    samples = invocations_from_result(envelope(result))
    assert len(samples) == len(result["metrics"]["invocations"]) + 1
    orch = [s for s in samples if s.function == "orchestrator"]
    assert len(orch) == 1 and orch[0].peak_rss_bytes == 150 * MIB
    t = next(s for s in samples if s.function == "transcribe")
    assert t.wall_s == 2.5 and t.peak_rss_bytes == 420 * MIB and t.memory_limit_bytes
    assert t.gb_s_measured() == pytest.approx(2.5 * 420 / 1024)
    assert t.gb_s_configured() == pytest.approx(2.5 * 1.0)


def test_invocation_sample_tolerates_flat_and_missing_fields() -> None:
    flat = InvocationSample.from_raw({"function": "search", "wall_s": 0.2, "cold_start": True})
    assert flat.wall_s == 0.2 and flat.cold_start and flat.footprint_bytes is None
    assert flat.gb_s_measured() is None and flat.gb_s_configured() is None
    bare = InvocationSample.from_raw({})
    assert bare.function == "?" and bare.exec_s is None
    waited = InvocationSample.from_raw(invocation("transcribe", cold=True, cold_wait_s=3.0))
    assert waited.waited_for_cold_start and waited.cold_start


def test_record_timing_from_schedule() -> None:
    rec = RequestRecord(
        index=0, request_id="x", scheduled_s=1.0, sent_s=1.01, finished_s=4.0, outcome="ok"
    ).finalize_timing()
    assert rec.latency_s == pytest.approx(3.0)
    assert rec.send_lag_s == pytest.approx(0.01)
    assert rec.admitted
    assert not RequestRecord(index=1, request_id="y", scheduled_s=0, outcome="refused").admitted


def test_platform_snapshot_delta() -> None:
    def status(oom: int, cold: int, ready: int) -> dict:
        return {
            "name": "transcribe",
            "availableReplicas": ready,
            "vsearch": {
                "memory_limit_bytes": 1 << 30,
                "peak_memory_bytes": 500 * MIB,
                "oom_kills": oom,
                "cold_starts": cold,
                "min_replicas": 1,
            },
        }

    snaps = platform_from_statuses([status(3, 7, 0)], before=[status(1, 2, 1)])
    t = snaps["transcribe"]
    assert isinstance(t, FunctionPlatform)
    assert (t.oom_kills, t.cold_starts, t.warm_replicas) == (2, 5, 1)
    assert t.peak_memory_bytes == 500 * MIB and t.memory_limit_bytes == 1 << 30
