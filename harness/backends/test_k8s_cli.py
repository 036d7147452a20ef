"""`vsearch up|status|down --backend k8s` and `bench --backend k8s`'s reuse, end to end.

As test_kind_cli.py: the CLI as a subprocess with the fake tools first on PATH; here the cluster
is named by a kubeconfig, OpenFaaS comes from (fixture) local manifests, no ``kind`` runs, and
`down` removes what `up` deployed and leaves the cluster.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import httpx

from harness.backends import k8s, kind_forward
from harness.backends.factory import create_backend
from harness.backends.test_k8s_backend import CONTEXT, LOCAL_GATEWAY, _kubeconfig
from harness.backends.test_kind_backend import TAG, _milestones
from harness.backends.test_kind_cli import _free_port, cli_world, vsearch
from harness.cli import build_parser
from harness.commands.kind import backend_options
from harness.functions import load


def test_k8s_up_status_bench_reuse_down(tmp_path: Path) -> None:
    with cli_world(tmp_path) as world:
        local = world.manifests / "openfaas" / "local"
        local.mkdir(parents=True, exist_ok=True)
        (local / "gateway.yaml").write_text(LOCAL_GATEWAY)
        # Upstream MinIO on the fakes (the local one's kustomize + host mc: test_k8s_backend.py).
        shutil.rmtree(world.manifests / k8s.LOCAL_MINIO_DIR, ignore_errors=True)
        kubeconfig = _kubeconfig(tmp_path / "kubeconfig")
        common = ["--backend", "k8s", "--kubeconfig", str(kubeconfig),
                  "--workdir", str(world.workdir)]  # fmt: skip
        port = _free_port()
        up = vsearch(
            "up", *common, "--registry", world.registry, "--image-tag", TAG, "--openfaas",
            "local", "--manifests-dir", str(world.manifests), "--timeout", "20",
            "--gateway-port", str(port),
        )  # fmt: skip
        assert up.returncode == 0, up.stderr
        assert "Traceback" not in up.stderr
        assert f"context {CONTEXT}" in up.stdout
        assert f"./vsearch down --backend k8s --kubeconfig {kubeconfig}" in up.stdout
        assert world.argvs("kind") == [] and world.argvs("helm") == []
        assert world.errors() == []
        with httpx.Client(trust_env=False, timeout=5) as http:
            assert http.get(f"http://127.0.0.1:{port}/healthz").status_code == 200

        status = vsearch("status", *common, "--json")
        assert status.returncode == 0, status.stderr
        document = json.loads(status.stdout)
        assert document["backend"] == "k8s" and document["left_running_by_up"]
        assert sorted(f["name"] for f in document["functions"]) == sorted(load().names)

        # bench attaches to what up left: only the functions are redeployed.
        args = build_parser().parse_args(
            ["bench", "warm-steady", *common, "--manifests-dir", str(world.manifests)]
        )
        options = {**backend_options(args), "keep_cluster": args.keep_cluster}
        assert options["kubeconfig"] == kubeconfig and "cluster_name" not in options
        before = len(world.calls())
        backend = create_backend("k8s", state_dir=None, enforce_limits=True, **options)
        assert isinstance(backend, k8s.K8sBackend)
        backend.forward_backoff_s = 0.05
        backend.deploy(load().functions)
        assert backend.attached
        backend.teardown()
        reuse = _milestones(world.calls()[before:])
        for step in ("docker push", "kubectl create", "kubectl apply", "kubectl delete"):
            assert not any(t.startswith(step) for t in reuse), (step, reuse)
        assert sum(t == "gateway put" for t in reuse) == len(load().names)

        down = vsearch("down", *common)
        assert down.returncode == 0, down.stderr
        assert "the cluster itself is left running" in down.stdout
        assert kind_forward.read(world.workdir) is None
        state = world.state()
        assert state.get("functions") == {} and state.get("namespaces") == []
        assert world.argvs("kind") == []
        again = vsearch("down", *common)
        assert again.returncode == 0 and "nothing deployed" in again.stderr
        assert world.errors() == []


def test_k8s_search_without_a_cluster_says_how_to_get_one(tmp_path: Path) -> None:
    video = tmp_path / "v.mp4"
    video.write_bytes(b"\x00\x00\x00\x18ftypmp42")  # checked for existence and suffix first
    done = vsearch(
        "search", str(video), "-q", "flour", "--backend", "k8s", "--kubeconfig",
        str(tmp_path / "absent"), "--workdir", str(tmp_path / "w"),
    )  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert f"no kubeconfig at {tmp_path / 'absent'}" in done.stderr
    assert "./vsearch up --backend k8s" in done.stderr and "Traceback" not in done.stderr
