"""`./vsearch up|down|status --backend kind|k8s`: OpenFaaS CE + MinIO on a cluster.

kind: a kind cluster created (or reused) here. k8s: any cluster named by a kubeconfig (and
context), never created or deleted here. `up` deploys everything (K8sBackend.deploy), marks the
deployment as left running in the workdir's state.json, and keeps a detached port-forward to the
gateway (harness.backends.kind_forward) so the gateway stays reachable after `up` exits. `bench`
and `status` attach to it; `down` stops the forward and removes what this workdir created (kind:
the cluster; k8s: exactly what it deployed).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

import httpx

from harness.backends import kind_forward
from harness.commands import output

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_WORKDIR = ROOT / ".vsearch" / "kind"
DEFAULT_WORKDIRS = {"kind": DEFAULT_WORKDIR, "k8s": ROOT / ".vsearch" / "k8s"}
CLUSTER_BACKENDS = ("kind", "k8s")


def workdir_of(args: argparse.Namespace) -> Path:
    """The workdir asked for, else the backend's default (env first)."""
    if getattr(args, "workdir", None) is not None:
        return Path(args.workdir)
    backend = getattr(args, "backend", "kind")
    env = "VSEARCH_K8S_WORKDIR" if backend == "k8s" else "VSEARCH_KIND_WORKDIR"
    return Path(os.environ.get(env) or DEFAULT_WORKDIRS.get(backend, DEFAULT_WORKDIR))


def backend_options(args: argparse.Namespace) -> dict[str, Any]:
    """The cluster backend's constructor arguments from parsed options (absent ones left out)."""
    names = {
        "registry": "registry",
        "image_tag": "image_tag",
        "image_dir": "image_dir",
        "image_digests": "image_digests",
        "manifests_dir": "manifests_dir",
        "openfaas": "openfaas",
    }
    if getattr(args, "backend", "kind") == "k8s":
        names.update({"kubeconfig": "kubeconfig", "context": "context"})
    else:
        names["cluster_name"] = "cluster_name"
    options = {k: getattr(args, v) for k, v in names.items() if getattr(args, v, None) is not None}
    options["workdir"] = workdir_of(args)
    if getattr(args, "timeout", None):
        options["ready_timeout_s"] = args.timeout
    return options


def _err(command: str, message: str) -> None:
    print(f"vsearch {command}: {message}", file=sys.stderr)


def _create(name: str, options: dict[str, Any]) -> Any:
    if name == "k8s":
        from harness.backends.k8s import K8sBackend

        return K8sBackend(**options)
    from harness.backends.kind import KindBackend

    return KindBackend(**options)


def _backend(command: str, options: dict[str, Any], name: str = "kind") -> Any:
    from harness.backends import kind as kb

    backend = _create(name, options)
    missing = kb.missing_tools(backend._needed_tools())
    if missing:
        _err(command, kb.missing_tools_message(missing))
        return None
    return backend


def cluster_backend(args: argparse.Namespace) -> Any:
    """The backend of the cluster ``args`` name, not yet attached (for search)."""
    return _create(args.backend, backend_options(args))


def _where(backend: Any) -> str:
    if backend.name == "k8s":
        return f"cluster {backend.kubeconfig} (context {backend.context})"
    return f"kind cluster {backend.cluster_name!r}"


def up(args: argparse.Namespace) -> int:
    from harness.backends import kind as kb

    try:
        backend = _backend("up", backend_options(args), args.backend)
        if backend is None:
            return 2
        where = _where(backend)
    except kb.KindError as exc:
        _err("up", str(exc))
        return 2
    err = sys.stderr
    print(
        f"vsearch up: deploying vsearch to {where} (registry, images, OpenFaaS CE, MinIO, "
        "functions); this takes minutes. Every command goes to "
        f"{backend.workdir / 'commands.log'}",
        file=err,
    )
    # `up` always does the whole deploy, even on a cluster an earlier `up` left: images rebuilt
    # under the same tag must be pushed again (attaching is for bench and status).
    backend.left_up = False
    try:
        backend.deploy()
    except (kb.KindError, TimeoutError, httpx.HTTPError) as exc:
        _err("up", str(exc))
        if backend.logs_dir is not None:
            _err("up", f"pod logs, events and pod descriptions: {backend.logs_dir}")
        _err(
            "up",
            f"the cluster is left as it is; `./vsearch down --backend {args.backend}` removes "
            "what this deploy created",
        )
        backend.keep_cluster = True  # teardown below only stops our port-forwards
        backend.teardown()
        return 3
    backend.left_up = True
    backend.save_state()
    ready = {s["name"]: s.get("availableReplicas", 0) for s in backend.api.functions()}
    backend.keep_cluster = True
    backend.teardown()  # this process's forwards end with it; the detached one stays
    try:
        record = kind_forward.start(
            backend.workdir,
            kubeconfig=backend.kubeconfig,
            context=backend.context,
            port=args.gateway_port,
            namespace=str(backend.chart["namespace"]),
        )
    except kind_forward.ForwardError as exc:
        _err("up", f"the cluster is up, but {exc}")
        return 3
    url = f"http://127.0.0.1:{record['port']}"
    kubectl = f"kubectl --kubeconfig {backend.kubeconfig} --context {backend.context}"
    workdir_opt = "" if args.workdir is None else f" --workdir {args.workdir}"
    if backend.name == "k8s":
        name_opt = "" if args.kubeconfig is None else f" --kubeconfig {args.kubeconfig}"
        name_opt += "" if args.context is None else f" --context {args.context}"
    else:
        name_opt = (
            "" if backend.cluster_name == "vsearch" else f" --cluster-name {backend.cluster_name}"
        )
    opts = f" --backend {backend.name}{name_opt}{workdir_opt}"
    print(f"{where} is up ({len(ready)} functions ready)")
    print(f"  gateway      {url}   (OpenFaaS CE, basic auth on /system/*; forward kept running)")
    print(f"  functions    {', '.join(f'{n} x{r}' for n, r in sorted(ready.items()))}")
    print(f"  kubeconfig   {backend.kubeconfig}")
    print(
        f"  password     {kubectl} -n {backend.chart['namespace']} get secret basic-auth "
        "-o jsonpath='{.data.basic-auth-password}' | base64 -d   (user: admin)"
    )
    print(f"  bench        ./vsearch bench warm-steady{opts}")
    print(f"  status       ./vsearch status{opts}")
    print(f"  down         ./vsearch down{opts}")
    return 0


