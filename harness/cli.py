"""The vsearch command line (run it through ./vsearch, which installs what is missing first)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="vsearch",
        description="Search videos for spoken words with a serverless pipeline, and benchmark it.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    from harness.commands.options import DEFAULT_GATEWAY_PORT, add_kind_options, add_state_dir

    backend_help = (
        "embedded (default): local processes; kind: OpenFaaS CE + MinIO on kind; k8s: the same "
        "on any cluster by --kubeconfig"
    )
    up = sub.add_parser(
        "up",
        help="start the platform (S3, gateway, functions) and leave it running",
        description="embedded: the local platform in the background. kind: create or reuse the "
        "kind cluster, push the images, install OpenFaaS CE and MinIO, deploy the functions, "
        "keep a port-forward to the gateway (manifests/README.md).",
    )
    up.add_argument(
        "--backend", choices=["embedded", "kind", "k8s"], default="embedded", help=backend_help
    )
    add_state_dir(up)
    up.add_argument("--no-limits", action="store_true", help="embedded: no cgroup limits")
    up.add_argument(
        "--timeout", type=float, default=None,
        help="seconds for the functions to become ready (default: 300 embedded, 600 kind)",
    )  # fmt: skip
    add_kind_options(up)
    up.add_argument(
        "--gateway-port", type=int, default=DEFAULT_GATEWAY_PORT,
        help="kind: the gateway's port on 127.0.0.1 (default: %(default)s)",
    )  # fmt: skip
    down = sub.add_parser("down", help="stop the platform (kind: delete what `up` created)")
    down.add_argument(
        "--backend", choices=["embedded", "kind", "k8s"], default="embedded", help=backend_help
    )
    add_state_dir(down)
    add_kind_options(down, creates=False)
    status = sub.add_parser("status", help="the platform's health and replicas")
    status.add_argument(
        "--backend", choices=["embedded", "kind", "k8s"], default="embedded", help=backend_help
    )
    add_state_dir(status)
    status.add_argument("--json", action="store_true", help="machine-readable output")
    add_kind_options(status, creates=False)

    search = sub.add_parser(
        "search",
        help="find the clips where words are spoken in a video",
        description="Upload VIDEO, run the pipeline, print the matching clips with times, "
        "transcripts and objects. Starts the embedded platform if it is not running "
        "(and stops it afterwards unless --keep).",
    )
    search.add_argument("video", type=Path, help="a video file (mp4, webm, avi, mkv, ...)")
    search.add_argument("--query", "-q", required=True, help="the words to find")
    search.add_argument("--json", action="store_true", help="print the result as JSON")
    search.add_argument(
        "--exact",
        action="store_true",
        help="whole words exactly as transcribed only (default: tolerant of recognition errors, "
        "ranked by score)",
    )
    search.add_argument("--keep", action="store_true", help="leave the platform running")
    search.add_argument(
        "--save", type=Path, metavar="DIR",
        help="download the matching clips into DIR (names: clip index and times in the video)",
    )  # fmt: skip
    search.add_argument(
        "--all", action="store_true", dest="save_all",
        help="with --save: every clip, not only the matches",
    )  # fmt: skip
    search.add_argument(
        "--clip-concurrency", type=int, default=None, help="clips processed at once (default 4)"
    )
    search.add_argument(
        "--backend", choices=["embedded", "inprocess", "kind", "k8s"], default="embedded",
        help="embedded (default): the serverless platform; inprocess: the baseline, the same "
        "stage handlers called sequentially in this process (no gateway, no S3); kind/k8s: the "
        "functions `up --backend kind|k8s` left running on the cluster",
    )  # fmt: skip
    search.add_argument(
        "--baseline", action="store_true",
        help="also run the in-process baseline, alternating with the serverless request (a "
        "warm-up pair, then --repeat pairs), and report serverless/baseline ratios of median "
        "end-to-end time and CPU-seconds, platform and CLI overhead",
    )  # fmt: skip
    search.add_argument(
        "--repeat", type=int, default=3, help="with --baseline: timed pairs (default 3)"
    )
    add_state_dir(search)
    add_kind_options(search, creates=False)

    demo = sub.add_parser(
        "demo", help="generate a video with known speech and objects, search it, check it"
    )
    demo.add_argument("--json", action="store_true", help="print the result as JSON")
    demo.add_argument("--keep", action="store_true", help="leave the platform running")
    demo.add_argument(
        "--media-dir", type=Path, default=ROOT / ".vsearch" / "media", help="where to write it"
    )
    demo.add_argument(
        "--save", type=Path, metavar="DIR", default=ROOT / ".vsearch" / "demo-clips",
        help="where the matching clip is saved (default: %(default)s)",
    )  # fmt: skip
    add_state_dir(demo)

    bench = sub.add_parser(
        "bench",
        help="run deployment regimes (warm-steady, cold-burst, ...) and report the figures",
        description="Run each REGIME of harness/regimes.yaml on a freshly deployed platform: "
        "prepare and verify its replicas, offer its open-loop load, check every answer, judge "
        "the thresholds. Writes results.json, requests.csv, invocations.csv and PNG plots to "
        "--out. Exit 0: every threshold met; 1: one missed; 2: usage; 3: platform problem.",
    )
    bench.add_argument(
        "regimes", nargs="+", metavar="REGIME",
        help="regime names, in order; or `capacity` alone: step the open-loop rate until "
        "success or latency breaks, print the sustainable rate against the CPU-bound cap",
    )  # fmt: skip
    bench.add_argument("--backend", choices=["embedded", "kind", "k8s"], default="embedded")
    bench.add_argument(
        "--size", choices=["ci", "small", "medium", "large"], default="small",
        help="small (default): >= 20 measured warm-steady requests, enough for a p95; "
        "ci: what ./vsearch test runs",
    )  # fmt: skip
    bench.add_argument(
        "--regimes", type=Path, default=None, dest="regimes_file", metavar="FILE",
        help="a regimes.yaml of your own (default: harness/regimes.yaml)",
    )  # fmt: skip
    bench.add_argument("--video", type=Path, help="input video (default: the generated demo)")
    bench.add_argument("--query", help="the words to search for (required with --video)")
    bench.add_argument("--out", type=Path, help="report directory (default: .vsearch/bench/...)")
    bench.add_argument("--json", action="store_true", help="print results.json to stdout")
    bench.add_argument("--no-limits", action="store_true", help="embedded: no cgroup limits")
    bench.add_argument(
        "--baseline", action="store_true",
        help="after the regimes, run the same video through the in-process baseline (one process, "
        "no gateway; not the warm baseline the ratio gates use) (a warm-up, "
        "then --baseline-requests timed) and report serverless/baseline ratios (baseline.json)",
    )  # fmt: skip
    bench.add_argument("--baseline-requests", type=int, default=3, help="timed baseline requests")
    bench.add_argument(
        "--state-dir",
        type=Path,
        default=None,
        help="embedded: the benchmark platform's state and logs (default: .vsearch/bench-platform)",
    )
    add_kind_options(bench)
    bench.add_argument(
        "--keep-cluster", action="store_true",
        help="kind: leave the cluster (and registry) running afterwards; a cluster left by "
        "`up --backend kind` is always attached to and left running",
    )  # fmt: skip

    report = sub.add_parser(
        "report",
        help="show one benchmark run, or compare several side by side",
        description="One DIR: its full summary. Several: one row per run and regime. Two (A B): "
        "also B against A with significance tests (Mann-Whitney U on latency, Fisher on "
        "success); exit 1 on a significant regression. --calibrate: memory budgets (a YAML "
        "fragment for regimes.yaml), limit sizing and measured latency ratios.",
    )
    report.add_argument("dirs", nargs="+", type=Path, metavar="DIR", help="bench --out dirs")
    report.add_argument("--json", action="store_true", help="machine-readable comparison")
    report.add_argument(
        "--calibrate", action="store_true",
        help="print budgets (peak x 1.2) and the limit-sizing report from these runs",
    )  # fmt: skip
    report.add_argument(
        "--no-gate", action="store_true", help="A B: report a regression but exit 0"
    )

    test = sub.add_parser("test", help="lint and run every test (what CI runs)")
    test.add_argument("--all", action="store_true", help="include tests marked slow")
    test.add_argument(
        "--no-bazel",
        action="store_true",
        help="leave out the image build and its tests (platforms/offline/bazel-test.sh)",
    )
    test.add_argument(
        "--cluster", action="store_true",
        help="the cluster tier instead: the regimes and live-cluster tests on the cluster "
        "VSEARCH_BACKEND (default k8s) and VSEARCH_KUBECONFIG name; skipped, with the reason, "
        "when there is none",
    )  # fmt: skip
    test.add_argument("pytest_args", nargs=argparse.REMAINDER, help="extra arguments for pytest")

    doctor = sub.add_parser(
        "doctor",
        help="what each path (embedded, kind, Bazel offline/online) has, lacks, how to install",
    )
    doctor.add_argument("--json", action="store_true", help="machine-readable output")

    from harness.commands.images import add_parser as add_images_parser

    add_images_parser(sub)
    from harness.cluster.command import add_parser as add_platform_parser

    add_platform_parser(sub)

    lock = sub.add_parser("lock", help="re-resolve requirements.in into the hashed locks")
    lock.add_argument("--upgrade", action="store_true", help="move every pin to its newest")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from harness.termination import unwind_on_termination

    unwind_on_termination()  # `kill` and CI time limits stop a hosted platform as Ctrl-C does
    as_json = bool(getattr(args, "json", False))
    if not as_json:
        return run(args)
    from harness.commands import output

    # stdout is the result: one JSON document; whatever else is printed goes to stderr.
    with output.json_stdout():
        code = run(args)
        if not output.written():
            output.print_json({
                "status": "error",
                "error": {
                    "code": "no_result",
                    "message": f"vsearch {args.command} exited {code} without a result; "
                    "the reason is on stderr",
                },
            })  # fmt: skip
    return code


def usage_error(args: argparse.Namespace, exc: Exception) -> int:
    """A problem the user can fix: said on stderr (and as the JSON document with --json); 2."""
    print(f"vsearch {args.command}: {exc}", file=sys.stderr)
    if getattr(args, "json", False):
        from harness.commands import output

        output.print_json({"status": "error", "error": {"code": "usage", "message": str(exc)}})
    return 2


def run(args: argparse.Namespace) -> int:
    if args.command in ("up", "down", "status") and args.backend in ("kind", "k8s"):
        from harness.commands import kind as kind_command

        return int(getattr(kind_command, args.command)(args))
    if args.command in ("up", "down", "status"):
        from harness.commands import platform

        if args.command == "up":
            timeout_s = args.timeout or 300.0
            return platform.up(args.state_dir, timeout_s=timeout_s, no_limits=args.no_limits)
        if args.command == "down":
            return platform.down(args.state_dir)
        return platform.status(args.state_dir, as_json=args.json)
    if args.command == "search":
        from harness.commands.search import (
            UsageError,
            print_answer,
            run_inprocess,
            run_search,
            run_side_by_side,
        )

        config: dict[str, object] = {}
        if args.clip_concurrency:
            config["clip_concurrency"] = args.clip_concurrency
        if args.exact:
            config["functions"] = {"search": {"mode": "exact"}}
        compared = None
        try:
            if args.save_all and args.save is None:
                raise UsageError("--all needs --save DIR")
            if args.backend in ("kind", "k8s"):
                from harness.commands.kind import cluster_backend

                answer = run_search(
                    args.video, args.query, state_dir=args.state_dir, config=config,
                    quiet=args.json, save_dir=args.save, save_all=args.save_all,
                    cluster=cluster_backend(args),
                )  # fmt: skip
            elif args.backend == "inprocess":
                answer = run_inprocess(
                    args.video, args.query, config=config, quiet=args.json,
                    log_path=args.state_dir / "inprocess.log",
                )  # fmt: skip
            elif args.baseline:
                answer, compared = run_side_by_side(
                    args.video, args.query, state_dir=args.state_dir, config=config,
                    repeat=args.repeat, quiet=args.json, keep=args.keep,
                )  # fmt: skip
            else:
                answer = run_search(
                    args.video, args.query, state_dir=args.state_dir, config=config,
                    quiet=args.json, keep=args.keep, save_dir=args.save, save_all=args.save_all,
                )  # fmt: skip
        except UsageError as exc:
            return usage_error(args, exc)
        return print_answer(answer, as_json=args.json, compared=compared)
    if args.command == "demo":
        from harness.commands.demo import run_demo
        from harness.commands.search import UsageError

        try:
            return run_demo(
                args.state_dir, media_dir=args.media_dir, as_json=args.json, keep=args.keep,
                save_dir=args.save,
            )  # fmt: skip
        except UsageError as exc:
            return usage_error(args, exc)
    if args.command in ("bench", "report"):
        from harness.commands import bench as bench_command

        try:
            if args.command == "report":
                return bench_command.run_report(
                    args.dirs, as_json=args.json, calibrate=args.calibrate, no_gate=args.no_gate
                )
            options = {}
            if args.backend in ("kind", "k8s"):
                from harness.commands.kind import backend_options

                options = {**backend_options(args), "keep_cluster": args.keep_cluster}
            if args.regimes == ["capacity"]:
                return bench_command.run_capacity(
                    backend_name=args.backend, size=args.size, video=args.video,
                    query=args.query, out=args.out, state_dir=args.state_dir,
                    no_limits=args.no_limits, backend_options=options,
                    regimes_file=args.regimes_file,
                )  # fmt: skip
            return bench_command.run_bench(
                args.regimes, backend_name=args.backend, size=args.size, video=args.video,
                query=args.query, out=args.out, as_json=args.json, state_dir=args.state_dir,
                no_limits=args.no_limits, backend_options=options, inprocess_baseline=args.baseline,
                baseline_requests=args.baseline_requests, regimes_file=args.regimes_file,
            )  # fmt: skip
        except bench_command.UsageError as exc:
            return usage_error(args, exc)
    if args.command == "platform":
        from harness.cluster.command import run as run_platform

        return run_platform(args)
    if args.command == "test":
        from harness.commands.test import run_cluster_tests, run_tests

        if args.cluster:
            return run_cluster_tests(args.pytest_args)
        return run_tests(args.pytest_args, include_slow=args.all, bazel=not args.no_bazel)
    if args.command == "images":
        from harness.commands.images import run as run_images

        return run_images(args)
    if args.command == "doctor":
        from harness.commands.doctor import run_doctor

        return run_doctor(as_json=args.json)
    if args.command == "lock":
        from harness.commands.lock import relock

        return relock(args.upgrade)
    raise AssertionError(args.command)


if __name__ == "__main__":
    sys.exit(main())
