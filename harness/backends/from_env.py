"""Which platform the regime tests run on, from the environment (so Bazel's ``--test_env`` and
``./vsearch test --cluster`` can point them at a cluster without code changes).

``VSEARCH_BACKEND``: ``embedded`` (default) or ``k8s``. For k8s: ``VSEARCH_KUBECONFIG`` (default
~/.cache/vsearch-cluster/kubeconfig, the local platform's), ``VSEARCH_KUBE_CONTEXT``,
``VSEARCH_OPENFAAS`` (auto|chart|local|existing), ``VSEARCH_REGISTRY``, ``VSEARCH_IMAGE_TAG``,
``VSEARCH_IMAGE_DIGESTS`` (the JSON `./vsearch images push` wrote: the tag's images are then
checked in the registry, no Docker engine needed), ``VSEARCH_IMAGE_DIR``,
``VSEARCH_K8S_WORKDIR`` (where `./vsearch up --backend k8s` left its state: with it, no image
tag is needed).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from harness.backends.k8s import CLUSTER_KUBECONFIG, DEFAULT_WORKDIR, STATE_FILE

CLUSTER_BACKENDS = ("k8s",)


def backend_name(env: Mapping[str, str] | None = None) -> str:
    env = os.environ if env is None else env
    return env.get("VSEARCH_BACKEND") or "embedded"


def k8s_options(env: Mapping[str, str] | None = None) -> dict[str, Any]:
    """K8sBackend's constructor arguments from the environment (absent ones left out)."""
    env = os.environ if env is None else env
    options: dict[str, Any] = {
        "kubeconfig": Path(env.get("VSEARCH_KUBECONFIG") or CLUSTER_KUBECONFIG),
        "workdir": Path(env.get("VSEARCH_K8S_WORKDIR") or DEFAULT_WORKDIR),
    }
    for key, name in (
        ("context", "VSEARCH_KUBE_CONTEXT"),
        ("openfaas", "VSEARCH_OPENFAAS"),
        ("registry", "VSEARCH_REGISTRY"),
        ("image_tag", "VSEARCH_IMAGE_TAG"),
    ):
        if env.get(name):
            options[key] = env[name]
    if env.get("VSEARCH_IMAGE_DIR"):
        options["image_dir"] = Path(env["VSEARCH_IMAGE_DIR"])
    if env.get("VSEARCH_IMAGE_DIGESTS"):
        options["image_digests"] = Path(env["VSEARCH_IMAGE_DIGESTS"])
    return options


def cluster_unavailable(env: Mapping[str, str] | None = None) -> str | None:
    """Why the cluster the environment names cannot be used (None: it answers)."""
    env = os.environ if env is None else env
    name = backend_name(env)
    if name not in CLUSTER_BACKENDS:
        return f"VSEARCH_BACKEND={name!r} is not a cluster backend ({', '.join(CLUSTER_BACKENDS)})"
    options = k8s_options(env)
    kubeconfig = Path(options["kubeconfig"])
    if not kubeconfig.exists():
        return (
            f"no cluster: no kubeconfig at {kubeconfig} (set VSEARCH_KUBECONFIG, or bring the "
            "local one up with `./vsearch platform up`)"
        )
    if shutil.which("kubectl") is None:
        return "no kubectl on PATH"
    argv = ["kubectl", "--kubeconfig", str(kubeconfig)]
    if options.get("context"):
        argv += ["--context", str(options["context"])]
    try:
        done = subprocess.run(
            [*argv, "get", "--raw", "/readyz"], capture_output=True, text=True, timeout=15
        )
    except subprocess.TimeoutExpired:
        return f"the cluster of {kubeconfig} did not answer /readyz within 15 s"
    if done.returncode != 0:
        return f"the cluster of {kubeconfig} is not ready: {done.stderr.strip()[-300:]}"
    if not options.get("image_tag"):
        state_path = Path(options["workdir"]) / STATE_FILE
        state = json.loads(state_path.read_text()) if state_path.exists() else {}
        if not (state.get("left_up") and state.get("image_tag")):
            return (
                "no function images named: set VSEARCH_IMAGE_TAG (images pushed to the "
                "cluster's registry) or run `./vsearch up --backend k8s` first"
            )
    return None
