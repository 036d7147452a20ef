"""The command line's shared options, kept free of heavy imports: building the parser (and so
`./vsearch --help` or a usage error) must not load httpx, pydantic models or the platforms."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_STATE_DIR = Path(os.environ.get("VSEARCH_STATE_DIR", ROOT / ".vsearch" / "embedded"))
DEFAULT_GATEWAY_PORT = 8080


def add_state_dir(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--state-dir",
        type=Path,
        default=DEFAULT_STATE_DIR,
        help="where the platform keeps its state, logs and credentials (default: %(default)s)",
    )


def add_kind_options(parser: argparse.ArgumentParser, *, creates: bool = True) -> None:
    """The kind backend's options; ``creates`` adds those that only matter to a deploy."""
    group = parser.add_argument_group("--backend kind / k8s")
    group.add_argument(
        "--cluster-name", default="vsearch", help="kind cluster name (default: %(default)s)"
    )
    group.add_argument(
        "--kubeconfig",
        type=Path,
        default=None,
        help="k8s: the cluster's kubeconfig (default: $VSEARCH_KUBECONFIG, else "
        "~/.cache/vsearch-cluster/kubeconfig, the local platform's)",
    )
    group.add_argument(
        "--context",
        default=os.environ.get("VSEARCH_KUBE_CONTEXT"),
        help="k8s: the kubeconfig context (default: $VSEARCH_KUBE_CONTEXT, else its current one)",
    )
    group.add_argument(
        "--workdir",
        type=Path,
        default=None,
        help="state, command log and collected logs (default: $VSEARCH_KIND_WORKDIR or "
        ".vsearch/kind for kind, $VSEARCH_K8S_WORKDIR or .vsearch/k8s for k8s)",
    )
    if not creates:
        return
    group.add_argument(
        "--registry",
        default=os.environ.get("VSEARCH_REGISTRY"),
        help="where the function images are pushed (default: $VSEARCH_REGISTRY, else for kind "
        "localhost:5001, the registry container this command runs; for k8s 127.0.0.1:5001, "
        "the local platform's registry)",
    )
    group.add_argument(
        "--openfaas",
        choices=["auto", "chart", "local", "existing"],
        default=None,
        help="how OpenFaaS gets into the cluster: the pinned chart (helm, Internet), the plain "
        "manifests in manifests/openfaas/local/ (built from source), the one already running, "
        "or auto (k8s default: running one, else chart when helm is installed, else local; "
        "kind default: chart)",
    )
    group.add_argument(
        "--image-tag",
        default=os.environ.get("VSEARCH_IMAGE_TAG"),
        help="the build's tag of every <registry>/vsearch/<function> image "
        "(default: $VSEARCH_IMAGE_TAG)",
    )
    group.add_argument(
        "--image-dir",
        type=Path,
        default=Path(os.environ["VSEARCH_IMAGE_DIR"])
        if os.environ.get("VSEARCH_IMAGE_DIR")
        else None,
        help="OCI layouts <dir>/<function> to push with skopeo (default: $VSEARCH_IMAGE_DIR; "
        "without it the images must be in the local Docker engine)",
    )
    group.add_argument(
        "--image-digests",
        type=Path,
        default=None,
        help="JSON {function: sha256:...} from the build; the registry's digests must match",
    )
    group.add_argument(
        "--manifests-dir",
        type=Path,
        default=ROOT / "manifests",
        help="cluster manifests to deploy (default: %(default)s)",
    )
