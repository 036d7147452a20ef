"""Configuration from the environment and media probing."""

from __future__ import annotations

import shutil
import threading
from pathlib import Path

import ffmpeg
import pytest

from base.config import ConfigError, RuntimeSettings, StorageSettings
from base.errors import BadInput, InputTooLarge
from base.media import (
    _looks_like_bad_input,
    _output_files,
    ffmpeg_binary,
    ffmpeg_threads,
    known_or_probe,
    mp4_duration,
    mp4_video_size,
    parse_probe,
    probe,
    require_duration,
    run,
    with_threads,
)
from base.processes import ProcessRunner


def test_credentials_have_no_defaults() -> None:
    with pytest.raises(ConfigError, match="AWS_ACCESS_KEY_ID"):
        StorageSettings.from_env({"S3_BUCKET": "b"})


def test_secrets_can_come_from_files_and_are_not_printed(tmp_path: Path) -> None:
    secret = tmp_path / "secret"
    secret.write_text("s3cr3t-value\n")
    settings = StorageSettings.from_env(
        {"S3_BUCKET": "b", "AWS_ACCESS_KEY_ID": "k", "AWS_SECRET_ACCESS_KEY_FILE": str(secret)}
    )
    assert settings.secret_key.get_secret_value() == "s3cr3t-value"
    assert "s3cr3t" not in repr(settings) and "s3cr3t" not in str(settings.model_dump())


def test_runtime_settings_read_openfaas_names() -> None:
    settings = RuntimeSettings.from_env({"exec_timeout": "2m", "max_inflight": "3", "PORT": "9"})
    assert (settings.exec_timeout_s, settings.max_inflight, settings.port) == (120.0, 3, 9)
    assert settings.max_queued == 0  # a replica refuses at once unless told to queue
    assert RuntimeSettings.from_env({"max_queued": "4"}).max_queued == 4
    with pytest.raises(ConfigError):
        RuntimeSettings.from_env({"exec_timeout": "soon"})


def test_parse_probe_ignores_cover_art_and_needs_a_stream() -> None:
    info = parse_probe(
        {
            "format": {"duration": "3.5", "format_name": "mov,mp4"},
            "streams": [
                {"codec_type": "audio", "sample_rate": "44100", "channels": 2},
                {"codec_type": "video", "disposition": {"attached_pic": 1}},
            ],
        }
    )
    assert info.has_audio and not info.has_video and info.duration_s == 3.5
    with pytest.raises(BadInput):
        parse_probe({"format": {"duration": "1"}, "streams": [{"codec_type": "data"}]})
    with pytest.raises(InputTooLarge):
        require_duration(info, max_duration_s=1.0)


def test_probe_real_media_and_reject_text(tmp_path: Path) -> None:
    runner = ProcessRunner(tmp_path, threading.Event(), deadline=float("inf"))
    video = tmp_path / "v.mp4"
    done = runner.run(
        ["ffmpeg", "-v", "error", "-f", "lavfi", "-i", "testsrc2=s=160x120:d=2:r=10",
         "-f", "lavfi", "-i", "sine=d=2", "-shortest", "-pix_fmt", "yuv420p", str(video)]
    )  # fmt: skip
    assert done.returncode == 0, done.stderr_tail()
    info = probe(runner, video)
    assert info.has_audio and info.has_video and (info.width, info.height) == (160, 120)
    assert abs(info.duration_s - 2.0) < 0.2 and info.fps == 10
    assert runner.peak_rss_bytes > 0 and runner.cpu_s > 0  # measured from wait4, per child
    text = tmp_path / "notes.mp4"
    text.write_text("just words")
    with pytest.raises(BadInput) as bad:
        probe(runner, text)
    # The error names the file, not the function's scratch directory.
    assert "notes.mp4" in bad.value.message and str(tmp_path) not in bad.value.message


def test_mp4_duration_reads_the_movie_header_as_ffprobe_does(tmp_path: Path) -> None:
    runner = ProcessRunner(tmp_path, threading.Event(), deadline=float("inf"))
    for name, extra in (("plain.mp4", []), ("fast.mp4", ["-movflags", "+faststart"])):
        video = tmp_path / name
        done = runner.run(
            ["ffmpeg", "-v", "error", "-f", "lavfi", "-i", "testsrc2=s=160x120:d=2.4:r=25",
             "-f", "lavfi", "-i", "sine=d=2.4", "-shortest", "-c:a", "aac", "-pix_fmt",
             "yuv420p", *extra, str(video)]
        )  # fmt: skip
        assert done.returncode == 0, done.stderr_tail()
        header = mp4_duration(video)
        assert header is not None and abs(header - probe(runner, video).duration_s) < 0.002
        assert mp4_video_size(video) == (160, 120)
    wav = tmp_path / "a.wav"
    runner.run(["ffmpeg", "-v", "error", "-f", "lavfi", "-i", "sine=d=1", str(wav)])
    (tmp_path / "junk.mp4").write_bytes(b"\x00\x00\x00\x08moov" + b"\xff" * 40)
    assert mp4_duration(wav) is None and mp4_duration(tmp_path / "junk.mp4") is None
    assert mp4_video_size(wav) is None and mp4_video_size(tmp_path / "junk.mp4") is None
    # Known facts are used as they are: no probe runs (the runner counts its children).
    known = probe(runner, wav)
    before = runner.cpu_s
    assert known_or_probe(runner, tmp_path / "missing.wav", known) is known
    assert runner.cpu_s == before


