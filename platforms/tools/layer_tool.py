"""Build reproducible OCI layer tarballs (gzip) from .debs, wheels and source files.

    layer_tool.py debs   --out L.tar.gz --arch amd64 --deb A.deb ... [--exclude GLOB] ...
    layer_tool.py python --out L.tar.gz --arch x86_64 [--src WS_PATH=FILE ...] [--wheels ...]

Reproducible: entries sorted by path, every mtime MTIME, numeric owners only, no user/group
names, PAX headers off (GNU format), gzip header without name and with mtime 0, .pyc files as
unchecked-hash pycs (no timestamp inside) compiled with the image's path as co_filename.
Standard library only; used by the deb_layer / py_layer rules in both Bazel modes.
"""

from __future__ import annotations

import argparse
import fcntl
import fnmatch
import gzip
import hashlib
import importlib.util
import io
import json
import lzma
import os
import platform
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import pylock

#: 2000-01-01T00:00:00Z, the portable mtime of rules_pkg: some tools reject 1970.
MTIME = 946684800
GZIP_LEVEL = 1
PY_TAG = "cpython-311"
TRIPLETS = {"amd64": "x86_64-linux-gnu", "arm64": "aarch64-linux-gnu"}
DEB_TO_MACHINE = {"amd64": "x86_64", "arm64": "aarch64"}


@dataclass
class Entry:
    kind: str  # "file" | "dir" | "symlink"
    data: bytes = b""
    mode: int = 0o644
    uid: int = 0
    gid: int = 0
    target: str = ""


class Layer:
    """An in-memory file tree written out as a deterministic tar."""

    def __init__(self) -> None:
        self.entries: dict[str, Entry] = {}

    @staticmethod
    def norm(path: str) -> str:
        p = PurePosixPath("/" + path.lstrip("./").lstrip("/"))
        return str(p).lstrip("/")

    def _parents(self, path: str, uid: int = 0, gid: int = 0) -> None:
        parts = path.split("/")[:-1]
        for i in range(1, len(parts) + 1):
            d = "/".join(parts[:i])
            if d not in self.entries:
                self.entries[d] = Entry("dir", mode=0o755)

    def add_file(self, path: str, data: bytes, mode: int = 0o644, uid: int = 0, gid: int = 0):
        path = self.norm(path)
        self._parents(path)
        self.entries[path] = Entry("file", data=data, mode=mode & 0o7777, uid=uid, gid=gid)

    def add_dir(self, path: str, mode: int = 0o755, uid: int = 0, gid: int = 0) -> None:
        path = self.norm(path)
        self._parents(path)
        self.entries[path] = Entry("dir", mode=mode & 0o7777, uid=uid, gid=gid)

    def add_symlink(self, path: str, target: str) -> None:
        path = self.norm(path)
        self._parents(path)
        self.entries[path] = Entry("symlink", target=target, mode=0o777)

    def write(self, out: Path) -> dict:
        """Write `out` (.tar.gz); returns digests and sizes."""
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as tar:
            for path in sorted(self.entries):
                e = self.entries[path]
                info = tarfile.TarInfo(path + ("/" if e.kind == "dir" else ""))
                info.mtime = MTIME
                info.uid, info.gid = e.uid, e.gid
                info.uname = info.gname = ""
                info.mode = e.mode
                if e.kind == "dir":
                    info.type = tarfile.DIRTYPE
                    tar.addfile(info)
                elif e.kind == "symlink":
                    info.type = tarfile.SYMTYPE
                    info.linkname = e.target
                    tar.addfile(info)
                else:
                    info.size = len(e.data)
                    tar.addfile(info, io.BytesIO(e.data))
        raw = buf.getbuffer()
        # gzip level 1: ~3x faster than the default 6 for ~8% more bytes (CI has 2 cores).
        # The gzip header has no file name and mtime 0 (wbits 31 = gzip framing via zlib).
        compressor = zlib.compressobj(GZIP_LEVEL, zlib.DEFLATED, 31)
        with out.open("wb") as f:
            for i in range(0, len(raw), 1 << 22):
                f.write(compressor.compress(raw[i : i + (1 << 22)]))
            f.write(compressor.flush())
        info = {
            "diff_id": "sha256:" + hashlib.sha256(raw).hexdigest(),
            "size_uncompressed": len(raw),
            "size": out.stat().st_size,
            "files": sum(1 for e in self.entries.values() if e.kind == "file"),
        }
        raw.release()
        return info


