#!/usr/bin/env python3
"""Fetch the pinned inputs of the offline Bazel build into a cache outside the repository.

    python3 platforms/offline/fetch_deps.py                 # fetch .debs and wheels (both archs)
    python3 platforms/offline/fetch_deps.py --relock-debs   # re-resolve platforms/debs.in
    python3 platforms/offline/fetch_deps.py --print-flags   # the bazel flags for the cache

Cache: $VSEARCH_BAZEL_CACHE, default ~/.cache/vsearch-bazel, with two Bazel repositories:
  debs/    the .debs of platforms/bookworm.lock.json (amd64 + arm64), SHA256-verified, and a
           BUILD.bazel with `@debs//:debs` (the target platform's .debs, by select()).
  wheels/  the wheels of requirements-{x86_64,aarch64}.lock needed by base/ and by each function
           (closure of their requirements.in), fetched with `pip download --only-binary=:all:
           --require-hashes` for manylinux x86_64 / aarch64, CPython 3.11, and a BUILD.bazel with
           `@wheels//:wheels`.
Bazel sees them through `--override_repository=debs=<cache>/debs` (and wheels), which
platforms/offline/bazel-test.sh passes; `--print-flags` prints them for manual runs.

Re-lock of .debs: Debian's mirror keeps only current versions, so a pinned .deb disappears after
a point release. `--relock-debs` resolves platforms/debs.in again per architecture with a private
APT configuration (its own sources, state and cache; APT::Architectures set to the target arch;
nothing of the host's dpkg state is read or changed) and `apt-get install --print-uris`, which
gives each package's URL, size and SHA256. The lock records a snapshot.debian.org timestamp too:
online Bazel (MODULE.bazel) downloads from the snapshot, which never deletes.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import datetime as dt
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "platforms" / "tools"))
import pylock  # noqa: E402

DEB_LOCK = ROOT / "platforms" / "bookworm.lock.json"
DEB_INPUT = ROOT / "platforms" / "debs.in"
#: Debian architecture -> the architecture name of our Python locks and manylinux tags.
ARCHS = {"amd64": "x86_64", "arm64": "aarch64"}
MIRRORS = {
    "debian": "http://deb.debian.org/debian",
    "debian-security": "http://deb.debian.org/debian-security",
}
SUITES = [
    ("debian", "bookworm"),
    ("debian", "bookworm-updates"),
    ("debian-security", "bookworm-security"),
]
KEYRING = "/usr/share/keyrings/debian-archive-keyring.gpg"
#: Wheels: Debian bookworm has glibc 2.36, so manylinux_2_36 and older (manylinux2014) fit.
PIP_PLATFORMS = {
    "x86_64": ["manylinux2014_x86_64", "manylinux_2_28_x86_64", "manylinux_2_36_x86_64"],
    "aarch64": ["manylinux2014_aarch64", "manylinux_2_28_aarch64", "manylinux_2_36_aarch64"],
}


def say(msg: str) -> None:
    print(f"fetch-deps: {msg}", file=sys.stderr, flush=True)


def cache_dir() -> Path:
    env = os.environ.get("VSEARCH_BAZEL_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "vsearch-bazel"


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


# --- .debs ---------------------------------------------------------------------------------------


def read_deb_input() -> tuple[list[str], list[str]]:
    wanted, dropped = [], []
    for raw in DEB_INPUT.read_text().splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        (dropped if line.startswith("-") else wanted).append(line.lstrip("-"))
    return wanted, dropped


def private_apt(arch: str, cache: Path) -> Path:
    """An APT configuration of its own for `arch`: sources, lists, status and cache."""
    top = cache / "apt" / arch
    for sub in ("lists/partial", "archives/partial", "etc/preferences.d", "etc/apt.conf.d"):
        (top / sub).mkdir(parents=True, exist_ok=True)
    (top / "status").touch()
    sources = "".join(
        f"deb [arch={arch} signed-by={KEYRING}] {MIRRORS[archive]} {suite} main\n"
        for archive, suite in SUITES
    )
    (top / "etc" / "sources.list").write_text(sources)
    conf = top / "apt.conf"
    conf.write_text(
        f'''APT::Architecture "{arch}";
APT::Architectures {{ "{arch}"; }};
APT::Install-Recommends "false";
APT::Install-Suggests "false";
Acquire::Languages "none";
Acquire::IndexTargets::deb::DEP-11::DefaultEnabled "false";
Acquire::IndexTargets::deb::Contents-deb::DefaultEnabled "false";
Dir::Etc::SourceList "{top}/etc/sources.list";
Dir::Etc::SourceParts "{top}/etc/sources.list.d";
Dir::Etc::Preferences "{top}/etc/preferences";
Dir::Etc::PreferencesParts "{top}/etc/preferences.d";
Dir::Etc::Parts "{top}/etc/apt.conf.d";
Dir::State "{top}";
Dir::State::Lists "{top}/lists";
Dir::State::status "{top}/status";
Dir::Cache "{top}";
Dir::Cache::Archives "{top}/archives";
Debug::NoLocking "true";
APT::Sandbox::User "root";
'''
    )
    return conf


_URI = re.compile(r"^'(?P<url>[^']+)' (?P<file>\S+) (?P<size>\d+) SHA256:(?P<sha>[0-9a-f]{64})$")


def relock_debs() -> int:
    cache = cache_dir()
    wanted, dropped = read_deb_input()
    lock: dict = {
        "comment": "platforms/offline/fetch_deps.py --relock-debs, from platforms/debs.in",
        "suite": "bookworm",
        "snapshot": dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ"),
        "packages": wanted,
        "dropped": dropped,
        "archs": {},
    }
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive", "LC_ALL": "C"}
    for arch in ARCHS:
        conf = private_apt(arch, cache)
        say(f"apt-get update ({arch}, private configuration {conf})")
        subprocess.run(["apt-get", "-c", str(conf), "-qq", "update"], check=True, env=env)
        # `install --print-uris` resolves the closure (it prints MD5 sums); `download
        # --print-uris` of exactly those versions prints their SHA256.
        resolved = subprocess.run(
            ["apt-get", "-c", str(conf), "-qq", "-y", "--print-uris", "install", *wanted],
            check=True, env=env, capture_output=True, text=True,
        ).stdout  # fmt: skip
        pins = []
        for line in resolved.splitlines():
            parts = line.strip().split()
            if len(parts) >= 2 and parts[0].startswith("'") and parts[1].endswith(".deb"):
                name, version, _ = parts[1][: -len(".deb")].split("_")
                if name not in dropped:
                    pins.append(f"{name}={version.replace('%3a', ':')}")
        out = subprocess.run(
            ["apt-get", "-c", str(conf), "-qq", "--print-uris", "download", *pins],
            check=True, env=env, capture_output=True, text=True, cwd=cache,
        ).stdout  # fmt: skip
        entries = []
        for line in out.splitlines():
            m = _URI.match(line.strip())
            if not m:
                continue
            url = m.group("url")
            archive = next(a for a, base in MIRRORS.items() if url.startswith(base + "/"))
            path = url[len(MIRRORS[archive]) + 1 :]
            filename = urllib.request.unquote(path.rsplit("/", 1)[1])
            name, version, _ = filename[: -len(".deb")].split("_")
            if name in dropped:
                continue
            entries.append(
                {
                    "name": name,
                    "version": version.replace("%3a", ":"),
                    "archive": archive,
                    "path": path,
                    "size": int(m.group("size")),
                    "sha256": m.group("sha"),
                }
            )
        if not entries:
            raise SystemExit(f"apt resolved nothing for {arch}: {out[:500]}")
        entries.sort(key=lambda e: e["name"])
        lock["archs"][arch] = entries
        total = sum(e["size"] for e in entries)
        say(f"{arch}: {len(entries)} packages, {total / 1e6:.1f} MB of .debs")
    DEB_LOCK.write_text(json.dumps(lock, indent=1, sort_keys=False) + "\n")
    say(f"wrote {DEB_LOCK.relative_to(ROOT)}")
    return 0


def download(url: str, dest: Path, sha256: str) -> None:
    if dest.exists() and sha256_of(dest) == sha256:
        return
    tmp = dest.with_suffix(dest.suffix + ".part")
    with urllib.request.urlopen(url, timeout=120) as response, tmp.open("wb") as f:
        shutil.copyfileobj(response, f, 1 << 20)
    got = sha256_of(tmp)
    if got != sha256:
        tmp.unlink()
        raise RuntimeError(f"{url}: SHA256 {got} != locked {sha256}")
    tmp.rename(dest)


def fetch_debs(cache: Path) -> None:
    lock = json.loads(DEB_LOCK.read_text())
    repo = cache / "debs"
    jobs = []
    for arch, entries in lock["archs"].items():
        (repo / arch).mkdir(parents=True, exist_ok=True)
        for e in entries:
            filename = urllib.request.unquote(e["path"].rsplit("/", 1)[1])
            urls = [
                f"{MIRRORS[e['archive']]}/{e['path']}",
                f"https://snapshot.debian.org/archive/{e['archive']}/{lock['snapshot']}/{e['path']}",
            ]
            jobs.append((urls, repo / arch / filename, e["sha256"]))

    def one(job: tuple[list[str], Path, str]) -> None:
        urls, dest, sha = job
        errors = []
        gone = False
        for attempt in range(4):  # transient DNS/connection errors: retry with backoff
            for url in urls:
                try:
                    download(url, dest, sha)
                    return
                except urllib.error.HTTPError as exc:
                    gone = gone or exc.code == 404
                    errors.append(f"{url}: {exc}")
                except (OSError, RuntimeError) as exc:  # the next mirror, then again
                    errors.append(f"{url}: {exc}")
            if gone:
                break
            time.sleep(2**attempt)
        hint = (
            " Debian's mirror keeps only current versions: re-lock with "
            "`python3 platforms/offline/fetch_deps.py --relock-debs`."
            if gone
            else ""
        )
        raise RuntimeError(f"{dest.name} cannot be fetched ({'; '.join(errors[-2:])}).{hint}")

    say(f"debs: {len(jobs)} files (amd64 + arm64) into {repo}")
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        list(pool.map(one, jobs))
    groups = {
        arch: [f"{arch}/{urllib.request.unquote(e['path'].rsplit('/', 1)[1])}" for e in entries]
        for arch, entries in lock["archs"].items()
    }
    write_repo(repo, "debs", groups, {"amd64": "is_amd64", "arm64": "is_arm64"})


# --- wheels --------------------------------------------------------------------------------------


def requirement_files() -> list[Path]:
    return list(pylock.requirement_files(ROOT).values())


def pip_command() -> list[str]:
    candidates = [os.environ.get("VSEARCH_PIP_PYTHON"), str(ROOT / ".venv" / "bin" / "python")]
    candidates += ["/usr/bin/python3", sys.executable]
    for python in candidates:
        if python and Path(python).exists():
            ok = subprocess.run([python, "-m", "pip", "--version"], capture_output=True)
            if ok.returncode == 0:
                return [python, "-m", "pip"]
    if os.geteuid() == 0 and shutil.which("apt-get"):
        say("installing python3-pip (apt) for pip download")
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run(["apt-get", "install", "-y", "-qq", "python3-pip"], check=True, env=env)
        return ["/usr/bin/python3", "-m", "pip"]
    raise SystemExit("fetch-deps: pip is needed (python3 -m pip) to download wheels")


def fetch_wheels(cache: Path) -> None:
    repo = cache / "wheels"
    pip = pip_command()
    groups = {}
    per_package: dict[str, dict[str, list[str]]] = {}
    for arch in ARCHS.values():
        lock = pylock.load(ROOT / f"requirements-{arch}.lock")
        needed: set[str] = set()
        for req in requirement_files():
            needed.update(pylock.closure(lock, pylock.read_requirements_in(req.read_text())))
        dest = repo / arch
        dest.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as f:
            for name in sorted(needed):
                f.write(lock[name].requirement_line() + "\n")
            reqfile = f.name
        platforms = [arg for p in PIP_PLATFORMS[arch] for arg in ("--platform", p)]
        say(f"wheels ({arch}): {len(needed)} packages into {dest}")
        try:
            done = subprocess.run(
                [*pip, "download", "--quiet", "--disable-pip-version-check", "--no-deps",
                 "--only-binary=:all:", *platforms, "--python-version", "3.11",
                 "--implementation", "cp", "--abi", "cp311", "--require-hashes",
                 "-r", reqfile, "-d", str(dest)],
                env={**os.environ, "PIP_CONSTRAINT": ""}, stderr=subprocess.PIPE, text=True,
            )  # fmt: skip
        finally:
            os.unlink(reqfile)
        # A machine's pip.conf may name local find-links/indexes that lack a project: noise.
        for line in done.stderr.splitlines():
            if not line.startswith("WARNING: Location "):
                print(line, file=sys.stderr)
        if done.returncode != 0:
            raise SystemExit(f"fetch-deps: pip download ({arch}) failed")
        # One wheel per pinned project and version: the lock decides, not what lies in the dir.
        chosen = {}
        for whl in sorted(dest.glob("*.whl")):
            name = pylock.wheel_project(whl.name)
            if name in needed and pylock.wheel_version(whl.name) == lock[name].version:
                if sha256_of(whl) not in lock[name].hashes:
                    raise SystemExit(f"fetch-deps: {whl} does not match the lock's hashes")
                chosen[name] = f"{arch}/{whl.name}"
        missing = sorted(needed - chosen.keys())
        if missing:
            raise SystemExit(f"fetch-deps: no {arch} wheel for {', '.join(missing)}")
        groups[arch] = sorted(chosen.values())
        for package, projects in pylock.wheel_groups(ROOT, lock).items():
            per_package.setdefault(package, {})[arch] = sorted(chosen[p] for p in projects)
    write_repo(repo, "wheels", groups, {"x86_64": "is_amd64", "aarch64": "is_arm64"})
    write_groups(repo, per_package, {"x86_64": "is_amd64", "aarch64": "is_arm64"})


# --- the Bazel repositories ----------------------------------------------------------------------


def write_groups(repo: Path, packages: dict[str, dict[str, list[str]]], settings: dict) -> None:
    """`:<package>` (`:stages_search`...): that package's closure with the base's, as online."""
    lines = ["", "# Per Bazel package: its closure with the base's (py_layer's `wheels`)."]
    for package, files in sorted(packages.items()):
        lines.append(f'filegroup(\n    name = "{package}",\n    srcs = select({{')
        for arch, setting in settings.items():
            lines.append(f'        "@//platforms:{setting}": [')
            lines += [f'            "{f}",' for f in files[arch]]
            lines.append("        ],")
        lines.append("    }),\n)\n")
    with (repo / "BUILD.bazel").open("a") as out:
        out.write("\n".join(lines))


def write_repo(repo: Path, name: str, groups: dict[str, list[str]], settings: dict) -> None:
    """WORKSPACE + BUILD.bazel: `:<name>` is the target platform's files, one group per arch."""
    (repo / "WORKSPACE").write_text(f'workspace(name = "{name}")\n')
    lines = [
        f"# Generated by platforms/offline/fetch_deps.py: the pinned {name} of both architectures.",
        'package(default_visibility = ["//visibility:public"])',
        "",
    ]
    for arch, files in groups.items():
        lines.append(f"filegroup(\n    name = {arch!r},\n    srcs = [")
        lines += [f"        {f!r}," for f in files]
        lines.append("    ],\n)\n")
    lines.append(f"filegroup(\n    name = {name!r},\n    srcs = select({{")
    for arch, setting in settings.items():
        lines.append(f'        "@//platforms:{setting}": [":{arch}"],')
    lines.append("    }),\n)\n")
    text = "\n".join(lines).replace("'", '"')
    (repo / "BUILD.bazel").write_text(text)


def print_flags(cache: Path) -> None:
    print(
        f"--override_repository=debs={cache / 'debs'} "
        f"--override_repository=wheels={cache / 'wheels'}"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--relock-debs", action="store_true")
    parser.add_argument("--print-flags", action="store_true")
    parser.add_argument("--only", choices=["debs", "wheels"])
    args = parser.parse_args()
    cache = cache_dir()
    if args.print_flags:
        print_flags(cache)
        return 0
    if args.relock_debs:
        return relock_debs()
    cache.mkdir(parents=True, exist_ok=True)
    if args.only in (None, "debs"):
        fetch_debs(cache)
    if args.only in (None, "wheels"):
        fetch_wheels(cache)
    return 0


if __name__ == "__main__":
    sys.exit(main())