def test_ffmpeg_threads_go_before_every_input_and_output(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    src = ffmpeg.input("/in.mp4", ss="1.5")
    graph = ffmpeg.merge_outputs(
        ffmpeg.output(src["v:0"], "/out.mp4", vcodec="libx264"),
        ffmpeg.output(src["a:0"], "/out.wav", ac=1),
    )
    args = ffmpeg.compile(graph, cmd="ffmpeg")
    assert with_threads(args, _output_files(graph), None) == args
    threaded = with_threads(args, _output_files(graph), 1)
    for target in ("-i", "/out.mp4", "/out.wav"):
        at = threaded.index(target)
        assert threaded[at - 2 : at] == ["-threads", "1"], (target, threaded)
    assert threaded.count("-threads") == 3
    monkeypatch.setenv("FFMPEG_THREADS", "lots")
    with pytest.raises(ValueError, match="FFMPEG_THREADS"):
        ffmpeg_threads()
    # A real run with the setting still makes its output.
    monkeypatch.setenv("FFMPEG_THREADS", "1")
    runner = ProcessRunner(tmp_path, threading.Event(), deadline=float("inf"))
    out = tmp_path / "tone.wav"
    run(runner, ffmpeg.output(ffmpeg.input("sine=d=0.5", f="lavfi"), str(out)), what="test")
    assert abs(probe(runner, out).duration_s - 0.5) < 0.05


def test_errors_name_a_presigned_input_without_its_signature() -> None:
    from base.media import _without_paths

    url = (
        "http://127.0.0.1:9000/vsearch/requests/r1/in/talk.mp4?X-Amz-Algorithm=AWS4-HMAC-SHA256"
        "&X-Amz-Credential=AKIDEXAMPLE%2F20261205&X-Amz-Signature=0123abcd"
    )
    text = f"{url}: Invalid data found; X-Amz-Signature=feedbeef in a partial echo"
    clean = _without_paths(text, ["ffmpeg", "-i", url])
    assert clean.startswith("talk.mp4: Invalid data found")
    assert "0123abcd" not in clean and "feedbeef" not in clean and "AKIDEXAMPLE" not in clean


def test_vsearch_ffmpeg_chooses_the_binary_every_graph_runs_with(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    system = shutil.which("ffmpeg")
    assert system is not None
    chosen = tmp_path / "my-ffmpeg"
    chosen.symlink_to(system)
    runner = ProcessRunner(tmp_path, threading.Event(), deadline=float("inf"))
    graph = ffmpeg.input("anullsrc", f="lavfi", t="0.1").output(str(tmp_path / "a.wav"))
    monkeypatch.setenv("VSEARCH_FFMPEG", str(chosen))
    assert ffmpeg_binary() == str(chosen)
    run(runner, graph, what="silence")
    assert (tmp_path / "a.wav").stat().st_size > 44
    # It is really used: a binary that is not there fails the run.
    monkeypatch.setenv("VSEARCH_FFMPEG", str(tmp_path / "missing"))
    with pytest.raises(OSError):
        run(runner, graph, what="silence")
    monkeypatch.delenv("VSEARCH_FFMPEG")
    assert ffmpeg_binary() == "ffmpeg"


@pytest.mark.parametrize(
    "stderr",
    [
        # ffmpeg 7+ on a truncated mp4 (measured with ffmpeg 9.0.2, the static build).
        "[dec:h264 @ 0x5617] Decode error rate 1 exceeds maximum 0.666667",
        "[out#0/mp4 @ 0x5562] Nothing was written into output file, because at least one of "
        "its streams received no packets.",
        # ffmpeg 5 (Debian bookworm)
        "moov atom not found",
    ],
)
def test_a_truncated_input_is_bad_input_in_either_ffmpegs_words(stderr: str) -> None:
    assert _looks_like_bad_input(stderr)
    assert not _looks_like_bad_input("Conversion failed! out of memory")
