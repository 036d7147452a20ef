"""Platform images: names and tags by the contract, the binary as entrypoint, skopeo reads them."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from harness.cluster import builder
from harness.cluster.platform_images import IMAGES, tag_for, write_layouts


def _blob(layout: Path, digest: str) -> dict:
    return json.loads((layout / "blobs" / "sha256" / digest.split(":", 1)[1]).read_bytes())


def test_tag_for_keeps_pseudo_versions_and_replaces_what_tags_forbid() -> None:
    assert tag_for("v0.0.0-20260702090804-8d803bf9e265") == "v0.0.0-20260702090804-8d803bf9e265"
    assert tag_for("v2.8.3+incompatible") == "v2.8.3_incompatible"


@pytest.mark.parametrize("name", sorted(IMAGES))
def test_layout_is_named_by_contract_and_runs_the_binary(tmp_path: Path, name: str) -> None:
    program = tmp_path / "prog"
    program.write_bytes(b"\x7fELF-not-really")
    built = write_layouts(
        [name], tmp_path / "out", binary_of=lambda component: (program, "v1.2.3")
    )[name]
    assert built.name == f"127.0.0.1:5001/platform/{name}:v1.2.3"
    manifest = _blob(built.layout, built.manifest_digest)
    config = _blob(built.layout, manifest["config"]["digest"])["config"]
    assert config["Entrypoint"] == [IMAGES[name].path]
    assert config["User"] == IMAGES[name].user


def test_unbuilt_program_names_the_build_command(tmp_path: Path) -> None:
    with pytest.raises(builder.PlatformBuildError, match="platform build openfaas-gateway"):
        write_layouts(["openfaas-gateway"], tmp_path / "out", cache=tmp_path / "empty")


@pytest.mark.skipif(shutil.which("skopeo") is None, reason="skopeo is not installed")
def test_built_gateway_image_is_readable_by_skopeo(tmp_path: Path) -> None:
    record = builder.cached_record("openfaas-gateway")
    if record is None:
        pytest.skip("openfaas-gateway is not built (./vsearch platform build openfaas-gateway)")
    built = write_layouts(["openfaas-gateway"], tmp_path)["openfaas-gateway"]
    tag = built.name.rsplit(":", 1)[1]
    out = subprocess.run(
        ["skopeo", "inspect", "--raw", f"oci:{built.layout}:{tag}"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert json.loads(out.stdout)["config"]["digest"].startswith("sha256:")
