"""Sizes of the built images, per image, architecture and layer (after `bazel build //:images`).

    python3 platforms/tools/image_report.py [--bazel-bin bazel-bin] [--json out.json]

Reads every `index` OCI layout under bazel-bin (oci_image_index outputs). Layer names come from
the image config's history (`bazel: //pkg:target`, written by the offline oci_image; layers
without one show their digest). Sizes are the compressed (gzip) blob sizes, as a registry
stores and a node pulls them; "own" excludes the layers shared with the base image.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def blob(layout: Path, digest: str) -> Path:
    return layout / "blobs" / digest.replace(":", "/")


def read(layout: Path, digest: str) -> dict:
    return json.loads(blob(layout, digest).read_bytes())


def images(bazel_bin: Path):
    for index_json in sorted(bazel_bin.glob("**/index/index.json")):
        if ".runfiles" in str(index_json.relative_to(bazel_bin)):
            continue
        layout = index_json.parent
        top = json.loads(index_json.read_bytes())["manifests"][0]
        index = read(layout, top["digest"]) if top["mediaType"].endswith("index.v1+json") else None
        if index is None:
            continue
        package = "//" + str(layout.parent.relative_to(bazel_bin))
        for desc in index["manifests"]:
            manifest = read(layout, desc["digest"])
            config = read(layout, manifest["config"]["digest"])
            history = [h.get("created_by", "") for h in config.get("history", [])]
            layers = []
            for i, layer in enumerate(manifest["layers"]):
                name = history[i].removeprefix("bazel: ") if i < len(history) else ""
                layers.append(
                    {
                        "name": name or layer["digest"][:19],
                        "digest": layer["digest"],
                        "size": layer["size"],
                    }
                )
            yield {
                "image": package,
                "index_digest": top["digest"],
                "arch": desc["platform"]["architecture"],
                "manifest_digest": desc["digest"],
                "size": sum(ly["size"] for ly in layers) + manifest["config"]["size"],
                "layers": layers,
            }


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--bazel-bin", default="bazel-bin")
    parser.add_argument("--json")
    args = parser.parse_args()
    rows = list(images(Path(args.bazel_bin)))
    if not rows:
        print("image_report: no image index under", args.bazel_bin, file=sys.stderr)
        return 1
    base = {r["arch"]: {ly["digest"] for ly in r["layers"]} for r in rows if r["image"] == "//base"}
    mb = lambda n: f"{n / 1e6:8.1f} MB"  # noqa: E731
    print(f"{'image':28} {'arch':6} {'total':>11} {'own':>11}  layers (compressed)")
    for r in rows:
        shared = base.get(r["arch"], set())
        own = sum(
            ly["size"] for ly in r["layers"] if ly["digest"] not in shared or r["image"] == "//base"
        )
        layers = ", ".join(
            f"{ly['name']} {ly['size'] / 1e6:.1f}"
            + ("*" if ly["digest"] in shared and r["image"] != "//base" else "")
            for ly in r["layers"]
        )
        print(f"{r['image']:28} {r['arch']:6} {mb(r['size'])} {mb(own)}  {layers}")
    print("(* = the base image's layer, same blob; index digests: --json)")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
