"""Publishing: a function's index (amd64 + arm64) into a registry, and read back unchanged.

Starts Debian's docker-registry (the distribution registry) on a free loopback port with its own
config and storage, then publishes the index twice, as platforms/README.md documents:
  1. the :push target's script (what `bazel run //stages/<fn>:push` runs), repository
     overridden with OCI_REPOSITORY, plain http allowed with --dest-tls-verify=false;
  2. the documented command without Bazel: skopeo copy --all --preserve-digests oci:INDEX ...
and reads each back through the registry's HTTP API and `skopeo inspect --raw`: the same index
digest as the local layout's, linux/amd64 and linux/arm64 both listed, every manifest, config
and layer blob present in the registry.

Skips (exit 0, "SKIPPED: <reason>") only when docker-registry or skopeo is missing, or the
registry does not come up; every other failure fails.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

PATH = os.environ.get("PATH", "") + ":/usr/local/sbin:/usr/sbin:/sbin:/usr/local/bin:/usr/bin:/bin"
MT_INDEX = "application/vnd.oci.image.index.v1+json"
MT_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
ACCEPT = ", ".join([MT_INDEX, MT_MANIFEST,
                    "application/vnd.docker.distribution.manifest.list.v2+json",
                    "application/vnd.docker.distribution.manifest.v2+json"])  # fmt: skip


def runfile(path: str) -> Path:
    for base in (os.environ.get("RUNFILES_DIR"), os.environ.get("TEST_SRCDIR")):
        if base:
            for ws in (os.environ.get("TEST_WORKSPACE", ""), "_main", "vsearch", "__main__"):
                candidate = Path(base) / ws / path
                if candidate.exists():
                    return candidate
    return Path(path)


def skip(reason: str) -> int:
    print(f"SKIPPED: {reason}", flush=True)
    out = os.environ.get("TEST_UNDECLARED_OUTPUTS_DIR")
    if out:
        Path(out, "SKIPPED").write_text(reason + "\n")
    return 0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def blob(layout: Path, digest: str) -> bytes:
    return (layout / "blobs" / digest.replace(":", "/")).read_bytes()


def local_index(layout: Path) -> tuple[str, dict]:
    """The digest and content of the multi-platform index the layout holds (rules_oci nests it)."""
    top = json.loads((layout / "index.json").read_text())
    (desc,) = top["manifests"]
    assert desc["mediaType"] == MT_INDEX, desc
    data = blob(layout, desc["digest"])
    assert "sha256:" + hashlib.sha256(data).hexdigest() == desc["digest"]
    return desc["digest"], json.loads(data)


def get(url: str, method: str = "GET") -> tuple[int, dict[str, str], bytes]:
    req = urllib.request.Request(url, method=method, headers={"Accept": ACCEPT})
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


def check_published(registry: str, repo: str, ref: str, digest: str, index: dict) -> None:
    base = f"http://{registry}/v2/{repo}"
    status, headers, body = get(f"{base}/manifests/{ref}")
    assert status == 200, (status, body[:300])
    got = "sha256:" + hashlib.sha256(body).hexdigest()
    assert got == digest == headers.get("Docker-Content-Digest"), (got, digest, headers)
    remote = json.loads(body)
    platforms = sorted(
        f"{m['platform']['os']}/{m['platform']['architecture']}" for m in remote["manifests"]
    )
    assert platforms == ["linux/amd64", "linux/arm64"], platforms
    assert remote == index
    for m in remote["manifests"]:
        status, _, body = get(f"{base}/manifests/{m['digest']}")
        assert status == 200 and "sha256:" + hashlib.sha256(body).hexdigest() == m["digest"]
        image = json.loads(body)
        for b in [image["config"], *image["layers"]]:
            status, headers, _ = get(f"{base}/blobs/{b['digest']}", method="HEAD")
            assert status == 200, (b["digest"], status)
            assert int(headers["Content-Length"]) == b["size"], (b, headers)
    # What a client such as skopeo (or docker/containerd) sees by name.
    raw = subprocess.run(
        ["skopeo", "inspect", "--raw", "--tls-verify=false", f"docker://{registry}/{repo}:{ref}"],
        check=True, capture_output=True, env={**os.environ, "PATH": PATH}, timeout=120,
    ).stdout  # fmt: skip
    assert "sha256:" + hashlib.sha256(raw).hexdigest() == digest
    print(f"{registry}/{repo}:{ref} = {digest}, platforms {', '.join(platforms)}")


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--index", required=True, help="OCI layout of the index (rootpath)")
    parser.add_argument("--push", required=True, help="the oci_push target's script (rootpath)")
    parser.add_argument("--repository", default="vsearch/search")
    args = parser.parse_args()

    registry_bin = shutil.which("docker-registry", path=PATH)
    if not registry_bin:
        return skip("no docker-registry (apt-get install docker-registry)")
    if not shutil.which("skopeo", path=PATH):
        return skip("no skopeo (apt-get install skopeo)")
    layout = runfile(args.index).resolve()
    digest, index = local_index(layout)

    tmp = Path(tempfile.mkdtemp(prefix="vsearch-registry-"))
    port = free_port()
    registry = f"127.0.0.1:{port}"
    (tmp / "config.yml").write_text(
        json.dumps(  # YAML is a superset of JSON
            {
                "version": 0.1,
                "log": {"level": "warn", "accesslog": {"disabled": True}},
                "storage": {"filesystem": {"rootdirectory": str(tmp / "storage")}},
                "http": {"addr": registry, "secret": secrets.token_hex(16)},
            }
        )
    )
    log = (tmp / "registry.log").open("w")
    proc = subprocess.Popen(
        [registry_bin, "serve", str(tmp / "config.yml")],
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if get(f"http://{registry}/v2/")[0] == 200:
                    break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                tail = (tmp / "registry.log").read_text()[-2000:]
                return skip(f"docker-registry did not come up:\n{tail}")
            time.sleep(0.2)

        # 1. The :push target, as `bazel run` would run it (its runfiles hold the layout).
        push = runfile(args.push)
        t0 = time.monotonic()
        subprocess.run(
            [str(push), "--dest-tls-verify=false"], check=True, timeout=600,
            env={**os.environ, "PATH": PATH, "OCI_REPOSITORY": f"{registry}/{args.repository}",
                 "RUNFILES_DIR": os.environ.get("RUNFILES_DIR") or os.environ["TEST_SRCDIR"]},
        )  # fmt: skip
        print(f"bazel run :push equivalent: {time.monotonic() - t0:.1f} s")
        check_published(registry, args.repository, "latest", digest, index)

        # 2. The documented command without Bazel, to another tag.
        t0 = time.monotonic()
        subprocess.run(
            ["skopeo", "copy", "--all", "--preserve-digests", "--dest-tls-verify=false",
             f"oci:{layout}", f"docker://{registry}/{args.repository}:candidate"],
            check=True, timeout=600, env={**os.environ, "PATH": PATH},
        )  # fmt: skip
        print(f"skopeo copy: {time.monotonic() - t0:.1f} s")
        check_published(registry, args.repository, "candidate", digest, index)
        print("PASSED: the index with both architectures is published and reads back unchanged")
        return 0
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
