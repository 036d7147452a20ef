"""Configuration from the environment and media probing."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from base.config import ConfigError, RuntimeSettings, StorageSettings
from base.errors import BadInput, InputTooLarge
from base.media import parse_probe, probe, require_duration
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
