"""Image augmentations for object detection, with every box moved with its pixels.

``config.augmentation`` names them (the reference's YOLO-style fields): copy-paste (boxes cut from
another training image and pasted where they hide no box of this one), MixUp (a blend with another
training image, both images' boxes kept), scale and translate (the image resized by a random gain
and placed at a random offset on a gray canvas of the same size; boxes scaled, shifted and clipped,
and dropped when less than a fifth of them is left), horizontal and vertical flips, and HSV jitter
(gains on hue, saturation and value). ``mosaic`` and ``degrees`` are refused by name (see
``refuse_unsupported``): a rotated box no longer fits its object.

Every random draw comes from the ``numpy.random.Generator`` passed in, which the task seeds from
torch's generator: its state is in every checkpoint, so a resumed run draws the same augmentations.
Written with numpy and Pillow (no OpenCV): albumentations 2.0.8, the last MIT release, has no
box-aware MixUp or copy-paste, is no longer maintained (its successor is AGPL-3.0), and needs
opencv-python-headless.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from PIL import Image

from tensorone.api.v1alpha1.trainingjob import Augmentation
from tensorone.errors import ConfigurationError

FILL = 114  # the gray of the canvas around a shrunk or shifted image (the YOLO convention)
MIN_KEPT_FRACTION = 0.2  # a box clipped to less than this share of its area is dropped
MIN_BOX_PIXELS = 2.0
MIXUP_BETA = 32.0  # MixUp's blend ratio ~ Beta(32, 32): close to an even blend
MAX_PASTE_OVERLAP = 0.3  # a pasted box may cover at most this share of a box already there
PASTE_TRIES = 10


@dataclass
class Sample:
    """An image (height x width x 3, uint8) and its boxes ([x, y, width, height] pixels) and labels."""

    image: np.ndarray
    boxes: np.ndarray  # float64, N x 4
    labels: np.ndarray  # int64, N

    @property
    def height(self) -> int:
        return int(self.image.shape[0])

    @property
    def width(self) -> int:
        return int(self.image.shape[1])


UNSUPPORTED = {
    "mosaic": "4-image mosaic is not implemented",
    "degrees": "rotation would leave every box loose around its rotated object",
}


def refuse_unsupported(augmentation: Augmentation | None) -> None:
    """A ConfigurationError for an augmentation field the detection task does not implement."""
    if augmentation is None:
        return
    for name, why in UNSUPPORTED.items():
        if getattr(augmentation, name):
            supported = "mixup, copyPaste, hsvH, hsvS, hsvV, fliplr, flipud, scale, translate"
            raise ConfigurationError(
                f"augmentation.{name} is not supported for object detection ({why}); supported: {supported}",
                field=f"config.augmentation.{name}",
            )


def is_active(augmentation: Augmentation | None) -> bool:
    return augmentation is not None and any(
        getattr(augmentation, name) for name in type(augmentation).model_fields if name not in UNSUPPORTED
    )


def augment(
    sample: Sample, augmentation: Augmentation, rng: np.random.Generator, partner: Callable[[], Sample]
) -> Sample:
    """``sample`` augmented as ``augmentation`` says; ``partner`` gives another training image
    (for copy-paste and MixUp), read only when one of them is drawn."""
    if augmentation.copy_paste and rng.random() < augmentation.copy_paste:
        sample = copy_paste(sample, partner(), rng)
    if augmentation.mixup and rng.random() < augmentation.mixup:
        sample = mixup(sample, partner(), rng)
    if augmentation.scale or augmentation.translate:
        gain = 1.0 + rng.uniform(-(augmentation.scale or 0.0), augmentation.scale or 0.0)
        shift = augmentation.translate or 0.0
        sample = scale_translate(sample, gain, rng.uniform(-shift, shift), rng.uniform(-shift, shift))
    if augmentation.fliplr and rng.random() < augmentation.fliplr:
        sample = flip_horizontal(sample)
    if augmentation.flipud and rng.random() < augmentation.flipud:
        sample = flip_vertical(sample)
    if augmentation.hsv_h or augmentation.hsv_s or augmentation.hsv_v:
        gains = rng.uniform(-1.0, 1.0, 3) * [
            augmentation.hsv_h or 0.0,
            augmentation.hsv_s or 0.0,
            augmentation.hsv_v or 0.0,
        ]
        sample = hsv_jitter(sample, float(gains[0]), 1.0 + float(gains[1]), 1.0 + float(gains[2]))
    return sample


def flip_horizontal(sample: Sample) -> Sample:
    boxes = sample.boxes.copy()
    boxes[:, 0] = sample.width - sample.boxes[:, 0] - sample.boxes[:, 2]
    return Sample(np.ascontiguousarray(sample.image[:, ::-1]), boxes, sample.labels)


def flip_vertical(sample: Sample) -> Sample:
    boxes = sample.boxes.copy()
    boxes[:, 1] = sample.height - sample.boxes[:, 1] - sample.boxes[:, 3]
    return Sample(np.ascontiguousarray(sample.image[::-1]), boxes, sample.labels)


def resize(sample: Sample, width: int, height: int) -> Sample:
    """The image resized to width x height (bilinear), boxes scaled with it."""
    if (width, height) == (sample.width, sample.height):
        return sample
    image = np.asarray(Image.fromarray(sample.image).resize((width, height), Image.Resampling.BILINEAR))
    factors = np.array([width / sample.width, height / sample.height] * 2)
    return Sample(image, sample.boxes * factors, sample.labels)


def scale_translate(sample: Sample, gain: float, shift_x: float, shift_y: float) -> Sample:
    """The image resized by ``gain`` and placed, centred then shifted by the fractions ``shift_x``
    and ``shift_y`` of its size, on a gray canvas of the original size."""
    width, height = sample.width, sample.height
    scaled = resize(sample, max(1, round(width * gain)), max(1, round(height * gain)))
    left = round((width - scaled.width) / 2 + shift_x * width)
    top = round((height - scaled.height) / 2 + shift_y * height)
    canvas = np.full_like(sample.image, FILL)
    src_x, src_y = max(0, -left), max(0, -top)
    dst_x, dst_y = max(0, left), max(0, top)
    w = min(scaled.width - src_x, width - dst_x)
    h = min(scaled.height - src_y, height - dst_y)
    if w > 0 and h > 0:
        canvas[dst_y : dst_y + h, dst_x : dst_x + w] = scaled.image[src_y : src_y + h, src_x : src_x + w]
    boxes = scaled.boxes.copy()
    boxes[:, 0] += left
    boxes[:, 1] += top
    return clip(Sample(canvas, boxes, sample.labels))


def clip(sample: Sample) -> Sample:
    """Boxes clipped to the image; those left with too little of themselves dropped."""
    boxes = sample.boxes
    x0 = np.clip(boxes[:, 0], 0, sample.width)
    y0 = np.clip(boxes[:, 1], 0, sample.height)
    x1 = np.clip(boxes[:, 0] + boxes[:, 2], 0, sample.width)
    y1 = np.clip(boxes[:, 1] + boxes[:, 3], 0, sample.height)
    clipped = np.stack([x0, y0, x1 - x0, y1 - y0], axis=1)
    area = boxes[:, 2] * boxes[:, 3]
    keep = (
        (clipped[:, 2] >= MIN_BOX_PIXELS)
        & (clipped[:, 3] >= MIN_BOX_PIXELS)
        & (clipped[:, 2] * clipped[:, 3] >= MIN_KEPT_FRACTION * area)
    )
    return Sample(sample.image, clipped[keep].reshape(-1, 4), sample.labels[keep])


def hsv_jitter(sample: Sample, hue_shift: float, saturation_gain: float, value_gain: float) -> Sample:
    """Hue turned by ``hue_shift`` (a fraction of the circle), saturation and value multiplied."""
    hsv = np.asarray(Image.fromarray(sample.image).convert("HSV")).astype(np.float32)
    hsv[..., 0] = np.mod(hsv[..., 0] + hue_shift * 256.0, 256.0)
    hsv[..., 1] = np.clip(hsv[..., 1] * saturation_gain, 0, 255)
    hsv[..., 2] = np.clip(hsv[..., 2] * value_gain, 0, 255)
    image = np.asarray(Image.fromarray(hsv.round().astype(np.uint8), mode="HSV").convert("RGB"))
    return Sample(image, sample.boxes, sample.labels)


def mixup(sample: Sample, other: Sample, rng: np.random.Generator) -> Sample:
    """A blend of the two images (the other resized to this one), with both images' boxes."""
    other = resize(other, sample.width, sample.height)
    ratio = rng.beta(MIXUP_BETA, MIXUP_BETA)
    image = (sample.image.astype(np.float32) * ratio + other.image.astype(np.float32) * (1.0 - ratio)).round()
    return Sample(
        image.astype(np.uint8),
        np.concatenate([sample.boxes, other.boxes]).reshape(-1, 4),
        np.concatenate([sample.labels, other.labels]),
    )


