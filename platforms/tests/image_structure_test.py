"""Structure test of an image index built by oci_image_index (both Bazel modes).

Per architecture (the index must list linux/amd64 and linux/arm64):
- config: entrypoint `python3 -m <module>`, non-root user, PORT=8080, PYTHONPATH, 8080/tcp,
  OCI source/revision labels; for a function, exec_timeout / max_inflight / env equal to its
  entry in manifests/functions.yaml;
- files: every --expect-file present (symlinks followed inside the image), nothing matching
  --forbid (compilers, shells, package managers, credentials), no setuid files, and every ELF
  file's DT_NEEDED libraries resolvable inside the image (so the arm64 image links, too);
- layers: the base image's layers come first and are the same blobs in every function image.
Standard library only.
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import os
import posixpath
import struct
import sys
import tarfile
import unittest
from pathlib import Path

ARGS: argparse.Namespace
WANT_PLATFORMS = {("linux", "amd64"), ("linux", "arm64")}
#: Libraries that an optional part of a wheel links and that nothing we run loads.
OPTIONAL_LIBRARIES = {
    # numba/np/ufunc/tbbpool: the TBB threading layer; numba falls back to omp/workqueue.
    "libtbb.so.12",
}
LIB_DIRS = {
    "amd64": ["lib/x86_64-linux-gnu", "usr/lib/x86_64-linux-gnu", "lib64", "lib", "usr/lib"],
    "arm64": ["lib/aarch64-linux-gnu", "usr/lib/aarch64-linux-gnu", "lib", "usr/lib"],
}


def runfile(path: str) -> Path:
    for base in (os.environ.get("RUNFILES_DIR"), os.environ.get("TEST_SRCDIR")):
        if base:
            for ws in (os.environ.get("TEST_WORKSPACE", ""), "_main", "vsearch", "__main__"):
                candidate = Path(base) / ws / path
                if candidate.exists():
                    return candidate
    return Path(path)


class Image:
    """One platform's image of an OCI layout: config, merged file tree, ELF dependencies.

    One pass over each layer: members (whiteouts applied), small text files kept, and the
    DT_NEEDED / RUNPATH of every ELF file in the layers not in `skip_elf` (the base's layers,
    which the base image's own test checks).
    """

    KEEP = ("/etc/passwd", "/etc/group")

    def __init__(self, layout: Path, manifest_desc: dict, skip_elf: set[str] = frozenset()) -> None:
        self.layout = layout
        self.manifest = self.blob_json(manifest_desc["digest"])
        self.config = self.blob_json(self.manifest["config"]["digest"])
        self.files: dict[str, tarfile.TarInfo] = {}
        self.data: dict[str, bytes] = {}
        self.elf: dict[str, tuple[list[str], list[str]]] = {}
        for layer in self.manifest["layers"]:
            check_elf = layer["digest"] not in skip_elf
            with tarfile.open(self.blob(layer["digest"]), "r|*") as tar:
                for m in tar:
                    name = "/" + m.name.lstrip("./").rstrip("/")
                    base = posixpath.basename(name)
                    if base.startswith(".wh."):
                        target = posixpath.join(posixpath.dirname(name), base[4:])
                        for k in [
                            k for k in self.files if k == target or k.startswith(target + "/")
                        ]:
                            del self.files[k]
                        continue
                    self.files[name] = m
                    self.elf.pop(name, None)
                    if not m.isfile():
                        continue
                    if name in self.KEEP:
                        self.data[name] = tar.extractfile(m).read()
                    elif check_elf and m.size >= 64:
                        f = tar.extractfile(m)
                        head = f.read(4)
                        if head == b"\x7fELF":
                            parsed = elf_needed(head + f.read())
                            if parsed is not None:
                                self.elf[name] = parsed

    def blob(self, digest: str) -> Path:
        return self.layout / "blobs" / digest.replace(":", "/")

    def blob_json(self, digest: str) -> dict:
        return json.loads(self.blob(digest).read_bytes())

    def resolve(self, path: str, depth: int = 0) -> str | None:
        """Follow symlinks (in every path component) inside the image."""
        if depth > 40:
            return None
        parts = [p for p in posixpath.normpath("/" + path).split("/") if p]
        current = "/"
        for i, part in enumerate(parts):
            candidate = posixpath.join(current, part)
            member = self.files.get(candidate)
            if member is None:
                return None
            if member.issym():
                target = member.linkname
                target = target if target.startswith("/") else posixpath.join(current, target)
                rest = "/".join(parts[i + 1 :])
                return self.resolve(posixpath.normpath(posixpath.join(target, rest)), depth + 1)
            current = candidate
        return current

    def read(self, path: str) -> bytes | None:
        return self.data.get(path)


def load_index(layout: Path) -> dict:
    top = json.loads((layout / "index.json").read_bytes())
    desc = top["manifests"][0]
    if desc["mediaType"].endswith("image.index.v1+json"):
        return json.loads((layout / "blobs" / desc["digest"].replace(":", "/")).read_bytes())
    return top


def functions_yaml(path: Path, name: str) -> dict:
    """The `defaults` merged with function `name` from manifests/functions.yaml (flat keys)."""
    text = path.read_text()
    entry: dict = {}
    defaults: dict = {}
    section, current, in_env = None, None, False
    for raw in text.splitlines():
        line = raw.split(" #", 1)[0].rstrip()
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        indent = len(line) - len(line.lstrip())
        if indent == 0:
            section = line.rstrip(":")
            continue
        stripped = line.strip()
        if section == "defaults" and indent == 2 and ":" in stripped:
            key, _, value = stripped.partition(":")
            defaults[key] = value.strip()
            in_env = False
        elif section == "functions":
            if stripped.startswith("- "):
                current = {}
                in_env = False
                stripped = stripped[2:]
                key, _, value = stripped.partition(":")
                current[key] = value.strip()
                if current.get("name") == name:
                    entry = current
                continue
            key, _, value = stripped.partition(":")
            if current is None:
                continue
            if indent == 4:
                in_env = key == "env"
                current[key] = {} if in_env else value.strip()
            elif indent >= 6 and in_env:
                current["env"][key] = value.strip().strip('"')
    if not entry:
        raise AssertionError(f"{name} is not in {path}")
    merged = {k: v for k, v in defaults.items() if k != "env"}
    merged.update(entry)
    merged.setdefault("env", {})
    if not isinstance(merged["env"], dict):
        merged["env"] = {}
    return merged


def elf_needed(data: bytes) -> tuple[list[str], list[str]] | None:
    """(DT_NEEDED, RUNPATH/RPATH entries) of a 64-bit little-endian ELF, else None."""
    if len(data) < 64 or data[:4] != b"\x7fELF" or data[4] != 2 or data[5] != 1:
        return None
    e_phoff = struct.unpack_from("<Q", data, 32)[0]
    e_phentsize, e_phnum = struct.unpack_from("<HH", data, 54)
    loads, dynamic = [], None
    for i in range(e_phnum):
        off = e_phoff + i * e_phentsize
        p_type, _, p_offset, p_vaddr, _, p_filesz = struct.unpack_from("<IIQQQQ", data, off)
        if p_type == 1:
            loads.append((p_vaddr, p_offset, p_filesz))
        elif p_type == 2:
            dynamic = (p_offset, p_filesz)
    if dynamic is None:
        return [], []

    def vaddr_to_offset(addr: int) -> int:
        for vaddr, offset, size in loads:
            if vaddr <= addr < vaddr + size:
                return addr - vaddr + offset
        return addr

    entries = []
    strtab = 0
    for off in range(dynamic[0], dynamic[0] + dynamic[1], 16):
        tag, val = struct.unpack_from("<qQ", data, off)
        if tag == 0:
            break
        if tag == 5:
            strtab = vaddr_to_offset(val)
        entries.append((tag, val))

    def string(offset: int) -> str:
        end = data.index(b"\0", strtab + offset)
        return data[strtab + offset : end].decode()

    needed = [string(v) for t, v in entries if t == 1]
    paths = [p for t, v in entries if t in (15, 29) for p in string(v).split(":") if p]
    return needed, paths


class ImageStructureTest(unittest.TestCase):
    maxDiff = None

    @classmethod
    def setUpClass(cls) -> None:
        cls.layout = runfile(ARGS.index)
        cls.index = load_index(cls.layout)
        cls.base_layers: dict[str, list[str]] = {}
        if ARGS.base_index:
            base_layout = runfile(ARGS.base_index)
            for desc in load_index(base_layout)["manifests"]:
                manifest = json.loads(
                    (base_layout / "blobs" / desc["digest"].replace(":", "/")).read_bytes()
                )
                cls.base_layers[desc["platform"]["architecture"]] = [
                    ly["digest"] for ly in manifest["layers"]
                ]
        cls.images = {}
        for desc in cls.index["manifests"]:
            p = desc.get("platform", {})
            skip = set(cls.base_layers.get(p.get("architecture"), []))
            cls.images[(p.get("os"), p.get("architecture"))] = Image(cls.layout, desc, skip)

    def each(self):
        """(arch, image) for each platform; tests wrap each in self.subTest(arch=arch)."""
        return [(arch, image) for (_, arch), image in sorted(self.images.items())]

    def test_index_lists_amd64_and_arm64(self) -> None:
        self.assertEqual(set(self.images), WANT_PLATFORMS)
        for (os_, arch), image in self.images.items():
            self.assertEqual((image.config["os"], image.config["architecture"]), (os_, arch))

    def test_config(self) -> None:
        for _arch, image in self.each():
            with self.subTest(arch=image.config["architecture"]):
                cfg = image.config["config"]
                env = dict(kv.split("=", 1) for kv in cfg.get("Env", []))
                user = cfg.get("User", "")
                self.assertTrue(user and user.split(":")[0] not in ("0", "root"), f"user {user!r}")
                self.assertIn("8080/tcp", cfg.get("ExposedPorts", {}))
                self.assertEqual(env.get("PORT"), "8080")
                self.assertEqual(env.get("PYTHONPATH"), "/app")
                labels = cfg.get("Labels", {})
                self.assertTrue(
                    labels.get("org.opencontainers.image.source", "").startswith("https://")
                )
                self.assertRegex(
                    labels.get("org.opencontainers.image.revision", ""), r"^([0-9a-f]{40}|unknown)$"
                )
                self.assertEqual(image.config.get("created"), "1970-01-01T00:00:00Z")
                passwd = (image.read("/etc/passwd") or b"").decode()
                uid = user.split(":")[0]
                self.assertTrue(
                    any(
                        line.split(":")[2] == uid
                        for line in passwd.splitlines()
                        if line.count(":") >= 6
                    ),
                    f"uid {uid} is not in /etc/passwd",
                )
                if ARGS.function:
                    want = functions_yaml(runfile(ARGS.functions_yaml), ARGS.function)
                    self.assertEqual(cfg.get("Entrypoint"), ["python3", "-m", ARGS.module])
                    self.assertEqual(env.get("exec_timeout"), want["exec_timeout"])
                    self.assertEqual(env.get("max_inflight"), str(want["max_inflight"]))
                    for key, value in want["env"].items():
                        self.assertEqual(env.get(key), value, key)

    def test_expected_files(self) -> None:
        for _arch, image in self.each():
            with self.subTest(arch=image.config["architecture"]):
                for path in ARGS.expect_file:
                    real = image.resolve(path)
                    self.assertIsNotNone(real, f"{path} missing")
                    self.assertTrue(image.files[real].isfile(), f"{path} is not a file")

    def test_nothing_unexpected(self) -> None:
        for _arch, image in self.each():
            with self.subTest(arch=image.config["architecture"]):
                bad = sorted(
                    path
                    for path in image.files
                    if any(fnmatch.fnmatch(path, pattern) for pattern in ARGS.forbid)
                )
                self.assertEqual(bad, [], "forbidden files")
                setuid = sorted(p for p, m in image.files.items() if m.isfile() and m.mode & 0o6000)
                self.assertEqual(setuid, [], "setuid/setgid files")

    def test_base_layers_shared(self) -> None:
        """A function image starts with the base image's layers, the very same blobs."""
        if not ARGS.base_index:
            self.skipTest("no --base-index (this is the base image)")
        for arch, image in self.each():
            with self.subTest(arch=arch):
                base = self.base_layers[arch]
                own = [ly["digest"] for ly in image.manifest["layers"]]
                self.assertEqual(own[: len(base)], base)
                self.assertGreater(len(own), len(base))

    def test_shared_libraries_resolve(self) -> None:
        """Every ELF's DT_NEEDED is found in the image (RUNPATH, $ORIGIN, multiarch dirs)."""
        for arch, image in self.each():
            with self.subTest(arch=arch):
                dirs = ["/" + d for d in LIB_DIRS[arch]]
                missing: dict[str, list[str]] = {}
                for name, (needed, runpaths) in sorted(image.elf.items()):
                    origin = posixpath.dirname(name)
                    search = [
                        p.replace("${ORIGIN}", origin).replace("$ORIGIN", origin) for p in runpaths
                    ]
                    # A wheel's bundled libraries (<pkg>.libs) need each other by their hashed
                    # sonames; the loader finds those already loaded by the extension module
                    # whose RUNPATH names the directory, so a sibling file counts.
                    search.append(origin)
                    for lib in needed:
                        if lib in OPTIONAL_LIBRARIES:
                            continue
                        if not any(image.resolve(posixpath.join(d, lib)) for d in search + dirs):
                            missing.setdefault(lib, []).append(name)
                self.assertEqual({k: v[:3] for k, v in missing.items()}, {}, "unresolved libraries")
                if not ARGS.base_index:
                    self.assertGreater(len(image.elf), 100, "the base's ELF files were not read")


def main() -> int:
    global ARGS
    parser = argparse.ArgumentParser()
    parser.add_argument("--index", required=True)
    parser.add_argument("--expect-file", action="append", default=[])
    parser.add_argument("--forbid", action="append", default=[])
    parser.add_argument("--function")
    parser.add_argument("--module")
    parser.add_argument("--functions-yaml")
    parser.add_argument("--base-index")
    ARGS, rest = parser.parse_known_args()
    result = unittest.main(argv=[sys.argv[0], *rest], exit=False, verbosity=2).result
    return 0 if result.wasSuccessful() else 1


if __name__ == "__main__":
    sys.exit(main())
