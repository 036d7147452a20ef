"""The Bazel hand-off with real OCI layouts (harness/cluster/oci_image.py makes them) and the
real skopeo: layouts found where Bazel writes them, tags from the commit, and the digest the
registry serves equal to the layout's own. The registry half runs when the local platform's
registry answers on 127.0.0.1:5001, and skips saying so otherwise."""

from __future__ import annotations

import hashlib
import re
import shutil
import subprocess
import uuid
from pathlib import Path

import httpx
import pytest

from harness.backends.cluster import images
from harness.backends.cluster.tools import ClusterError, Runner
from harness.cluster.oci_image import ImageFile, ImageSpec, build_layout
from harness.functions import load

REGISTRY = "127.0.0.1:5001"


def _layout(path: Path, text: str) -> str:
    spec = ImageSpec(
        name=f"{REGISTRY}/vsearch/test:1", files={"/hello": ImageFile(data=text.encode())}
    )
    return build_layout(spec, path).manifest_digest


def _registry_up() -> bool:
    try:
        with httpx.Client(trust_env=False, timeout=3) as http:
            return http.get(f"http://{REGISTRY}/v2/").status_code == 200
    except httpx.HTTPError:
        return False


def test_layouts_are_found_where_bazel_writes_them(tmp_path: Path) -> None:
    functions = {d.name: d for d in load().functions}
    bazel_bin = tmp_path / "bazel-bin"
    digest = _layout(bazel_bin / "stages" / "cut_clips" / "index", "cut")
    _layout(bazel_bin / "orchestrator" / "index", "orch")
    cut = functions["cut-clips"]
    assert images.image_layout(bazel_bin, cut) == bazel_bin / "stages" / "cut_clips" / "index"
    assert images.image_layout(bazel_bin / "stages", cut) == (
        bazel_bin / "stages" / "cut_clips" / "index"
    )
    assert images.image_layout(bazel_bin, functions["orchestrator"]) == (
        bazel_bin / "orchestrator" / "index"
    )
    assert images.image_layout(bazel_bin, functions["transcribe"]) is None
    assert images.layout_digest(bazel_bin / "stages" / "cut_clips" / "index") == digest
    by_name = tmp_path / "by-name"
    _layout(by_name / "search", "s")
    assert images.image_layout(by_name, functions["search"]) == by_name / "search"


def test_missing_layouts_are_all_named(tmp_path: Path) -> None:
    runner = Runner(tmp_path / "log")
    with pytest.raises(ClusterError, match="bazel-bin/<package>/index") as err:
        images.push_layouts(runner, load().functions, tmp_path, REGISTRY, "t")
    assert "cut-clips (no OCI layout at" in str(err.value) and "stages/cut_clips" in str(err.value)


def test_commit_tag_is_the_short_head_and_says_dirty(tmp_path: Path) -> None:
    tag = images.commit_tag()
    assert re.fullmatch(r"[0-9a-f]{7,40}(-dirty)?", tag), tag
    repo = tmp_path / "repo"
    repo.mkdir()
    git = ["git", "-C", str(repo), "-c", "user.email=t@t", "-c", "user.name=t"]
    subprocess.run([*git, "init", "-q"], check=True)
    (repo / "f").write_text("1")
    subprocess.run([*git, "add", "f"], check=True)
    subprocess.run([*git, "commit", "-qm", "one"], check=True)
    head = subprocess.run(
        [*git, "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert images.commit_tag(repo) == head
    (repo / "untracked").write_text("x")  # not part of any build input Git knows
    assert images.commit_tag(repo) == head
    (repo / "f").write_text("2")
    assert images.commit_tag(repo) == f"{head}-dirty"


@pytest.mark.skipif(shutil.which("skopeo") is None, reason="no skopeo (apt-get install skopeo)")
def test_skopeo_copies_the_layout_byte_for_byte(tmp_path: Path) -> None:
    digest = _layout(tmp_path / "layout", "bytes")
    out = tmp_path / "copied"
    subprocess.run(
        ["skopeo", "copy", "--all", f"oci:{tmp_path / 'layout'}", f"dir:{out}"],
        check=True, capture_output=True,
    )  # fmt: skip
    manifest = (out / "manifest.json").read_bytes()
    assert "sha256:" + hashlib.sha256(manifest).hexdigest() == digest


@pytest.mark.skipif(shutil.which("skopeo") is None, reason="no skopeo (apt-get install skopeo)")
def test_push_to_the_real_registry_pins_the_layout_digest(tmp_path: Path) -> None:
    if not _registry_up():
        pytest.skip(f"no registry answering on http://{REGISTRY}/v2/ (`./vsearch platform up`)")
    decl = (
        load()
        .get("search")
        .model_copy(update={"name": "k8s-handoff-test", "module": "stages.k8s_handoff_test"})
    )
    bazel_bin = tmp_path / "bazel-bin"
    digest = _layout(bazel_bin / "stages" / "k8s_handoff_test" / "index", uuid.uuid4().hex)
    tag = f"test-{uuid.uuid4().hex[:8]}"
    runner = Runner(tmp_path / "commands.log")
    pushed = images.push_layouts(runner, [decl], bazel_bin, REGISTRY, tag)
    assert pushed == {"k8s-handoff-test": digest}
    # A build that claims another digest is refused.
    with pytest.raises(ClusterError, match="the build says"):
        images.push_layouts(
            runner, [decl], bazel_bin, REGISTRY, tag, expected={decl.name: "sha256:" + "0" * 64}
        )


def test_images_push_command_names_what_bazel_has_not_built(tmp_path: Path) -> None:
    import os
    import sys

    root = Path(__file__).resolve().parents[3]
    done = subprocess.run(
        [sys.executable, "-m", "harness.cli", "images", "push", "--image-dir", str(tmp_path),
         "--tag", "t1"],
        cwd=root, env={**os.environ, "PYTHONPATH": str(root)}, capture_output=True, text=True,
        timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 1, done.stderr
    assert f"cut-clips (no OCI layout at {tmp_path}/stages/cut_clips/index)" in done.stderr
    assert "Traceback" not in done.stderr
