"""`./vsearch platform build|list`: the cluster platform's programs from pinned Go modules."""

from __future__ import annotations

import argparse
import json
import sys

from harness.cluster import builder


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
    platform.add_argument("--json", action="store_true", help="one JSON record per program")


def run(args: argparse.Namespace) -> int:
    names = args.names or list(builder.COMPONENTS)
    unknown = sorted(set(names) - set(builder.COMPONENTS))
    if unknown:
        print(f"vsearch platform: unknown program(s) {', '.join(unknown)}", file=sys.stderr)
        return 2
    if args.action == "list":
        for name in names:
            component = builder.COMPONENTS[name]
            binary = builder.cached(name)
            line = {
                "name": name,
                "module": component.module,
                "version": builder.pinned_version(component),
                "binary": str(binary) if binary else None,
            }
            where = binary or "(not built)"
            text = f"{name:8} {component.module}@{line['version']}  {where}"
            print(json.dumps(line) if args.json else text)
        return 0
    status = 0
    for name in names:
        try:
            result = builder.build(name, force=args.force)
        except builder.PlatformBuildError as exc:
            print(f"vsearch platform build {name}: {exc}", file=sys.stderr)
            status = 3
            continue
        if args.json:
            print(result.model_dump_json())
        else:
            how = "reused" if result.reused else "built"
            print(f"{name:8} {how} in {result.seconds:.1f} s  {result.binary}")
    return status
