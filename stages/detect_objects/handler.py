"""detect-objects (VideoSearcher "object-detector"): YOLOv4-tiny on a batch of sampled frames.

Frames are JPEGs in S3 (sample-frames' output). Each is downloaded, decoded and stretched to
the network input before any inference, so a bad frame fails the call early and only the small
network-sized copies stay in memory; inference then runs a few frames per forward pass.
"""

from __future__ import annotations

import threading
from typing import Literal

import cv2
import numpy as np
from pydantic import Field, field_validator

from base.contracts import Event, Model, S3Uri
from base.errors import BadInput, InvalidRequest
from base.runtime import Context, Function
from stages.detect_objects import model
from stages.detect_objects.model import MODEL_NAME, Detector

MAX_FRAMES = 64


class FrameRef(Model):
    uri: S3Uri
    time_s: float = Field(ge=0, allow_inf_nan=False)
    index: int = Field(ge=0)
    # Accepted so sample-frames' frame entries can be passed through unchanged; the size
    # reported is the decoded image's own.
    width: int | None = None
    height: int | None = None


class Input(Model):
    frames: list[FrameRef] = Field(min_length=1, max_length=MAX_FRAMES)


class Config(Model):
    score_threshold: float = Field(0.25, gt=0, le=1)
    # VideoSearcher's value (yolov4-tiny.cfg's iou_thresh); same-class boxes overlapping more
    # than this are suppressed.
    nms_iou: float = Field(0.213, gt=0, le=1)
    input_size: int = Field(416, ge=128, le=1024)
    labels: list[str] | None = Field(None, min_length=1, max_length=80)
    max_objects: int = Field(100, ge=1, le=1000, description="per frame, best scores first")

    @field_validator("input_size")
    @classmethod
    def _multiple_of_32(cls, value: int) -> int:
        # The network downsamples by 32; other sizes misalign the output grid.
        if value % 32:
            raise ValueError("must be a multiple of 32")
        return value


class DetectedObject(Model):
    label: str
    class_id: int
    score: float
    box: list[float] = Field(min_length=4, max_length=4, description="x1, y1, x2, y2 pixels")


class FrameDetections(Model):
    index: int
    time_s: float
    uri: str
    width: int
    height: int
    objects: list[DetectedObject]


class Output(Model):
    model: Literal["yolov4-tiny"] = MODEL_NAME
    frames: list[FrameDetections]


_detector: Detector | None = None
_init_lock = threading.Lock()


def init() -> None:
    detector()


def detector() -> Detector:
    global _detector
    with _init_lock:
        if _detector is None:
            _detector = Detector(model.model_files())
        return _detector


def handle(event: Event[Input, Config], ctx: Context) -> Output:
    det = detector()
    cfg = event.config
    class_ids = None
    if cfg.labels is not None:
        unknown = sorted({name for name in cfg.labels if name not in det.names})
        if unknown:
            raise InvalidRequest(
                f"unknown labels {unknown[:10]}; the model knows the 80 COCO names "
                f"(e.g. person, car, bus, dog)",
                code="unknown_label",
            )
        class_ids = sorted({det.names.index(name) for name in cfg.labels})

    inputs: list[np.ndarray] = []
    sizes: list[tuple[int, int]] = []
    for position, frame in enumerate(event.input.frames):
        # Frames of different clips share base names (frame-00000.jpg); keep them apart.
        path = ctx.download(frame.uri, name=f"frame-{position:03d}.img")
        with ctx.recorder.phase("compute"):
            try:
                image = cv2.imread(str(path), cv2.IMREAD_COLOR)
            except cv2.error:  # OpenCV raises for oversized headers, returns None otherwise
                image = None
            path.unlink(missing_ok=True)
            if image is None or image.size == 0:
                raise BadInput(
                    f"frame {position} (index {frame.index}, {frame.uri}) is not a decodable "
                    f"image (or has more than {model.MAX_IMAGE_PIXELS // 1_000_000} MP)",
                    code="bad_image",
                )
            sizes.append((image.shape[1], image.shape[0]))
            inputs.append(model.to_input(image, cfg.input_size))
            del image

    results: list[FrameDetections] = []
    step = model.frames_per_forward(cfg.input_size)
    for start in range(0, len(inputs), step):
        ctx.check_cancelled()
        with ctx.recorder.phase("compute"):
            outputs = det.infer(inputs[start : start + step], cfg.input_size)
            for offset, rows in enumerate(outputs):
                position = start + offset
                frame = event.input.frames[position]
                width, height = sizes[position]
                found = model.postprocess(
                    rows,
                    width,
                    height,
                    score_threshold=cfg.score_threshold,
                    iou_threshold=cfg.nms_iou,
                    class_ids=class_ids,
                    max_objects=cfg.max_objects,
                )
                results.append(
                    FrameDetections(
                        index=frame.index,
                        time_s=frame.time_s,
                        uri=frame.uri,
                        width=width,
                        height=height,
                        objects=[
                            DetectedObject(
                                label=det.names[d.class_id],
                                class_id=d.class_id,
                                score=round(d.score, 4),
                                box=[round(v, 1) for v in d.box],
                            )
                            for d in found
                        ],
                    )
                )
    return Output(frames=results)


FUNCTION = Function(
    name="detect-objects",
    input_model=Input,
    config_model=Config,
    output_model=Output,
    handle=handle,
    init=init,
    preload=init,  # fork-safe (checked after a real fork): the zygote loads it once
    description="YOLOv4-tiny (OpenCV DNN) object detection on 1..64 sampled JPEG frames",
)