def down(args: argparse.Namespace) -> int:
    from harness.backends import kind as kb

    workdir = workdir_of(args)
    stopped = kind_forward.stop(workdir)
    if not (workdir / kb.STATE_FILE).exists():
        print(
            f"vsearch down: nothing to take down: no `up --backend {args.backend}` state in "
            f"{workdir}",
            file=sys.stderr,
        )
        return 0
    if stopped:
        print("vsearch down: stopped the gateway port-forward", file=sys.stderr)
    if args.backend == "k8s":
        return _down_k8s(args, workdir)
    backend = kb.KindBackend(cluster_name=args.cluster_name, workdir=workdir)
    owned = backend.created_cluster or backend.started_registry
    backend.left_up = False
    missing = [t for t in ("kind", "docker") if kb.missing_tools([t])]
    if owned and missing:
        _err("down", kb.missing_tools_message(missing))
        return 2
    try:
        backend.teardown()
    except kb.KindError as exc:
        _err("down", str(exc))
        return 1
    if not owned:
        if (workdir / kb.STATE_FILE).exists():
            backend.save_state()
        print(
            f"vsearch down: cluster {args.cluster_name!r} was not created from {workdir}: "
            "left running (delete it with `kind delete cluster --name "
            f"{args.cluster_name}`)",
            file=sys.stderr,
        )
        return 0
    print(f"vsearch down: deleted kind cluster {args.cluster_name!r} and what it created")
    return 0


def _down_k8s(args: argparse.Namespace, workdir: Path) -> int:
    from harness.backends import k8s

    backend = k8s.K8sBackend(
        kubeconfig=args.kubeconfig, context=args.context, workdir=workdir,
        manifests_dir=getattr(args, "manifests_dir", None) or ROOT / "manifests",
    )  # fmt: skip
    if not backend.owns_anything:
        print(
            f"vsearch down: nothing deployed from {workdir} on {backend.kubeconfig}: left as it is",
            file=sys.stderr,
        )
        backend.left_up = False
        backend.save_state()
        return 0
    backend.left_up = False
    missing = k8s.missing_tools(["kubectl"])
    if missing:
        _err("down", k8s.missing_tools_message(missing))
        return 2
    try:
        backend.teardown()
    except k8s.K8sError as exc:
        _err("down", str(exc))
        return 1
    print(
        f"vsearch down: removed what {workdir} deployed on {backend.kubeconfig} "
        "(functions, OpenFaaS if installed here, MinIO, generated secrets, created namespaces); "
        "the cluster itself is left running"
    )
    return 0


def _row(status: dict[str, Any]) -> str:
    extra = status.get("vsearch") or {}
    replicas = extra.get("replicas") or []
    ready = sum(1 for r in replicas if r.get("ready"))
    codes = extra.get("invocations_by_code") or {}
    calls = " ".join(f"{c}:{int(n)}" for c, n in sorted(codes.items())) or "-"
    image = str(status.get("image", ""))
    digest = image.partition("@")[2][:19] or image.rpartition(":")[2]
    return (
        f"{status.get('name', '?'):<16} {status.get('availableReplicas', 0)}/"
        f"{status.get('replicas', 0):<3} {ready:>5}  {extra.get('min_replicas', '?')}-"
        f"{extra.get('max_replicas', '?'):<5} {extra.get('oom_kills', 0):>4}  {digest:<20} {calls}"
    )


def status(args: argparse.Namespace) -> int:
    from harness.backends import kind as kb

    try:
        backend = _backend("status", backend_options(args), args.backend)
    except kb.KindError as exc:
        _err("status", str(exc))
        return 2
    if backend is None:
        return 2
    try:
        backend.attach()
        statuses = backend.function_status()
    except (kb.KindError, httpx.HTTPError) as exc:
        _err("status", str(exc))
        return 1
    finally:
        backend.keep_cluster = True
        backend.teardown()
    forward = kind_forward.read(backend.workdir)
    gateway = {
        "url": f"http://127.0.0.1:{forward['port']}" if forward else None,
        "forward_running": forward is not None,
        "healthy": bool(forward) and kind_forward.gateway_healthy(int(forward["port"])),
    }
    short = [s for s in statuses if int(s.get("availableReplicas") or 0) < 1]
    if args.json:
        document = {
            "backend": backend.name,
            "cluster": backend.cluster_id,
            "left_running_by_up": backend.left_up,
            "gateway": gateway,
            "functions": statuses,
        }
        output.print_json(document)
    else:
        where = gateway["url"] or (
            f"no port-forward running (`./vsearch up --backend {backend.name}`)"
        )
        print(f"{_where(backend)}; gateway {where}")
        print(f"{'function':<16} {'avail':<5} {'ready':>5}  {'min-max':<7} {'ooms':>4}  "
              f"{'image':<20} calls")  # fmt: skip
        for s in sorted(statuses, key=lambda s: str(s.get("name"))):
            print(_row(s))
    return 1 if short or not statuses else 0
