"""COCO mean average precision of detections, with pycocotools (the reference implementation).

``mAP`` is COCO's AP averaged over IoU thresholds 0.50 to 0.95 (step 0.05), ``mAP50`` the AP at
IoU 0.50, both over every class and at most 100 detections per image. An evaluation set without
a single box has no AP: both are 0.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Sequence
from dataclasses import dataclass

from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

MAX_DETECTIONS = 100


@dataclass(frozen=True)
class ImageTruth:
    """The boxes ([x, y, width, height] pixels) and class ids of one evaluation image."""

    width: int
    height: int
    boxes: Sequence[Sequence[float]]
    labels: Sequence[int]


@dataclass(frozen=True)
class Detection:
    """One predicted box of an image (index into the truths), [x, y, width, height] pixels."""

    image: int
    label: int
    box: tuple[float, float, float, float]
    score: float


def mean_average_precision(
    truths: Sequence[ImageTruth], detections: Sequence[Detection], num_classes: int
) -> dict[str, float]:
    """{"mAP": AP@[.50:.95], "mAP50": AP@.50} of the detections against the truths."""
    if not any(truth.boxes for truth in truths):
        return {"mAP": 0.0, "mAP50": 0.0}
    annotations = [
        {
            "id": number,
            "image_id": image,
            "category_id": int(label),
            "bbox": [float(v) for v in box],
            "area": float(box[2] * box[3]),
            "iscrowd": 0,
        }
        for number, (image, box, label) in enumerate(
            ((i, box, label) for i, t in enumerate(truths) for box, label in zip(t.boxes, t.labels, strict=True)),
            start=1,
        )
    ]
    dataset = {
        "images": [{"id": i, "width": t.width, "height": t.height} for i, t in enumerate(truths)],
        "annotations": annotations,
        "categories": [{"id": c} for c in range(num_classes)],
    }
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints its progress and table
        ground_truth = COCO()
        ground_truth.dataset = dataset
        ground_truth.createIndex()
        if not detections:
            return {"mAP": 0.0, "mAP50": 0.0}
        predicted = ground_truth.loadRes(
            [{"image_id": d.image, "category_id": d.label, "bbox": list(d.box), "score": d.score} for d in detections]
        )
        evaluation = COCOeval(ground_truth, predicted, "bbox")
        evaluation.params.maxDets = [1, 10, MAX_DETECTIONS]
        evaluation.evaluate()
        evaluation.accumulate()
        evaluation.summarize()
    # stats[0] and stats[1] are -1 when no class has a ground-truth box; handled above.
    return {"mAP": max(0.0, float(evaluation.stats[0])), "mAP50": max(0.0, float(evaluation.stats[1]))}
