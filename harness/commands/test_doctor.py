"""`./vsearch doctor`: what each path has and lacks, and the command that installs it."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from harness.commands import doctor

ROOT = Path(__file__).resolve().parents[2]


def fake_which(*present: str):
    return lambda name: f"/fake/bin/{name}" if name in present else None


def engine(returncode: int, out: str = "28.1.1"):
    def run(args, **kwargs):
        assert args[:2] == ["docker", "info"]
        return subprocess.CompletedProcess(args, returncode, out if returncode == 0 else "", "no")

    return run


def made_venv(tmp_path: Path) -> Path:
    (tmp_path / ".venv" / "bin").mkdir(parents=True)
    (tmp_path / ".venv" / "bin" / "python").write_text("")
    (tmp_path / ".venv" / ".lock-sha256").write_text("x")
    return tmp_path


def test_embedded_ready_with_tools_and_venv(tmp_path: Path) -> None:
    which = fake_which("ffmpeg", "ffprobe", "flite", "espeak-ng", "apt-get")
    report = doctor.embedded(which, made_venv(tmp_path))
    assert report.ready and report.install is None


def test_embedded_names_what_is_missing_and_one_command(tmp_path: Path) -> None:
    report = doctor.embedded(fake_which("ffmpeg", "ffprobe", "apt-get"), tmp_path)
    assert not report.ready
    missing = {c.name for c in report.checks if c.required and not c.present}
    assert missing == {"flite", "espeak-ng", ".venv"}
    assert report.install is not None
    assert "apt-get install -y ffmpeg flite espeak-ng" in report.install
    assert report.install.endswith("./vsearch --help")


def test_cluster_missing_tools_and_a_stopped_engine() -> None:
    report = doctor.cluster(fake_which("docker", "kubectl"), engine(1))
    assert not report.ready
    missing = {c.name for c in report.checks if c.required and not c.present}
    assert missing == {"docker engine", "kind", "helm"}
    assert "kind.sigs.k8s.io/dl/v0.33.0/kind-" in report.install
    assert "get-helm-3" in report.install
    ready = doctor.cluster(fake_which("docker", "kubectl", "kind", "helm"), engine(0))
    assert ready.ready and ready.install is None
    assert next(c for c in ready.checks if c.name == "docker engine").detail == "server 28.1.1"


def test_bazel_offline_without_fetched_deps_points_at_the_script(tmp_path: Path) -> None:
    report = doctor.bazel_offline(fake_which("apt-get"), cache=tmp_path)
    assert not report.ready
    assert {"pinned debs", "pinned wheels"} <= {c.name for c in report.checks if not c.present}
    assert report.install is not None and "platforms/offline/bazel-test.sh" in report.install


def test_bazel_online_wants_bazelisk(tmp_path: Path) -> None:
    (tmp_path / ".bazelversion").write_text("8.4.2\n")
    missing = doctor.bazel_online(fake_which(), tmp_path)
    assert not missing.ready and "bazelisk" in missing.install
    assert doctor.bazel_online(fake_which("bazelisk"), tmp_path).ready


def test_doctor_json_from_the_cli() -> None:
    done = subprocess.run(
        [str(ROOT / "vsearch"), "doctor", "--json"], cwd=ROOT, capture_output=True, text=True,
        timeout=300,
    )  # fmt: skip
    report = json.loads(done.stdout)
    assert [p["path"] for p in report["paths"]] == [
        "embedded", "kind", "bazel-offline", "bazel-online",
    ]  # fmt: skip
    assert done.returncode == (0 if report["paths"][0]["ready"] else 1)
    for path in report["paths"]:
        assert path["ready"] == all(c["present"] for c in path["checks"] if c["required"])
        assert (path["install"] is None) == path["ready"]
