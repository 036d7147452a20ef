"""`./vsearch platform build|list|up|down|status`: the platform from pinned Go modules, and the
host-process cluster made of it (harness/cluster/local)."""

from __future__ import annotations

import argparse
import json
import sys

from harness.cluster import builder
from harness.commands import output


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    platform = sub.add_parser(
        "platform",
        help="build the cluster platform's programs from pinned Go modules; up/down/status of "
        "the host-process cluster made of them",
        description="Programs: " + ", ".join(builder.COMPONENTS) + ". Versions are pinned by "
        "the wrapper modules in platforms/cluster/modules/ (go.mod + go.sum); binaries are "
        "cached under $VSEARCH_PLATFORM_CACHE or ~/.cache/vsearch-platform and reused. "
        "up: registry, etcd, control plane, containerd, kubelet, kube-proxy, CoreDNS as host "
        "processes (state and kubeconfig in $VSEARCH_CLUSTER_DIR or ~/.cache/vsearch-cluster; "
        "needs root); down stops them and undoes their host changes; status checks each.",
    )
    platform.add_argument("action", choices=["build", "list", "up", "down", "status"])
    platform.add_argument("names", nargs="*", metavar="NAME", help="default: all")
    platform.add_argument("--force", action="store_true", help="build even when cached")
    platform.add_argument("--json", action="store_true", help="one JSON document on stdout")
    platform.add_argument(
        "--purge", action="store_true", help="down: also delete the state dir (PKI, etcd data)"
    )


def run_cluster(args: argparse.Namespace) -> int:
    """up, down, status of the host-process cluster (state: $VSEARCH_CLUSTER_DIR)."""
    from harness.cluster.local import cluster, processes

    if args.action == "status":
        rows = cluster.status()
        ok = all(row.healthy for row in rows)
        if args.json:
            output.print_json(
                {"status": "ok" if ok else "degraded",
                 "components": [json.loads(r.model_dump_json()) for r in rows]}
            )  # fmt: skip
        else:
            for row in rows:
                health = "healthy" if row.healthy else "DOWN"
                print(f"{row.name:24} {health:8} pid {row.pid or '-':>7}  {row.version or '-'}"
                      f"  {row.detail}")  # fmt: skip
        return 0 if ok else 1
    if args.action == "down":
        done = cluster.down(purge=args.purge)
        if args.json:
            output.print_json({"status": "ok", **json.loads(done.model_dump_json())})
        else:
            print(f"stopped: {', '.join(done.stopped) or 'nothing was running'}")
        return 0
    try:
        result = cluster.up()
    except (processes.ProcessError, builder.PlatformBuildError, RuntimeError) as exc:
        print(f"vsearch platform up: {exc}", file=sys.stderr)
        if args.json:
            output.print_json({"status": "error", "message": str(exc)})
        return 3
    if args.json:
        output.print_json({"status": "ok", **json.loads(result.model_dump_json())})
    else:
        for step, seconds in result.steps.items():
            print(f"{step:36} {seconds:7.1f} s")
        print(f"kubeconfig: {result.kubeconfig}")
    return 0


def run(args: argparse.Namespace) -> int:
    if args.action in ("up", "down", "status"):
        return run_cluster(args)
    names = args.names or list(builder.COMPONENTS)
    unknown = sorted(set(names) - set(builder.COMPONENTS))
    if unknown:
        from harness.cli import usage_error

        return usage_error(args, ValueError(f"unknown program(s) {', '.join(unknown)}"))
    if args.action == "list":
        rows = []
        for name in names:
            component = builder.COMPONENTS[name]
            binary = builder.cached(name)
            line = {
                "name": name,
                "module": component.module,
                "version": builder.pinned_version(component),
                "binary": str(binary) if binary else None,
            }
            rows.append(line)
            if not args.json:
                print(f"{name:8} {component.module}@{line['version']}  {binary or '(not built)'}")
        if args.json:
            output.print_json({"status": "ok", "programs": rows})
        return 0
    status, results, errors = 0, [], []
    for name in names:
        try:
            result = builder.build(name, force=args.force)
        except builder.PlatformBuildError as exc:
            print(f"vsearch platform build {name}: {exc}", file=sys.stderr)
            errors.append({"name": name, "message": str(exc)})
            status = 3
            continue
        results.append(json.loads(result.model_dump_json()))
        if not args.json:
            how = "reused" if result.reused else "built"
            print(f"{name:8} {how} in {result.seconds:.1f} s  {result.binary}")
    if args.json:
        output.print_json(
            {"status": "error" if errors else "ok", "programs": results, "errors": errors}
        )
    return status
