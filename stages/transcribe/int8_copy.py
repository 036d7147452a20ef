"""An int8 copy of a CTranslate2 Whisper model, made once per model file and machine.

The shipped tiny.en stores its weights as float16. Loaded with compute_type int8, CTranslate2
quantizes every linear weight (per output row: scale = 127 / max |w|, rounded) and widens the
other float16 tensors to float32, in every process that loads it: about two thirds of the load's
CPU time here. The copy holds the weights as they are after that step, so a replica reads them
as they are. It is the same arithmetic, so transcripts do not change (test_int8_copy.py compares
them token for token against the shipped model).

Which weights CTranslate2 quantizes for Whisper: names ending in "weight" except the encoder's
convolutions (kept in float). The binary layout of model.bin (version 6) is CTranslate2's:
  u32 version, str spec name, u32 spec revision, u32 count,
  count x (str name, u8 rank, rank x u32 dim, u8 dtype id, u32 byte count, bytes),
  u32 alias count, alias count x (str alias, str target);
  str = u16 length including a NUL, utf-8 bytes, NUL.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import struct
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

BINARY_VERSION = 6
#: CTranslate2's DataType enum order (bfloat16, id 5, has no numpy type: such models are not
#: copied).
DTYPES: tuple[type[np.generic], ...] = (np.float32, np.int8, np.int16, np.int32, np.float16)
#: Bumped whenever the copy's content would change, so stale copies are not used.
FORMAT = 1
#: Compute types whose weights the copy holds (on CPU, int8 computes with float32 elsewhere).
COMPUTE_TYPES = ("int8", "int8_float32")
#: The files besides model.bin a model directory may carry; copied as they are.
SIDE_FILES = (
    "config.json",
    "tokenizer.json",
    "vocabulary.txt",
    "vocabulary.json",
    "preprocessor_config.json",
)


class UnsupportedModel(ValueError):
    """A model.bin this module does not copy (another binary version, bfloat16)."""


@dataclass
class ModelBin:
    spec: str
    revision: int
    variables: dict[str, np.ndarray]
    aliases: dict[str, str]


def read_model_bin(path: Path) -> ModelBin:
    data = path.read_bytes()
    offset = 0

    def take(fmt: str) -> int:
        nonlocal offset
        (value,) = struct.unpack_from("<" + fmt, data, offset)
        offset += struct.calcsize("<" + fmt)
        return int(value)

    def text() -> str:
        nonlocal offset
        length = take("H")
        value = data[offset : offset + length - 1].decode("utf-8")
        offset += length
        return value

    version = take("I")
    if version != BINARY_VERSION:
        raise UnsupportedModel(f"{path}: binary version {version}, not {BINARY_VERSION}")
    spec, revision = text(), take("I")
    variables: dict[str, np.ndarray] = {}
    for _ in range(take("I")):
        name = text()
        shape = [take("I") for _ in range(take("B"))]
        type_id, size = take("B"), take("I")
        if type_id >= len(DTYPES):
            raise UnsupportedModel(f"{path}: {name} has dtype id {type_id}")
        dtype = np.dtype(DTYPES[type_id])
        array = np.frombuffer(data, dtype=dtype, count=size // dtype.itemsize, offset=offset)
        variables[name] = array.reshape(shape)
        offset += size
    aliases = {}
    for _ in range(take("I")):
        alias = text()
        aliases[alias] = text()
    if offset != len(data):
        raise UnsupportedModel(f"{path}: {len(data) - offset} bytes after the aliases")
    return ModelBin(spec, revision, variables, aliases)


def write_model_bin(model: ModelBin, path: Path) -> None:
    def text(value: str) -> bytes:
        raw = value.encode("utf-8")
        return struct.pack("<H", len(raw) + 1) + raw + b"\0"

    type_ids = {np.dtype(t): i for i, t in enumerate(DTYPES)}
    with path.open("wb") as out:
        out.write(struct.pack("<I", BINARY_VERSION) + text(model.spec))
        out.write(struct.pack("<II", model.revision, len(model.variables)))
        for name, array in model.variables.items():
            out.write(text(name) + struct.pack("<B", array.ndim))
            out.write(struct.pack(f"<{array.ndim}I", *array.shape))
            raw = np.ascontiguousarray(array).tobytes()
            out.write(struct.pack("<BI", type_ids[array.dtype], len(raw)) + raw)
        out.write(struct.pack("<I", len(model.aliases)))
        for alias, target in model.aliases.items():
            out.write(text(alias) + text(target))


def quantizable(name: str, array: np.ndarray) -> bool:
    """What CTranslate2's Whisper loader quantizes at compute_type int8."""
    return (
        name.endswith("weight")
        and "conv" not in name
        and array.ndim == 2
        and array.dtype in (np.float16, np.float32)
    )


def quantize_rows(weight: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """int8 rows and their float32 scales (int8 = round(w * scale), scale = 127 / max |row|)."""
    values = weight.astype(np.float32)
    peak = np.abs(values).max(axis=1)
    peak[peak == 0] = 127.0  # an all-zero row: any scale gives zeros; 1.0 keeps it finite
    scale = (np.float32(127.0) / peak).astype(np.float32)
    return np.rint(values * scale[:, None]).astype(np.int8), scale


def to_int8(model: ModelBin) -> ModelBin:
    variables: dict[str, np.ndarray] = {}
    for name, array in model.variables.items():
        if name.endswith("_scale") and name.removesuffix("_scale") in model.variables:
            continue  # recomputed below when its weight is quantized; kept if it is already
        if quantizable(name, array):
            variables[name], variables[name + "_scale"] = quantize_rows(array)
        elif array.dtype == np.float16:
            variables[name] = array.astype(np.float32)
        else:
            variables[name] = array
            scale = model.variables.get(name + "_scale")
            if scale is not None:
                variables[name + "_scale"] = scale
    return ModelBin(model.spec, model.revision, variables, dict(model.aliases))


def cache_root() -> Path:
    configured = os.environ.get("WHISPER_CACHE_DIR")
    if configured:
        return Path(configured)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "vsearch" / "whisper"


def copy_dir(source: Path, root: Path) -> Path:
    """Where the int8 copy of `source` lives under `root` (keyed by the file's identity)."""
    stat = (source / "model.bin").stat()
    identity = f"{FORMAT}\0{source.resolve()}\0{stat.st_size}\0{stat.st_mtime_ns}"
    return root / f"{source.name}-int8-{hashlib.sha256(identity.encode()).hexdigest()[:16]}"


def ensure_int8_copy(source: Path, root: Path | None = None) -> Path:
    """The int8 copy of the model in `source`, made now if missing (atomically: concurrent
    callers each build one, the first rename wins and the others discard theirs)."""
    target = copy_dir(source, root or cache_root())
    if (target / "model.bin").is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    try:
        write_model_bin(to_int8(read_model_bin(source / "model.bin")), work / "model.bin")
        for name in SIDE_FILES:
            if (source / name).is_file():
                shutil.copyfile(source / name, work / name)
        origin = {"source": str(source.resolve()), "format": FORMAT}
        (work / "source.json").write_text(json.dumps(origin) + "\n")
        try:
            work.rename(target)
        except OSError:
            if not (target / "model.bin").is_file():
                raise
    finally:
        with contextlib.suppress(OSError):
            shutil.rmtree(work)
    return target
