"""The node's images from our builds: pause (imported into containerd) and CoreDNS (pushed)."""

from __future__ import annotations

import hashlib
import json
import subprocess
from pathlib import Path

from harness.cluster import builder, oci_image
from harness.cluster.local import config as cfg
from harness.cluster.local.control_plane import binary


def platform_ref(name: str) -> str:
    """127.0.0.1:5001/platform/<name>:<pinned version> (the contract between the helpers)."""
    version = builder.pinned_version(builder.COMPONENTS[name])
    return f"{cfg.REGISTRY}/platform/{name}:{version}"


def pause_spec() -> oci_image.ImageSpec:
    return oci_image.ImageSpec(
        name=platform_ref("pause"),
        files={"/pause": oci_image.ImageFile(source=Path(binary("pause")))},
        entrypoint=("/pause",),
        user="65535:65535",
    )


def coredns_spec() -> oci_image.ImageSpec:
    return oci_image.ImageSpec(
        name=platform_ref("coredns"),
        files={"/coredns": oci_image.ImageFile(source=Path(binary("coredns")))},
        entrypoint=("/coredns",),
        user="65534:65534",
        exposed_ports=("1053/udp", "1053/tcp"),
    )


def netcheck_spec() -> oci_image.ImageSpec:
    return oci_image.ImageSpec(
        name=platform_ref("netcheck"),
        files={"/netcheck": oci_image.ImageFile(source=Path(binary("netcheck")))},
        entrypoint=("/netcheck",),
        user="65534:65534",
    )


def _inputs_digest(spec: oci_image.ImageSpec) -> str:
    digest = hashlib.sha256(spec.model_dump_json(exclude={"files"}).encode())
    for path, file in sorted(spec.files.items()):
        data = file.data if file.data is not None else Path(file.source or "").read_bytes()
        digest.update(f"{path}\0{file.mode}\0".encode() + hashlib.sha256(data).digest())
    return digest.hexdigest()


def build(c: cfg.ClusterConfig, spec: oci_image.ImageSpec) -> oci_image.BuiltImage:
    """The image's OCI layout under <state>/images/<name>, reused while its inputs are the same."""
    name = spec.name.rsplit("/", 1)[1].split(":")[0]
    layout = c.state_dir / "images" / name
    record = layout.with_suffix(".built.json")
    inputs = _inputs_digest(spec)
    if record.is_file() and (layout / "index.json").is_file():
        saved = json.loads(record.read_text())
        if saved.get("inputs") == inputs:
            return oci_image.BuiltImage.model_validate(saved["image"])
    image = oci_image.build_layout(spec, layout)
    record.write_text(json.dumps({"inputs": inputs, "image": image.model_dump(mode="json")}))
    return image


def import_into_containerd(c: cfg.ClusterConfig, image: oci_image.BuiltImage) -> None:
    """``ctr -n k8s.io images import`` of the layout's tar (no registry involved)."""
    tar = oci_image.export_tar(image.layout, image.layout.with_suffix(".tar"))
    subprocess.run(
        [
            binary("ctr"),
            "--address",
            str(c.containerd_socket),
            "--namespace",
            "k8s.io",
            "images",
            "import",
            str(tar),
        ],
        capture_output=True,
        text=True,
        check=True,
    )


def push(image: oci_image.BuiltImage) -> str:
    """Push the layout to the local registry with skopeo; the reference pinned by digest."""
    tag = image.name.rsplit(":", 1)[1]
    subprocess.run(
        [
            "skopeo",
            "copy",
            "--quiet",
            "--dest-tls-verify=false",
            f"oci:{image.layout}:{tag}",
            f"docker://{image.name}",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    return f"{image.name.rsplit(':', 1)[0]}@{image.manifest_digest}"
