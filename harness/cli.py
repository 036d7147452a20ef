"""The vsearch command line (run it through ./vsearch, which installs what is missing first)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="vsearch",
        description="Search videos for spoken words with a serverless pipeline, and benchmark it.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    test = sub.add_parser("test", help="lint and run every test (what CI runs)")
    test.add_argument("--all", action="store_true", help="include tests marked slow")
    test.add_argument("pytest_args", nargs=argparse.REMAINDER, help="extra arguments for pytest")

    lock = sub.add_parser("lock", help="re-resolve requirements.in into the hashed locks")
    lock.add_argument("--upgrade", action="store_true", help="move every pin to its newest")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "test":
        from harness.commands.test import run_tests

        return run_tests(args.pytest_args, include_slow=args.all)
    if args.command == "lock":
        from harness.commands.lock import relock

        return relock(args.upgrade)
    raise AssertionError(args.command)


if __name__ == "__main__":
    sys.exit(main())
