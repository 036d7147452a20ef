"""Scratch OCI images: a valid layout, reproducible digests, readable by skopeo."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest

from harness.cluster.oci_image import ImageFile, ImageSpec, build_layout, export_tar


def _spec(tmp_path: Path, payload: bytes = b"#!/bin/true\n") -> ImageSpec:
    program = tmp_path / "prog"
    program.write_bytes(payload)
    return ImageSpec(
        name="localhost:5001/platform/demo:1.0",
        files={"/usr/local/bin/demo": ImageFile(source=program)},
        directories={"/tmp": 0o1777},
        entrypoint=("/usr/local/bin/demo",),
        cmd=("--flag",),
        user="65534:65534",
        exposed_ports=("8080/tcp",),
    )


def _blob(layout: Path, digest: str) -> bytes:
    data = (layout / "blobs" / "sha256" / digest.split(":", 1)[1]).read_bytes()
    assert "sha256:" + hashlib.sha256(data).hexdigest() == digest
    return data


def test_layout_links_index_manifest_config_and_layer(tmp_path: Path) -> None:
    built = build_layout(_spec(tmp_path), tmp_path / "layout")
    index = json.loads((built.layout / "index.json").read_text())
    entry = index["manifests"][0]
    assert entry["digest"] == built.manifest_digest
    assert entry["annotations"]["io.containerd.image.name"] == "localhost:5001/platform/demo:1.0"
    assert entry["annotations"]["org.opencontainers.image.ref.name"] == "1.0"
    manifest = json.loads(_blob(built.layout, built.manifest_digest))
    config = json.loads(_blob(built.layout, manifest["config"]["digest"]))
    assert config["config"]["Entrypoint"] == ["/usr/local/bin/demo"]
    assert config["config"]["User"] == "65534:65534"
    layer = _blob(built.layout, manifest["layers"][0]["digest"])
    raw = gzip.decompress(layer)
    assert config["rootfs"]["diff_ids"] == ["sha256:" + hashlib.sha256(raw).hexdigest()]
    with tarfile.open(fileobj=io.BytesIO(raw)) as tar:
        members = {m.name: m for m in tar.getmembers()}
    assert set(members) == {"tmp", "usr", "usr/local", "usr/local/bin", "usr/local/bin/demo"}
    assert members["usr/local/bin/demo"].mode == 0o755
    assert members["tmp"].mode == 0o1777


def test_same_inputs_give_the_same_digests(tmp_path: Path) -> None:
    first = build_layout(_spec(tmp_path), tmp_path / "a")
    again = build_layout(_spec(tmp_path), tmp_path / "b")
    assert first.manifest_digest == again.manifest_digest
    changed = build_layout(_spec(tmp_path, b"#!/bin/false\n"), tmp_path / "c")
    assert changed.layer_digest != first.layer_digest
    # Rebuilding into the same directory leaves no stale blobs behind.
    build_layout(_spec(tmp_path, b"#!/bin/false\n"), tmp_path / "a")
    assert len(list((tmp_path / "a" / "blobs" / "sha256").iterdir())) == 3
    tar_a = export_tar(tmp_path / "b", tmp_path / "b.tar").read_bytes()
    tar_b = export_tar(tmp_path / "b", tmp_path / "b2.tar").read_bytes()
    assert tar_a == tar_b


@pytest.mark.skipif(not shutil.which("skopeo"), reason="skopeo is not installed")
def test_skopeo_reads_and_copies_the_layout(tmp_path: Path) -> None:
    built = build_layout(_spec(tmp_path), tmp_path / "layout")
    out = subprocess.run(
        ["skopeo", "inspect", "--raw", f"oci:{built.layout}:1.0"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    assert "sha256:" + hashlib.sha256(out.encode()).hexdigest() == built.manifest_digest
    subprocess.run(
        ["skopeo", "copy", "--quiet", f"oci:{built.layout}:1.0", f"dir:{tmp_path / 'copy'}"],
        check=True,
    )
    assert (tmp_path / "copy" / built.layer_digest.split(":", 1)[1]).exists()