# --- Python -------------------------------------------------------------------------------------


def compile_pycs(layer: Layer, prefix: str) -> int:
    """Add __pycache__/*.cpython-311.pyc (unchecked hash) for every .py under `prefix`."""
    if sys.version_info[:2] != (3, 11):
        print(f"layer_tool: Python {sys.version.split()[0]} is not 3.11: no .pyc", file=sys.stderr)
        return 0
    from importlib._bootstrap_external import _code_to_hash_pyc

    prefix = Layer.norm(prefix)
    count = 0
    for path in sorted(p for p in layer.entries if not prefix or p.startswith(prefix + "/")):
        e = layer.entries[path]
        if e.kind != "file" or not path.endswith(".py"):
            continue
        try:
            code = compile(e.data, "/" + path, "exec", dont_inherit=True)
        except (SyntaxError, ValueError):
            continue  # Python 2 leftovers in some packages and .py templates
        pyc = _code_to_hash_pyc(code, importlib.util.source_hash(e.data), False)
        p = PurePosixPath(path)
        layer.add_file(str(p.parent / "__pycache__" / f"{p.stem}.{PY_TAG}.pyc"), bytes(pyc))
        count += 1
    return count


def install_wheel(layer: Layer, wheel: Path, site: str, scripts: str) -> None:
    """Unpack a wheel the way pip does (purelib/platlib/scripts/data), minus pip's own extras."""
    with zipfile.ZipFile(wheel) as zf:
        infos = sorted(zf.infolist(), key=lambda i: i.filename)
        data_dir = next(
            (i.filename.split("/")[0] for i in infos if i.filename.split("/")[0].endswith(".data")),
            None,
        )
        for info in infos:
            if info.is_dir():
                continue
            name = info.filename
            mode = (info.external_attr >> 16) & 0o777
            mode = 0o755 if mode & 0o111 else 0o644
            if data_dir and name.startswith(data_dir + "/"):
                _, scheme, rest = name.split("/", 2)
                if scheme in ("purelib", "platlib"):
                    dest = f"{site}/{rest}"
                elif scheme == "scripts":
                    dest, mode = f"{scripts}/{rest}", 0o755
                elif scheme == "data":
                    dest = f"/usr/local/{rest}"
                else:  # headers
                    continue
            else:
                dest = f"{site}/{name}"
            layer.add_file(dest, zf.read(info), mode)
        dist_info = next(i.filename.split("/")[0] for i in infos if ".dist-info/" in i.filename)
        layer.add_file(f"{site}/{dist_info}/INSTALLER", b"vsearch-bazel\n")


def select_wheels(args) -> tuple[list[Path], list[Path]]:
    """(wheels of this layer, wheels of the excluded base) for --requirements / --exclude."""
    lock = pylock.load(args.lock)
    direct = []
    for req in args.requirements:
        direct += pylock.read_requirements_in(Path(req).read_text())
    base = []
    for req in args.exclude_requirements:
        base += pylock.read_requirements_in(Path(req).read_text())
    want = pylock.function_wheels(lock, direct, base)
    base_all = pylock.closure(lock, base) if base else []
    by_name: dict[str, Path] = {}
    for w in args.wheel:
        p = Path(w)
        name = pylock.wheel_project(p.name)
        if name in lock and pylock.wheel_version(p.name) == lock[name].version:
            by_name[name] = p
    missing = [n for n in want + base_all if n not in by_name]
    if missing:
        raise SystemExit(f"layer_tool: no {args.arch} wheel for {', '.join(missing)}")
    return [by_name[n] for n in want], [by_name[n] for n in base_all]


