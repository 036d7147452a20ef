"""FROM-scratch OCI images of the platform's static Go programs, without pulling anything.

No image registry is reachable from our machines, so the cluster's own images (pause, CoreDNS,
the registry, the OpenFaaS gateway, MinIO...) are assembled here from the binaries that
``./vsearch platform build`` made: one gzip layer holding the files, an image config, a manifest
and an index, written as an OCI image layout directory (what ``skopeo copy oci:DIR ...`` pushes)
or as a tar of that layout (what ``ctr -n k8s.io images import`` loads).

Builds are reproducible: every tar entry has mtime 0, owner root (or the given uid), sorted
order, and the gzip header carries no name or time, so the same inputs give the same digests.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import tarfile
from collections.abc import Mapping
from pathlib import Path, PurePosixPath

from pydantic import BaseModel, ConfigDict, Field

MEDIA_INDEX = "application/vnd.oci.image.index.v1+json"
MEDIA_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MEDIA_CONFIG = "application/vnd.oci.image.config.v1+json"
MEDIA_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
# containerd names an imported image after this annotation of the index's manifest entry.
REF_NAME = "org.opencontainers.image.ref.name"
CONTAINERD_NAME = "io.containerd.image.name"


class ImageFile(BaseModel):
    """One file of the image: from a host path or given bytes."""

    model_config = ConfigDict(frozen=True)

    source: Path | None = None
    data: bytes | None = None
    mode: int = 0o755


class ImageSpec(BaseModel):
    """What goes into a scratch image and how it runs."""

    model_config = ConfigDict(frozen=True)

    name: str  # full reference, e.g. localhost:5001/platform/pause:3.10-vsearch
    files: Mapping[str, ImageFile]  # absolute path in the image -> content
    directories: Mapping[str, int] = Field(default_factory=dict)  # path -> mode, e.g. /tmp 1777
    entrypoint: tuple[str, ...] = ()
    cmd: tuple[str, ...] = ()
    env: tuple[str, ...] = ()
    user: str = ""  # "65534:65534" to run as nobody
    working_dir: str = ""
    exposed_ports: tuple[str, ...] = ()  # "8080/tcp"
    labels: Mapping[str, str] = Field(default_factory=dict)
    architecture: str = "amd64"


class BuiltImage(BaseModel):
    """Where the layout is and the digests it holds."""

    name: str
    layout: Path
    manifest_digest: str
    config_digest: str
    layer_digest: str
    size: int  # bytes of manifest + config + layer


def _tar_info(path: str, *, mode: int, size: int = 0, directory: bool = False) -> tarfile.TarInfo:
    info = tarfile.TarInfo(path.lstrip("/"))
    info.mode = mode
    info.mtime = 0
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    info.size = size
    info.type = tarfile.DIRTYPE if directory else tarfile.REGTYPE
    return info


def _layer(spec: ImageSpec) -> tuple[bytes, str]:
    """The gzip layer and the sha256 of its uncompressed tar (the config's diff_id)."""
    entries: dict[str, tuple[int, bytes | None]] = {}
    for path, mode in spec.directories.items():
        entries[path] = (mode, None)
    for path, file in spec.files.items():
        for parent in PurePosixPath(path).parents:
            if str(parent) != "/":
                entries.setdefault(str(parent), (0o755, None))
        data = file.data if file.data is not None else Path(file.source or "").read_bytes()
        entries[path] = (file.mode, data)
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for path in sorted(entries):
            mode, data = entries[path]
            if data is None:
                tar.addfile(_tar_info(path, mode=mode, directory=True))
            else:
                tar.addfile(_tar_info(path, mode=mode, size=len(data)), io.BytesIO(data))
    uncompressed = raw.getvalue()
    compressed = io.BytesIO()
    with gzip.GzipFile(fileobj=compressed, mode="wb", filename="", mtime=0) as gz:
        gz.write(uncompressed)
    return compressed.getvalue(), "sha256:" + hashlib.sha256(uncompressed).hexdigest()


def _write_blob(layout: Path, data: bytes) -> str:
    digest = hashlib.sha256(data).hexdigest()
    blob = layout / "blobs" / "sha256" / digest
    blob.parent.mkdir(parents=True, exist_ok=True)
    blob.write_bytes(data)
    return "sha256:" + digest


def _json(obj: object) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()


def build_layout(spec: ImageSpec, layout: Path) -> BuiltImage:
    """Write ``spec`` as an OCI image layout at ``layout`` (replacing what was there)."""
    for old in (layout / "blobs", layout / "index.json", layout / "oci-layout"):
        if old.is_dir():
            for blob in sorted(old.rglob("*"), reverse=True):
                blob.unlink() if blob.is_file() else blob.rmdir()
            old.rmdir()
        elif old.exists():
            old.unlink()
    layout.mkdir(parents=True, exist_ok=True)
    layer, diff_id = _layer(spec)
    layer_digest = _write_blob(layout, layer)
    config: dict[str, object] = {"Env": list(spec.env) or ["PATH=/usr/local/bin:/bin"]}
    if spec.entrypoint:
        config["Entrypoint"] = list(spec.entrypoint)
    if spec.cmd:
        config["Cmd"] = list(spec.cmd)
    if spec.user:
        config["User"] = spec.user
    if spec.working_dir:
        config["WorkingDir"] = spec.working_dir
    if spec.exposed_ports:
        config["ExposedPorts"] = {port: {} for port in spec.exposed_ports}
    if spec.labels:
        config["Labels"] = dict(spec.labels)
    config_bytes = _json(
        {
            "architecture": spec.architecture,
            "os": "linux",
            "config": config,
            "rootfs": {"type": "layers", "diff_ids": [diff_id]},
            "history": [{"created_by": "vsearch harness/cluster/oci_image.py"}],
        }
    )
    config_digest = _write_blob(layout, config_bytes)
    manifest_bytes = _json(
        {
            "schemaVersion": 2,
            "mediaType": MEDIA_MANIFEST,
            "config": {
                "mediaType": MEDIA_CONFIG,
                "digest": config_digest,
                "size": len(config_bytes),
            },
            "layers": [{"mediaType": MEDIA_LAYER, "digest": layer_digest, "size": len(layer)}],
        }
    )
    manifest_digest = _write_blob(layout, manifest_bytes)
    tag = spec.name.rsplit(":", 1)[1] if ":" in spec.name.rsplit("/", 1)[-1] else "latest"
    index = {
        "schemaVersion": 2,
        "mediaType": MEDIA_INDEX,
        "manifests": [
            {
                "mediaType": MEDIA_MANIFEST,
                "digest": manifest_digest,
                "size": len(manifest_bytes),
                "platform": {"architecture": spec.architecture, "os": "linux"},
                "annotations": {REF_NAME: tag, CONTAINERD_NAME: spec.name},
            }
        ],
    }
    (layout / "index.json").write_bytes(_json(index))
    (layout / "oci-layout").write_bytes(_json({"imageLayoutVersion": "1.0.0"}))
    return BuiltImage(
        name=spec.name,
        layout=layout,
        manifest_digest=manifest_digest,
        config_digest=config_digest,
        layer_digest=layer_digest,
        size=len(manifest_bytes) + len(config_bytes) + len(layer),
    )


def export_tar(layout: Path, out: Path) -> Path:
    """The layout as one tar (``ctr images import`` takes it), reproducibly."""
    out.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(out, "w", format=tarfile.PAX_FORMAT) as tar:
        for path in sorted(p for p in layout.rglob("*") if p.is_file()):
            data = path.read_bytes()
            rel = path.relative_to(layout).as_posix()
            tar.addfile(_tar_info(rel, mode=0o644, size=len(data)), io.BytesIO(data))
    return out
