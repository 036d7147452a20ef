"""OCI image layouts for the offline rules_oci stand-in (standard library only).

    oci_tool.py image --out DIR --config JSON [--base DIR] [--labels-file F] --layer TAR=LABEL...
    oci_tool.py index --out DIR --image DIR...
    oci_tool.py load  --image DIR --out TAR --format docker|oci --tag T...

Deterministic: JSON with sorted keys and no spaces, `created` fixed at the epoch unless given,
layer blobs byte-identical to their inputs (hard-linked when possible).
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import re
import shutil
import sys
import tarfile
import zlib
from pathlib import Path

MT_INDEX = "application/vnd.oci.image.index.v1+json"
MT_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MT_CONFIG = "application/vnd.oci.image.config.v1+json"
MT_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
MT_LAYER = "application/vnd.oci.image.layer.v1.tar"
EPOCH = "1970-01-01T00:00:00Z"


def dumps(obj) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()


def sha256_file(path: Path) -> tuple[str, int]:
    h = hashlib.sha256()
    size = 0
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
            size += len(block)
    return "sha256:" + h.hexdigest(), size


class Layout:
    def __init__(self, root: Path) -> None:
        self.root = root
        (root / "blobs" / "sha256").mkdir(parents=True, exist_ok=True)

    def blob_path(self, digest: str) -> Path:
        return self.root / "blobs" / digest.replace(":", "/")

    def put_bytes(self, data: bytes, media_type: str) -> dict:
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        path = self.blob_path(digest)
        if not path.exists():
            path.write_bytes(data)
        return {"mediaType": media_type, "digest": digest, "size": len(data)}

    def put_file(self, src: Path, media_type: str, digest: str | None = None) -> dict:
        if digest is None:
            digest, size = sha256_file(src)
        else:
            size = src.stat().st_size
        dest = self.blob_path(digest)
        if not dest.exists():
            try:
                os.link(os.path.realpath(src), dest)
            except OSError:
                shutil.copyfile(src, dest)
        return {"mediaType": media_type, "digest": digest, "size": size}

    def finish(self, manifests: list[dict]) -> None:
        (self.root / "oci-layout").write_bytes(dumps({"imageLayoutVersion": "1.0.0"}))
        index = {"schemaVersion": 2, "mediaType": MT_INDEX, "manifests": manifests}
        (self.root / "index.json").write_bytes(dumps(index))


def read_json(layout: Path, digest: str):
    return json.loads((layout / "blobs" / digest.replace(":", "/")).read_bytes())


def single_manifest(layout: Path) -> tuple[dict, dict]:
    """(descriptor, manifest) of a one-image layout."""
    index = json.loads((layout / "index.json").read_bytes())
    desc = index["manifests"][0]
    if desc["mediaType"] == MT_INDEX:
        raise SystemExit(f"{layout}: an image index where one image was expected")
    return desc, read_json(layout, desc["digest"])


def diff_id(path: Path) -> tuple[str, str]:
    """(diff_id, media type): the digest of the uncompressed tar."""
    with path.open("rb") as f:
        gzipped = f.read(2) == b"\x1f\x8b"
    h = hashlib.sha256()
    if gzipped:
        d = zlib.decompressobj(16 + zlib.MAX_WBITS)
        with path.open("rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(d.decompress(block))
            h.update(d.flush())
        return "sha256:" + h.hexdigest(), MT_LAYER_GZIP
    return sha256_file(path)[0], MT_LAYER


def expand(value: str, env: dict[str, str]) -> str:
    """${VAR} / $VAR from the base image's environment, as rules_oci does."""
    return re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: env.get(m.group(1) or m.group(2), ""), value)


def cmd_image(args) -> None:
    spec = json.loads(args.config)
    out = Layout(Path(args.out))
    layers: list[dict] = []
    config: dict = {"config": {}, "rootfs": {"type": "layers", "diff_ids": []}, "history": []}
    if args.base:
        base = Path(args.base)
        _, manifest = single_manifest(base)
        config = read_json(base, manifest["config"]["digest"])
        for layer in manifest["layers"]:
            src = base / "blobs" / layer["digest"].replace(":", "/")
            layers.append(out.put_file(src, layer["mediaType"], layer["digest"]))
    cfg = config.setdefault("config", {})
    for spec_layer in args.layer:
        path, label = spec_layer.split("=", 1)
        did, media_type = diff_id(Path(path))
        layers.append(out.put_file(Path(path), media_type))
        config["rootfs"]["diff_ids"].append(did)
        config.setdefault("history", []).append(
            {"created": spec["created"] or EPOCH, "created_by": f"bazel: {label}"}
        )
    env = dict(kv.split("=", 1) for kv in cfg.get("Env") or [])
    for key, value in sorted(spec["env"].items()):
        env[key] = expand(value, env)
    if env:
        cfg["Env"] = [f"{k}={v}" for k, v in env.items()]
    if spec["set_entrypoint"]:
        cfg["Entrypoint"] = spec["entrypoint"]
        cfg.pop("Cmd", None)  # as Docker does when the entrypoint changes
    if spec["set_cmd"]:
        cfg["Cmd"] = spec["cmd"]
    labels = dict(cfg.get("Labels") or {})
    if args.labels_file:
        for line in Path(args.labels_file).read_text().splitlines():
            if line.strip():
                key, _, value = line.partition("=")
                labels[key] = value
    labels.update(spec["labels"])
    if labels:
        cfg["Labels"] = labels
    if spec["exposed_ports"]:
        ports = dict(cfg.get("ExposedPorts") or {})
        for port in spec["exposed_ports"]:
            ports[port if "/" in port else port + "/tcp"] = {}
        cfg["ExposedPorts"] = ports
    if spec["user"]:
        cfg["User"] = spec["user"]
    if spec["workdir"]:
        cfg["WorkingDir"] = spec["workdir"]
    for key in ("os", "architecture", "variant"):
        if spec[key]:
            config[key] = spec[key]
    config["created"] = spec["created"] or config.get("created") or EPOCH
    if "os" not in config or "architecture" not in config:
        raise SystemExit("oci_image: no os/architecture (give them or a base)")
    config_desc = out.put_bytes(dumps(config), MT_CONFIG)
    manifest = {
        "schemaVersion": 2,
        "mediaType": MT_MANIFEST,
        "config": config_desc,
        "layers": layers,
    }
    if spec["annotations"]:
        manifest["annotations"] = spec["annotations"]
    out.finish([out.put_bytes(dumps(manifest), MT_MANIFEST)])