def extract(layer: Layer, root: Path) -> None:
    for path, e in layer.entries.items():
        dest = root / path
        if e.kind == "dir":
            dest.mkdir(parents=True, exist_ok=True)
        elif e.kind == "symlink":
            dest.parent.mkdir(parents=True, exist_ok=True)
            os.symlink(e.target, dest)
        else:
            dest.parent.mkdir(parents=True, exist_ok=True)
            dest.write_bytes(e.data)
            os.chmod(dest, e.mode)


def warm(args, layer: Layer, base_wheels: list[Path], site: str) -> str:
    """Run `--warmup` (Python) against this layer; keep what it writes to --warmup-cache-dir.

    Runs the image's own interpreter, never the build machine's: the base image's root
    filesystem layers (--warmup-rootfs, Debian bookworm's python3.11 and its libraries) are
    unpacked into a scratch root with this layer, the base's wheels and the sources, and the
    image's python3.11 runs there through the image's own dynamic loader (no chroot, no root).
    Only when the target architecture is the build machine's (and the build machine runs
    Linux); otherwise the cache directory is left empty and the container fills it at its first
    start. numba keys its cache directory by the source directory's absolute path, so the files
    are renamed to the image's paths afterwards.
    """
    machine = platform.machine()
    if platform.system() != "Linux" or DEB_TO_MACHINE.get(args.deb_arch) != machine:
        _cache_dir(args, layer)  # empty: the container fills it at its first start
        return f"skipped: target {args.arch} is not this machine's {platform.system()} {machine}"
    if not args.warmup_rootfs:
        raise SystemExit("layer_tool: --warmup needs --warmup-rootfs (the image's root filesystem)")
    # The compiled cache records source paths, so the scratch root is a fixed path (one per
    # warmup), not a random temporary directory: two builds then write identical files.
    key = hashlib.sha256(f"{args.warmup}|{args.arch}".encode()).hexdigest()[:16]
    root = Path(tempfile.gettempdir()) / f"vsearch-warm-{key}"
    with open(f"{root}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        shutil.rmtree(root, ignore_errors=True)
        root.mkdir()
        try:
            return _warm_in(args, layer, base_wheels, site, root)
        finally:
            shutil.rmtree(root, ignore_errors=True)


#: The dynamic loader of each architecture's Debian userland.
LOADERS = {"amd64": "ld-linux-x86-64.so.2", "arm64": "ld-linux-aarch64.so.1"}


def extract_rootfs(tar_path: Path, dest: Path) -> None:
    """Unpack a root filesystem layer (files, dirs, symlinks as they are; no usr/share)."""
    with tarfile.open(tar_path) as tar:
        for member in tar:
            name = member.name.lstrip("./")
            if not name or name.startswith("usr/share/") or ".." in name.split("/"):
                continue
            target = dest / name
            if member.isdir():
                target.mkdir(parents=True, exist_ok=True)
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            if target.is_symlink() or target.exists():
                target.unlink()
            if member.issym():
                os.symlink(member.linkname, target)
            elif member.islnk():
                shutil.copyfile(dest / member.linkname.lstrip("./"), target)
                os.chmod(target, member.mode & 0o7777)
            elif member.isfile():
                with tar.extractfile(member) as src, open(target, "wb") as out:
                    shutil.copyfileobj(src, out)
                os.chmod(target, member.mode & 0o7777)


def image_python(image: Path, deb_arch: str) -> tuple[list[str], dict[str, str]]:
    """The command prefix and environment that run the image's python3.11 from `image`.

    The image's loader runs its interpreter with the image's libraries only (--library-path;
    absolute symlinks inside the image, such as /lib64/ld-linux-x86-64.so.2, are not followed:
    they would lead to the build machine's files).
    """
    triplet = TRIPLETS[deb_arch]
    libs = [d for d in (image / "lib" / triplet, image / "usr/lib" / triplet) if d.is_dir()]
    loader = next((d / LOADERS[deb_arch] for d in libs if (d / LOADERS[deb_arch]).is_file()), None)
    python = image / "usr/bin/python3.11"
    if loader is None or not python.is_file() or python.is_symlink():
        raise SystemExit(f"layer_tool: no python3.11 and loader in the image's root ({image})")
    command = [str(loader), "--library-path", ":".join(map(str, libs)), str(python)]
    return command, {"PYTHONHOME": str(image / "usr")}


#: numba uses a cache directory only if it can create files in it, even to load a valid cache,
#: and the platform may run the image under another uid than the one that owns the cache
#: (OpenFaaS's setNonRootUser: 12000): so every uid may write there.
CACHE_DIR_MODE = 0o777


def _cache_dir(args, layer: Layer) -> tuple[int, int]:
    uid, gid = (int(x) for x in args.warmup_cache_owner.split(":"))
    layer.add_dir(args.warmup_cache_dir, CACHE_DIR_MODE, uid, gid)
    return uid, gid


_ADDRESS = re.compile(rb"0x7f[0-9a-f]{10}")


def _stable_addresses(data: bytes) -> bytes:
    """Number the user-space addresses in one numba cache file (1, 2, ... same width).

    numba names stencil kernels and pickles reprs after object addresses, which differ between
    runs even without address randomisation. Renaming them consistently within a file (each
    cache file is a self-contained library) keeps the cache valid and the bytes reproducible.
    """
    mapping: dict[bytes, bytes] = {}

    def number(m: re.Match) -> bytes:
        key = m.group(0)
        if key not in mapping:
            mapping[key] = b"0x" + (b"%x" % (len(mapping) + 1)).rjust(len(key) - 2, b"0")
        return mapping[key]

    return _ADDRESS.sub(number, data)


def _no_aslr() -> None:
    """personality(ADDR_NO_RANDOMIZE) for the child about to exec; ignored where refused."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        current = libc.personality(0xFFFFFFFF)
        if current != -1:
            libc.personality(current | 0x0040000)
    except OSError:
        pass


def _warm_in(args, layer: Layer, base_wheels: list[Path], site: str, root: Path) -> str:
    for rootfs in args.warmup_rootfs:
        extract_rootfs(Path(rootfs), root / "image")
    python, python_env = image_python(root / "image", args.deb_arch)
    extract(layer, root / "image")
    base = Layer()
    for w in base_wheels:
        install_wheel(base, w, site, "/usr/local/bin")
    extract(base, root / "image")
    app = root / "image" / Layer.norm(args.prefix)
    for spec in args.warmup_src:
        ws_path, file = spec.split("=", 1)
        dest = app / ws_path
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(file, dest)
    cache = root / "cache"
    cache.mkdir()
    env = {
        "PATH": str(root / "image/usr/bin"),
        "HOME": str(root),
        **python_env,
        "PYTHONNOUSERSITE": "1",
        "PYTHONDONTWRITEBYTECODE": "1",
        "PYTHONPATH": f"{app}:{root / 'image' / Layer.norm(site)}",
        "NUMBA_CACHE_DIR": str(cache),
        "PYTHONHASHSEED": "0",
        **dict(kv.split("=", 1) for kv in args.warmup_env),
    }
    env["NUMBA_CACHE_DIR"] = str(cache)
    # numba names some compiled functions after object addresses: without address space
    # randomisation (and with a fixed hash seed) a second build writes the same bytes.
    done = subprocess.run(
        [*python, "-s", "-c", args.warmup], env=env, cwd=root,
        capture_output=True, text=True, timeout=600, preexec_fn=_no_aslr,
    )  # fmt: skip
    if done.returncode != 0:
        raise SystemExit(f"layer_tool: warmup failed:\n{done.stdout}\n{done.stderr}")
    # <dirname>_<sha1(absolute source dir)>: map the temporary paths to the image's.
    rename = {}
    for d, _, _ in os.walk(root / "image"):
        image_path = "/" + os.path.relpath(d, root / "image")
        key = f"{os.path.basename(d)}_{hashlib.sha1(d.encode()).hexdigest()}"
        rename[key] = f"{os.path.basename(d)}_{hashlib.sha1(image_path.encode()).hexdigest()}"
    uid, gid = _cache_dir(args, layer)
    n = 0
    for d, _, files in os.walk(cache):
        rel = os.path.relpath(d, cache)
        parts = [] if rel == "." else rel.split(os.sep)
        parts = [rename.get(p, p) for p in parts]
        target_dir = "/".join([args.warmup_cache_dir.rstrip("/"), *parts])
        layer.add_dir(target_dir, CACHE_DIR_MODE, uid, gid)
        for f in sorted(files):
            data = _stable_addresses((Path(d) / f).read_bytes())
            layer.add_file(f"{target_dir}/{f}", data, 0o644, uid, gid)
            n += 1
    return f"warmed: {n} cache files under {args.warmup_cache_dir}"


def cmd_python(args) -> dict:
    layer = Layer()
    notes = []
    for spec in args.src:
        ws_path, file = spec.split("=", 1)
        data = Path(file).read_bytes()
        layer.add_file(f"{args.prefix}/{ws_path}", data, 0o644)
    base_wheels: list[Path] = []
    if args.requirements:
        wheels, base_wheels = select_wheels(args)
        for w in wheels:
            install_wheel(layer, w, args.site_packages, "/usr/local/bin")
        notes.append(f"{len(wheels)} wheels: " + " ".join(sorted(w.name for w in wheels)))
    if args.compile:
        notes.append(f"{compile_pycs(layer, '/')} .pyc compiled")
    for d in args.dir:
        path, owner, mode = d.split(":", 2) if d.count(":") >= 2 else (d, "0.0", "755")
        uid, gid = (int(x) for x in owner.split("."))
        layer.add_dir(path, int(mode, 8), uid, gid)
    if args.warmup:
        notes.append(warm(args, layer, base_wheels, args.site_packages))
    info = layer.write(Path(args.out))
    info["notes"] = notes
    return info


# --- Debian packages ----------------------------------------------------------------------------


def ar_members(data: bytes):
    if not data.startswith(b"!<arch>\n"):
        raise ValueError("not an ar archive")
    pos = 8
    while pos + 60 <= len(data):
        header = data[pos : pos + 60]
        name = header[:16].decode().strip().rstrip("/")
        size = int(header[48:58].decode().strip())
        pos += 60
        yield name, data[pos : pos + size]
        pos += size + (size & 1)


def deb_data(deb: Path) -> tarfile.TarFile:
    for name, payload in ar_members(deb.read_bytes()):
        if name.startswith("data.tar"):
            if name.endswith(".xz"):
                payload = lzma.decompress(payload)
            elif name.endswith(".gz"):
                payload = gzip.decompress(payload)
            elif name.endswith(".zst"):
                raise SystemExit(f"{deb.name}: zstd data member is not supported")
            return tarfile.open(fileobj=io.BytesIO(payload))
    raise SystemExit(f"{deb.name}: no data.tar member")


def cmd_debs(args) -> dict:
    layer = Layer()
    triplet = TRIPLETS[args.arch]
    excluded = [g.replace("{triplet}", triplet).lstrip("/") for g in args.exclude]
    keep = [g.replace("{triplet}", triplet).lstrip("/") for g in args.keep]
    dropped = 0
    packages = []
    for deb in sorted(args.deb, key=lambda p: Path(p).name):
        packages.append(Path(deb).name)
        tar = deb_data(Path(deb))
        members = tar.getmembers()
        hard = {}
        for m in members:
            path = Layer.norm(m.name)
            if not path:
                continue
            if any(fnmatch.fnmatch(path, g) for g in excluded) and not any(
                fnmatch.fnmatch(path, g) for g in keep
            ):
                dropped += 1
                continue
            if m.isdir():
                if path not in layer.entries:
                    layer.add_dir(path, m.mode)
            elif m.issym():
                layer.add_symlink(path, m.linkname)
            elif m.islnk():
                hard[path] = Layer.norm(m.linkname)
            elif m.isfile():
                layer.add_file(path, tar.extractfile(m).read(), m.mode)
        for path, target in hard.items():
            src = layer.entries.get(target)
            if src is not None and src.kind == "file":
                layer.add_file(path, src.data, src.mode)
    for spec in args.symlink:
        link, target = (s.replace("{triplet}", triplet) for s in spec.split("=", 1))
        layer.add_symlink(link, target)
    passwd = ["root:x:0:0:root:/root:/usr/sbin/nologin"]
    group = ["root:x:0:"]
    for spec in args.user:
        name, uid, gid, home = spec.split(":")
        passwd.append(f"{name}:x:{uid}:{gid}:{name}:{home}:/usr/sbin/nologin")
        group.append(f"{name}:x:{gid}:")
        layer.add_dir(home, 0o755, int(uid), int(gid))
    layer.add_file("etc/passwd", ("\n".join(passwd) + "\n").encode())
    layer.add_file("etc/group", ("\n".join(group) + "\n").encode())
    layer.add_dir("tmp", 0o1777)
    layer.add_dir("root", 0o700)
    notes = [f"{len(packages)} packages, {dropped} excluded paths"]
    if args.compile:
        notes.append(f"{compile_pycs(layer, '/usr/lib/python3.11')} stdlib .pyc compiled")
    info = layer.write(Path(args.out))
    info["notes"] = notes
    info["packages"] = packages
    return info


def main() -> int:
    parser = argparse.ArgumentParser(fromfile_prefix_chars="@")
    sub = parser.add_subparsers(dest="cmd", required=True)
    d = sub.add_parser("debs")
    d.add_argument("--out", required=True)
    d.add_argument("--report", required=True)
    d.add_argument("--arch", required=True, choices=sorted(TRIPLETS))
    d.add_argument("--deb", action="append", default=[])
    d.add_argument("--exclude", action="append", default=[])
    d.add_argument("--keep", action="append", default=[])
    d.add_argument("--symlink", action="append", default=[])
    d.add_argument("--user", action="append", default=[])
    d.add_argument("--compile", action="store_true")
    p = sub.add_parser("python")
    p.add_argument("--out", required=True)
    p.add_argument("--report", required=True)
    p.add_argument("--arch", required=True)
    p.add_argument("--deb-arch", required=True)
    p.add_argument("--prefix", default="/app")
    p.add_argument("--src", action="append", default=[])
    p.add_argument("--dir", action="append", default=[])
    p.add_argument("--lock")
    p.add_argument("--requirements", action="append", default=[])
    p.add_argument("--exclude-requirements", action="append", default=[])
    p.add_argument("--wheel", action="append", default=[])
    p.add_argument("--site-packages", default="/usr/local/lib/python3.11/dist-packages")
    p.add_argument("--compile", action="store_true")
    p.add_argument("--warmup")
    p.add_argument("--warmup-src", action="append", default=[])
    p.add_argument("--warmup-env", action="append", default=[])
    p.add_argument("--warmup-cache-dir", default="/var/cache/numba")
    p.add_argument("--warmup-cache-owner", default="0:0")
    p.add_argument("--warmup-rootfs", action="append", default=[], help="the image's rootfs tars")
    args = parser.parse_args()
    info = cmd_debs(args) if args.cmd == "debs" else cmd_python(args)
    Path(args.report).write_text(json.dumps(info, indent=1, sort_keys=True) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