def copy_paste(sample: Sample, other: Sample, rng: np.random.Generator) -> Sample:
    """Each box of ``other`` (with its pixels) pasted at a random place of this image where it
    covers at most MAX_PASTE_OVERLAP of any box already there; a box that fits nowhere is skipped."""
    image = sample.image.copy()
    boxes, labels = list(sample.boxes), list(sample.labels)
    for (x, y, w, h), label in zip(other.boxes, other.labels, strict=True):
        x0, y0 = int(np.floor(x)), int(np.floor(y))
        x1, y1 = int(np.ceil(x + w)), int(np.ceil(y + h))
        patch = other.image[y0:y1, x0:x1]
        ph, pw = patch.shape[:2]
        if pw < MIN_BOX_PIXELS or ph < MIN_BOX_PIXELS or pw > sample.width or ph > sample.height:
            continue
        for _ in range(PASTE_TRIES):
            left = int(rng.integers(0, sample.width - pw + 1))
            top = int(rng.integers(0, sample.height - ph + 1))
            placed = np.array([left, top, pw, ph], dtype=np.float64)
            if all(_covered(box, placed) <= MAX_PASTE_OVERLAP for box in boxes):
                image[top : top + ph, left : left + pw] = patch
                boxes.append(placed)
                labels.append(label)
                break
    return Sample(image, np.array(boxes, dtype=np.float64).reshape(-1, 4), np.array(labels, dtype=np.int64))


def _covered(box: np.ndarray, by: np.ndarray) -> float:
    """The share of ``box``'s area that ``by`` covers."""
    width = min(box[0] + box[2], by[0] + by[2]) - max(box[0], by[0])
    height = min(box[1] + box[3], by[1] + by[3]) - max(box[1], by[1])
    if width <= 0 or height <= 0:
        return 0.0
    return float(width * height / max(box[2] * box[3], 1e-9))
