"""The lost/duplicated-output check the fault tests judge by: it must see a lost or doubled
output, and accept a request whose sentences shared transcribe calls."""

from __future__ import annotations

from harness.reliability.support import output_problems

RESULT = {
    "video": {"has_audio": True, "has_video": True},
    "clips": [{"index": 0}, {"index": 1}, {"index": 2}],
}


def keys(packs: dict[int, int]) -> set[str]:
    """A finished request's keys; packs: first clip of each transcribe call -> its clips."""
    out = {"result.json", "state.json"}
    out |= {f"steps/{s}.json" for s in ("import", "sha256", "extract-audio", "segment-speech")}
    out |= {"steps/cut-clips.json", "steps/search.json"}
    for i in range(3):
        out |= {f"cut-clips/clip-{i:04d}.mp4", f"transcode-clip/clip-{i:04d}.mp4"}
        out |= {f"transcode-clip/clip-{i:04d}.wav", f"steps/transcode-clip-{i:04d}.json"}
        out |= {f"steps/sample-frames-{i:04d}.json", f"steps/detect-objects-{i:04d}-00.json"}
    for first, count in packs.items():
        out |= {f"steps/transcribe-{first:04d}.json", f"transcribe/transcript-{first:04d}.json"}
        out |= {f"transcribe/transcript-{first:04d}-{k:02d}.json" for k in range(count)}
    return out


def test_one_call_for_all_sentences_and_one_per_sentence_both_pass() -> None:
    assert output_problems(keys({0: 3}), RESULT) == []
    assert output_problems(keys({0: 1, 1: 1, 2: 1}), RESULT) == []
    assert output_problems(keys({0: 2, 2: 1}), RESULT) == []


def test_a_lost_or_doubled_transcript_is_named() -> None:
    lost = keys({0: 3}) - {"transcribe/transcript-0000-01.json"}
    assert any("parts" in p for p in output_problems(lost, RESULT))
    doubled = keys({0: 3}) | {"transcribe/transcript-0001-00.json"}
    assert any("parts" in p for p in output_problems(doubled, RESULT))
    no_whole = keys({0: 3}) - {"transcribe/transcript-0000.json"}
    assert any("transcript-" in p for p in output_problems(no_whole, RESULT))
    no_step = keys({0: 2, 2: 1}) - {"steps/transcribe-0002.json"}
    assert output_problems(no_step, RESULT) == ["steps missing ['transcribe-0002'], extra []"]
    no_clip = keys({0: 3}) - {"cut-clips/clip-0001.mp4"}
    assert any("cut-clips" in p for p in output_problems(no_clip, RESULT))
