"""stdout is the result: with `--json`, one JSON document on stdout and everything else on stderr.

`json_stdout()` wraps a command that was given `--json`: for its duration file descriptor 1 is
the terminal's stderr, so banners, progress, notices, log lines and child processes that inherit
stdout all land on stderr, whoever prints them. The one document goes to `result()`, the real
stdout kept aside. Outside `json_stdout()`, `result()` is plain `sys.stdout`.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
from collections.abc import Iterator
from typing import Any, TextIO

_result: TextIO | None = None
_written = False


def result() -> TextIO:
    """Where the command's result goes: the real stdout."""
    return _result or sys.stdout


def print_json(document: Any) -> None:
    """The one JSON document of a `--json` command, on the real stdout."""
    write_result(json.dumps(document, indent=2, default=str) + "\n")


def write_result(text: str) -> None:
    """Text that is the command's result (already a JSON document with --json)."""
    global _written
    out = result()
    out.write(text)
    out.flush()
    _written = True


def written() -> bool:
    """Whether the command has written its result."""
    return _written


@contextlib.contextmanager
def json_stdout(enabled: bool = True) -> Iterator[None]:
    """While the block runs, fd 1 (and sys.stdout) is stderr; `result()` is the real stdout."""
    global _result, _written
    if not enabled or _result is not None:
        yield
        return
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1)
    real = os.fdopen(os.dup(saved), "w", encoding="utf-8")
    os.dup2(2, 1)
    _result = real
    _written = False
    try:
        yield
    finally:
        _result = None
        with contextlib.suppress(Exception):
            sys.stdout.flush()
        real.flush()
        os.dup2(saved, 1)
        os.close(saved)
        real.close()
