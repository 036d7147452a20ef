"""The numba warm-up runs the image's own python3.11, never the build machine's.

A rootfs layer is built from the pinned Debian .debs of python3.11 (what //base:rootfs holds),
then `layer_tool.py python --warmup` runs a warm-up that records the interpreter it ran under
into the cache directory, with a failing fake `python3`/`python3.11` first on PATH and a fake
/usr/bin/python3 stand-in: the record must name Debian's 3.11.2 under the scratch image root.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
TOOL = HERE / "layer_tool.py"
DEB_ARCH = {"x86_64": "amd64", "aarch64": "arm64"}.get(platform.machine())
CACHE = Path(os.environ.get("VSEARCH_BAZEL_CACHE", Path.home() / ".cache" / "vsearch-bazel"))
#: python3.11's own closure (enough for `import json, os, sys`).
PACKAGES = [
    "libc6", "zlib1g", "libexpat1", "libpython3.11-minimal", "libpython3.11-stdlib",
    "python3.11-minimal",
]  # fmt: skip

WARMUP = (
    "import json, os, sys; "
    "open(os.path.join(os.environ['NUMBA_CACHE_DIR'], 'python.json'), 'w').write(json.dumps("
    "{'version': sys.version, 'executable': sys.executable, 'prefix': sys.prefix}))"
)


def debs() -> list[Path]:
    found = []
    for name in PACKAGES:
        matches = sorted((CACHE / "debs" / str(DEB_ARCH)).glob(f"{name}_*.deb"))
        if not matches:
            pytest.skip(f"no {name} .deb in {CACHE}: run platforms/offline/fetch_deps.py")
        found.append(matches[-1])
    return found


def test_warmup_runs_the_images_python_not_the_hosts(tmp_path: Path) -> None:
    if DEB_ARCH is None or platform.system() != "Linux":
        pytest.skip(f"no Debian userland for {platform.system()} {platform.machine()}")
    fake = tmp_path / "fake-bin"
    fake.mkdir()
    for name in ("python", "python3", "python3.11", "python3.12"):
        (fake / name).write_text("#!/bin/sh\necho 'host python used' >&2\nexit 97\n")
        (fake / name).chmod(0o755)
    env = {**os.environ, "PATH": f"{fake}:{os.environ.get('PATH', '/usr/bin:/bin')}"}
    rootfs = tmp_path / "rootfs.tar.gz"
    subprocess.run(
        [sys.executable, TOOL, "debs", "--out", rootfs, "--report", tmp_path / "rootfs.json",
         "--arch", DEB_ARCH, *[a for d in debs() for a in ("--deb", d)]],
        check=True, env=env, capture_output=True, timeout=600,
    )  # fmt: skip
    layer = tmp_path / "layer.tar.gz"
    done = subprocess.run(
        [sys.executable, TOOL, "python", "--out", layer, "--report", tmp_path / "layer.json",
         "--arch", platform.machine(), "--deb-arch", DEB_ARCH, "--warmup", WARMUP,
         "--warmup-rootfs", rootfs, "--warmup-cache-dir", "/var/cache/numba"],
        env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "host python used" not in done.stdout + done.stderr
    with tarfile.open(layer) as tar:
        record = json.loads(tar.extractfile("var/cache/numba/python.json").read())
    # Debian bookworm's interpreter from the .deb, run from the unpacked image root.
    assert record["version"].startswith("3.11.2 ")
    assert "/vsearch-warm-" in record["executable"]
    assert record["executable"].endswith("/image/usr/bin/python3.11")
    assert record["prefix"].endswith("/image/usr")
    notes = json.loads((tmp_path / "layer.json").read_text())["notes"]
    assert any(n.startswith("warmed: 1 cache files") for n in notes), notes


def test_warmup_without_the_images_rootfs_is_an_error(tmp_path: Path) -> None:
    if DEB_ARCH is None or platform.system() != "Linux":
        pytest.skip(f"no Debian userland for {platform.system()} {platform.machine()}")
    done = subprocess.run(
        [sys.executable, TOOL, "python", "--out", tmp_path / "l.tar.gz", "--report",
         tmp_path / "l.json", "--arch", platform.machine(), "--deb-arch", DEB_ARCH,
         "--warmup", "pass"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode != 0 and "--warmup-rootfs" in done.stderr
