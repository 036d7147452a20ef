"""`./vsearch search` as a user runs it: `--json` pipes, `--save` writes clips a player opens.

The end-to-end test runs the real CLI in a subprocess with no platform running (it starts the
embedded platform itself and stops it), on a generated video with two known sentences.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from harness.commands.search import clip_file_name, clip_files, render
from harness.media.generate import make_speech_video

ROOT = Path(__file__).resolve().parents[2]
SENTENCES = [
    "Please add two cups of flour to the bowl.",
    "The red bus stops at the station every morning.",
]


def vsearch(*args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(ROOT / "vsearch"), *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout
    )


def duration_s(path: Path) -> float:
    done = subprocess.run(
        ["ffprobe", "-v", "error", "-show_entries", "format=duration", "-of", "csv=p=0", path],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    return float(done.stdout)


def streams(path: Path) -> list[str]:
    done = subprocess.run(
        ["ffprobe", "-v", "error", "-show_entries", "stream=codec_type", "-of", "csv=p=0", path],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    return done.stdout.split()


def test_search_json_is_one_document_and_save_writes_playable_clips(tmp_path: Path) -> None:
    truth = make_speech_video(tmp_path / "talk.mp4", SENTENCES)
    state = tmp_path / "state"
    saved = tmp_path / "clips"
    done = vsearch(
        "search", str(truth.path), "-q", "flour", "--json", "--save", str(saved), "--all",
        "--state-dir", str(state),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout)  # the whole of stdout, nothing before or after
    # The platform's banner and its stop went to stderr.
    assert "gateway:" in done.stderr and "stopped" in done.stderr
    assert "gateway:" not in done.stdout
    [match] = result["matches"]
    assert "flour" in match["text"].lower()
    clips = {c["index"]: c for c in result["clips"]}
    assert len(clips) == len(SENTENCES)
    expected = {
        clip_file_name(match["clip_index"], match["start_s"], match["end_s"], match=True):
            match["end_s"] - match["start_s"],
        **{
            clip_file_name(c["index"], c["start_s"], c["end_s"], match=False):
                c["end_s"] - c["start_s"]
            for c in clips.values()
        },
    }  # fmt: skip
    assert sorted(p.name for p in saved.iterdir()) == sorted(expected)
    for name, want in expected.items():
        path = saved / name
        assert streams(path)[:2] and "video" in streams(path), name
        # Re-encoded clips: the container's duration is the clip's within a frame or two.
        assert duration_s(path) == pytest.approx(want, abs=0.15), name
    # The match is the clip with the sentence that says "flour".
    said = truth.sentences[0]
    assert match["start_s"] <= said.start_s + 0.3 and match["end_s"] >= said.end_s - 0.3


def test_json_usage_error_is_a_json_document(tmp_path: Path) -> None:
    done = vsearch("search", str(tmp_path / "missing.mp4"), "-q", "x", "--json", timeout=120)
    assert done.returncode == 2
    document = json.loads(done.stdout)
    assert document["error"]["code"] == "usage"
    assert "no such file" in document["error"]["message"]
    assert "no such file" in done.stderr


def test_status_json_when_not_running_is_a_json_document(tmp_path: Path) -> None:
    done = vsearch("status", "--json", "--state-dir", str(tmp_path / "none"), timeout=120)
    assert done.returncode == 3
    assert json.loads(done.stdout)["error"]["code"] == "not_running"


def test_human_output_keeps_the_platform_banner_off_stdout(tmp_path: Path) -> None:
    truth = make_speech_video(tmp_path / "talk.mp4", SENTENCES[:1])
    done = vsearch("search", str(truth.path), "-q", "bowl", "--state-dir", str(tmp_path / "s"))
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.startswith("video:"), done.stdout
    assert "gateway:" in done.stderr and "stopped" in done.stderr
    assert "--save DIR" in done.stdout  # the platform stopped: says how to keep the clips


def test_all_without_save_is_refused(tmp_path: Path) -> None:
    done = vsearch("search", str(tmp_path / "x.mp4"), "-q", "x", "--all", timeout=120)
    assert done.returncode == 2
    assert "--all needs --save" in done.stderr


RESULT = {
    "video": {
        "source_uri": "s3://vsearch/uploads/a/talk.mp4", "duration_s": 9.0, "width": 320,
        "height": 240, "has_audio": True, "sha256": "ab" * 32,
    },
    "query": "flour",
    "matches": [{
        "clip_index": 1, "start_s": 6.44, "end_s": 8.98, "text": "Add flour.",
        "clip_uri": "s3://vsearch/requests/r/search/match-0001.mp4",
    }],
    "clips": [
        {"index": 0, "start_s": 0.81, "end_s": 3.8, "transcript": "Hello.",
         "clip_uri": "s3://vsearch/requests/r/transcode-clip/0000.mp4"},
        {"index": 1, "start_s": 6.44, "end_s": 8.98, "transcript": "Add flour.",
         "clip_uri": "s3://vsearch/requests/r/transcode-clip/0001.mp4"},
    ],
    "metrics": {"request": {
        "end_to_end_s": 1, "critical_path_s": 1, "overhead_s": 0, "invocations": 3,
        "cold_starts": 0, "retries": 0,
    }},
}  # fmt: skip


def test_clip_names_say_index_and_times() -> None:
    assert clip_file_name(1, 6.44, 8.98, match=True) == "match-clip1_6.44-8.98s.mp4"
    assert list(clip_files(RESULT, every_clip=False)) == ["match-clip1_6.44-8.98s.mp4"]
    assert list(clip_files(RESULT, every_clip=True)) == [
        "match-clip1_6.44-8.98s.mp4", "clip0_0.81-3.80s.mp4", "clip1_6.44-8.98s.mp4",
    ]  # fmt: skip


def test_render_gives_http_links_while_up_and_says_how_to_keep_clips_otherwise() -> None:
    link = "http://127.0.0.1:9000/vsearch/requests/r/search/match-0001.mp4?X-Amz-Signature=x"
    up = render({"status": "ok", "outputs": RESULT, "links": {
        RESULT["matches"][0]["clip_uri"]: link}})  # fmt: skip
    assert link in up and "s3://vsearch/requests/r/search" not in up
    down = render({"status": "ok", "outputs": RESULT})
    assert "--save DIR" in down and "--keep" in down
    saved = render({"status": "ok", "outputs": RESULT, "saved": ["/tmp/c/match.mp4"]})
    assert "/tmp/c/match.mp4" in saved and "--save DIR" not in saved
    # On a cluster the platform stays up: no "stopped" note, no --keep to offer.
    cluster = render({"status": "ok", "outputs": RESULT, "cluster": "k8s"})
    assert "cluster's MinIO" in cluster and "--save DIR" in cluster
    assert "stopped" not in cluster and "--keep" not in cluster
