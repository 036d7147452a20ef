"""Looking for credentials where they must not be: the git tree, logs, results, reports.

Two kinds of finding: a secret this run generated (exact string; it must appear nowhere but
the platform's 0600 credentials.json), and text that looks like a credential whatever its
origin (known key formats, URLs with a password, a random-looking literal assigned to a name
like `password` or `secret_key`).
"""

from __future__ import annotations

import math
import re
import subprocess
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

MAX_FILE_BYTES = 8 << 20

KNOWN_FORMATS: dict[str, re.Pattern[str]] = {
    "AWS access key id": re.compile(r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b"),
    "private key block": re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----"),
    "GitHub token": re.compile(r"\bgh[pousr]_[A-Za-z0-9]{36,}\b"),
    "Slack token": re.compile(r"\bxox[baprs]-[A-Za-z0-9-]{10,}"),
    # SeaweedS3 generates access keys of this shape; one in a file is a leaked run key.
    "generated S3 access key": re.compile(r"\bVS[0-9A-F]{18}\b"),
    # user:password@host, unless both are placeholders filled in elsewhere ($(VAR), ${VAR}).
    "password in a URL": re.compile(
        r"\b[a-z][a-z0-9+.-]*://(?![^\s@]*[$]\W)[^\s/:@'\"]+:[^\s/@'\"]{3,}@[\w.-]+"
    ),
}
_ASSIGNED = re.compile(
    r"""(?ix)
    (password|passwd|pwd|secret|secret_?key|access_?key|api_?key|token|auth)["']?
    \s*[:=]\s*
    ["']([^"'\s]{16,})["']
    """
)
#: Literals that name a secret or stand in for one, not secrets themselves.
_PLACEHOLDER = re.compile(r"(?i)example|changeme|dummy|placeholder|redacted|\*\*\*|\$\{|\{\{|<")


def entropy(text: str) -> float:
    """Shannon entropy in bits per character."""
    counts = Counter(text)
    return -sum(n / len(text) * math.log2(n / len(text)) for n in counts.values())


def looks_random(value: str) -> bool:
    """Generated secrets mix letters and digits with high entropy; names and words do not."""
    return (
        not _PLACEHOLDER.search(value)
        and any(c.isdigit() for c in value)
        and any(c.isalpha() for c in value)
        and entropy(value) >= 3.5
    )


@dataclass(frozen=True)
class Finding:
    path: str
    line: int
    kind: str
    excerpt: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.kind}: {self.excerpt}"


def _mask(text: str, secret: str) -> str:
    return text.replace(secret, f"{secret[:3]}…({len(secret)} chars)")


def scan_text(text: str, where: str, secrets: Mapping[str, str] | None = None) -> Iterator[Finding]:
    secrets = {k: v for k, v in (secrets or {}).items() if v}
    for number, line in enumerate(text.splitlines(), 1):
        for name, value in secrets.items():
            if value in line:
                yield Finding(where, number, f"this run's {name}", _mask(line.strip(), value)[:160])
        for kind, pattern in KNOWN_FORMATS.items():
            if match := pattern.search(line):
                yield Finding(where, number, kind, _mask(line.strip(), match.group(0))[:160])
        for match in _ASSIGNED.finditer(line):
            if looks_random(match.group(2)):
                yield Finding(
                    where,
                    number,
                    f"random-looking literal assigned to {match.group(1)!r}",
                    _mask(line.strip(), match.group(2))[:160],
                )


def read_text(path: Path) -> str | None:
    """A file's text, or None for binaries and huge files."""
    try:
        if path.stat().st_size > MAX_FILE_BYTES:
            return None
        data = path.read_bytes()
    except OSError:
        return None
    if b"\0" in data[:8192]:
        return None
    return data.decode("utf-8", "replace")


def scan_files(
    paths: Iterable[Path], root: Path | None = None, secrets: Mapping[str, str] | None = None
) -> list[Finding]:
    findings = []
    for path in paths:
        text = read_text(path)
        if text is None:
            continue
        where = str(path.relative_to(root)) if root and path.is_relative_to(root) else str(path)
        findings.extend(scan_text(text, where, secrets))
    return findings


def git_files(root: Path) -> list[Path]:
    """Tracked files plus untracked ones that are not ignored (what the next commit may add)."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=root,
        capture_output=True,
        check=True,
    ).stdout.decode()
    return [root / name for name in listed.split("\0") if name and (root / name).is_file()]


def files_under(*dirs: Path | None) -> list[Path]:
    out: list[Path] = []
    for directory in dirs:
        if directory is not None and directory.exists():
            out.extend(p for p in directory.rglob("*") if p.is_file())
    return out
