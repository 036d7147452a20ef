"""`./vsearch images push`: Bazel's function images to the cluster's registry in one step.

Reads each function's OCI layout where Bazel wrote it (``bazel-bin/<package>/index``, see
harness/backends/cluster/images.py), pushes it as ``<registry>/vsearch/<function>:<commit>``
with skopeo, reads the digest back from the registry and checks it against the layout's own.
Writes ``{function: digest}`` (for ``up --image-digests``) and prints every pinned reference.
`up --backend k8s --image-dir bazel-bin` does the same push itself.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from harness.commands import output

ROOT = Path(__file__).resolve().parents[2]


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    images = sub.add_parser("images", help="push Bazel's function images to a registry")
    actions = images.add_subparsers(dest="images_command", required=True, metavar="ACTION")
    push = actions.add_parser(
        "push",
        help="push bazel-bin's OCI layouts, tagged by the commit, and print them pinned by digest",
    )
    push.add_argument(
        "--image-dir", type=Path, default=ROOT / "bazel-bin",
        help="Bazel's output tree (or a directory of <function> layouts) (default: %(default)s)",
    )  # fmt: skip
    push.add_argument(
        "--registry", default=os.environ.get("VSEARCH_REGISTRY", "127.0.0.1:5001"),
        help="where to push (default: $VSEARCH_REGISTRY or %(default)s, the local platform's)",
    )  # fmt: skip
    push.add_argument("--tag", default=None, help="image tag (default: the git commit, -dirty)")
    push.add_argument(
        "--digests-out", type=Path, default=None,
        help="where to write {function: digest} (default: .vsearch/images/<tag>.json)",
    )  # fmt: skip
    push.add_argument("--json", action="store_true", help="print one JSON document")


def run(args: argparse.Namespace) -> int:
    from harness.backends.cluster.images import (
        REPOSITORY_PREFIX,
        commit_tag,
        find_layouts,
        push_layouts,
    )
    from harness.backends.cluster.tools import ClusterError, Runner, missing_tools
    from harness.functions import load

    try:
        # What Bazel has not built is named first: it is the step before skopeo is needed.
        find_layouts(load().functions, args.image_dir)
    except ClusterError as exc:
        print(f"vsearch images push: {exc}", file=sys.stderr)
        return 1
    if missing_tools(["skopeo"]):
        print("vsearch images push: skopeo is missing (apt-get install skopeo)", file=sys.stderr)
        return 2
    try:
        tag = args.tag or commit_tag()
        log = ROOT / ".vsearch" / "images" / "commands.log"
        digests = push_layouts(Runner(log), load().functions, args.image_dir, args.registry, tag)
    except ClusterError as exc:
        print(f"vsearch images push: {exc}", file=sys.stderr)
        return 1
    out = args.digests_out or ROOT / ".vsearch" / "images" / f"{tag}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(digests, indent=2) + "\n")
    refs = {
        name: f"{args.registry}/{REPOSITORY_PREFIX}/{name}:{tag}@{digest}"
        for name, digest in digests.items()
    }
    if args.json:
        output.print_json({"tag": tag, "registry": args.registry, "digests_file": str(out),
                           "images": refs})  # fmt: skip
        return 0
    for ref in refs.values():
        print(ref)
    print(f"vsearch images push: {len(refs)} images, tag {tag}; digests in {out}", file=sys.stderr)
    print(
        f"  deploy them: ./vsearch up --backend k8s --image-tag {tag} --image-digests {out}",
        file=sys.stderr,
    )
    return 0