def cmd_index(args) -> None:
    out = Layout(Path(args.out))
    manifests = []
    for image in args.image:
        src = Path(image)
        desc, manifest = single_manifest(src)
        config = read_json(src, manifest["config"]["digest"])
        for blob in [manifest["config"], *manifest["layers"]]:
            out.put_file(
                src / "blobs" / blob["digest"].replace(":", "/"), blob["mediaType"], blob["digest"]
            )
        out.put_bytes(dumps(manifest), MT_MANIFEST)
        platform = {"architecture": config["architecture"], "os": config["os"]}
        if config.get("variant"):
            platform["variant"] = config["variant"]
        manifests.append({**desc, "platform": platform})
    index = {"schemaVersion": 2, "mediaType": MT_INDEX, "manifests": manifests}
    out.finish([out.put_bytes(dumps(index), MT_INDEX)])


def cmd_load(args) -> None:
    """A `docker load` tarball (manifest.json + blobs + the OCI layout files)."""
    layout = Path(args.image)
    desc, manifest = single_manifest(layout)
    entries: dict[str, Path | bytes] = {}
    for blob in [manifest["config"], *manifest["layers"]]:
        name = "blobs/" + blob["digest"].replace(":", "/")
        entries[name] = layout / name
    entries["blobs/" + desc["digest"].replace(":", "/")] = (
        layout / "blobs" / desc["digest"].replace(":", "/")
    )
    entries["oci-layout"] = dumps({"imageLayoutVersion": "1.0.0"})
    tagged = dict(desc)
    if args.tag:
        tagged["annotations"] = {
            "io.containerd.image.name": args.tag[0],
            "org.opencontainers.image.ref.name": args.tag[0].rsplit(":", 1)[-1],
        }
    entries["index.json"] = dumps(
        {"schemaVersion": 2, "mediaType": MT_INDEX, "manifests": [tagged]}
    )
    if args.format == "docker":
        entries["manifest.json"] = dumps(
            [
                {
                    "Config": "blobs/" + manifest["config"]["digest"].replace(":", "/"),
                    "RepoTags": args.tag,
                    "Layers": [
                        "blobs/" + ly["digest"].replace(":", "/") for ly in manifest["layers"]
                    ],
                }
            ]
        )
    with tarfile.open(args.out, "w", format=tarfile.GNU_FORMAT) as tar:
        dirs = sorted({str(Path(n).parent) for n in entries if "/" in n} | {"blobs"})
        for d in dirs:
            info = tarfile.TarInfo(d + "/")
            info.type, info.mode, info.mtime = tarfile.DIRTYPE, 0o755, 0
            tar.addfile(info)
        for name in sorted(entries):
            value = entries[name]
            data = value if isinstance(value, bytes) else None
            info = tarfile.TarInfo(name)
            info.mode, info.mtime = 0o644, 0
            if data is not None:
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
            else:
                info.size = value.stat().st_size
                with value.open("rb") as f:
                    tar.addfile(info, f)


def main() -> int:
    parser = argparse.ArgumentParser(fromfile_prefix_chars="@")
    sub = parser.add_subparsers(dest="cmd", required=True)
    i = sub.add_parser("image")
    i.add_argument("--out", required=True)
    i.add_argument("--config", required=True)
    i.add_argument("--base")
    i.add_argument("--labels-file")
    i.add_argument("--layer", action="append", default=[])
    x = sub.add_parser("index")
    x.add_argument("--out", required=True)
    x.add_argument("--image", action="append", default=[])
    ld = sub.add_parser("load")
    ld.add_argument("--image", required=True)
    ld.add_argument("--out", required=True)
    ld.add_argument("--format", default="docker")
    ld.add_argument("--tag", action="append", default=[])
    args = parser.parse_args()
    {"image": cmd_image, "index": cmd_index, "load": cmd_load}[args.cmd](args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
