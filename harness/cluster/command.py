"""`./vsearch platform build|list`: the cluster platform's programs from pinned Go modules."""

from __future__ import annotations

import argparse
import json
import sys

from harness.cluster import builder
from harness.commands import output


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    platform = sub.add_parser(
        "platform",
        help="build (or reuse) the cluster platform's programs from pinned Go modules",
        description="Programs: " + ", ".join(builder.COMPONENTS) + ". Versions are pinned by "
        "the wrapper modules in platforms/cluster/modules/ (go.mod + go.sum); binaries are "
        "cached under $VSEARCH_PLATFORM_CACHE or ~/.cache/vsearch-platform and reused.",
    )
    platform.add_argument("action", choices=["build", "list"])
    platform.add_argument("names", nargs="*", metavar="NAME", help="default: all")
    platform.add_argument("--force", action="store_true", help="build even when cached")
    platform.add_argument("--json", action="store_true", help="one JSON document on stdout")


def run(args: argparse.Namespace) -> int:
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
