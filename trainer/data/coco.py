"""COCO object-detection datasets: one JSON file of annotations beside a folder of images.

The Dataset's ``source.pvc.path`` is the folder (``columns.annotations`` names the JSON file inside
it, ``annotations.json`` by default) or the JSON file itself (the folder is then the file's). An
image's ``file_name`` is relative to the folder, or to its ``images/`` subfolder. Categories are
mapped to contiguous class ids in the order of their COCO ids (the names become the model's
labels), and crowd annotations (``iscrowd: 1``) are left out of training as COCO's own evaluation
leaves them out.

An image is a bad entry, left out and named, when its file is missing, outside the folder or
unreadable, or when one of its annotations is malformed, names an unknown category, or has a box
that is empty or reaches outside the image; an annotation of an image the file does not list is a
bad entry of its own. Past ``config.training.maxBadRows`` of the entries, the data is refused.
"""

from __future__ import annotations

import hashlib
import json
import math
import struct
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from tensorone.api.v1alpha1.dataset import DatasetSpec
from tensorone.errors import ConfigurationError, DataError
from trainer.data.examples import split_eval

DEFAULT_ANNOTATIONS = "annotations.json"
IMAGES_FOLDER = "images"
# A box may pass the image's edge by this many pixels (rounding in the tool that wrote it) and is
# then clipped; beyond it, the annotation does not describe this image.
EDGE_TOLERANCE = 1.0
FIRST_BAD_ENTRIES = 5
# Decompression bombs: an image of more pixels than this is a bad entry, not a crash of the pod.
MAX_IMAGE_PIXELS = 16384 * 16384


@dataclass(frozen=True)
class DetectionExample:
    """One image and its boxes: [x, y, width, height] in pixels, each with a contiguous class id."""

    path: str
    sha256: str  # of the image file, for the data fingerprint
    width: int
    height: int
    boxes: tuple[tuple[float, float, float, float], ...]
    labels: tuple[int, ...]
    image_id: int  # the COCO id, to name the image in messages

    @property
    def num_targets(self) -> int:
        """An image weighs one in the loss: the detector's loss is a mean over its images."""
        return 1

    @property
    def num_tokens(self) -> int:
        """Images have no tokens; throughput is reported in samples (images) per second."""
        return 0

    def content(self) -> bytes:
        encoded = json.dumps([self.width, self.height, self.boxes, self.labels]).encode()
        return bytes.fromhex(self.sha256) + struct.pack("<q", len(encoded)) + encoded

    def read_image(self) -> np.ndarray:
        """The image as RGB uint8, height x width x 3."""
        return read_rgb(Path(self.path))


@dataclass(frozen=True)
class CocoData:
    """The examples of a run, the class names, and the bad entries."""

    train: list[DetectionExample]
    eval: list[DetectionExample]
    class_names: list[str]
    entries: int
    bad_entries: int
    first_bad: list[str]
    annotations_file: Path


@dataclass
class _Bad:
    count: int = 0
    first: list[str] = field(default_factory=list)

    def add(self, where: str, reason: str) -> None:
        self.count += 1
        if len(self.first) < FIRST_BAD_ENTRIES:
            self.first.append(f"{where}: {reason}")


class BadEntry(ValueError):
    """An image or annotation that cannot be used (counted, never raised to the user)."""


def read_rgb(path: Path) -> np.ndarray:
    """An image file as RGB uint8 (height x width x 3); raises BadEntry when it cannot be decoded."""
    try:
        with Image.open(path) as image:
            if image.width * image.height > MAX_IMAGE_PIXELS:
                raise BadEntry(f"{image.width}x{image.height} pixels, more than {MAX_IMAGE_PIXELS}")
            return np.asarray(image.convert("RGB"), dtype=np.uint8)
    except BadEntry:
        raise
    except (OSError, ValueError, Image.DecompressionBombError) as error:
        raise BadEntry(f"unreadable image ({type(error).__name__}: {str(error)[:120]})") from None


def locate(spec: DatasetSpec, mount_path: Path) -> tuple[Path, Path]:
    """The annotations file and the image folder of a COCO Dataset on its claim."""
    if spec.source.pvc is None:
        raise ConfigurationError(
            "a coco Dataset is read from a folder of images and its annotations file: set source.pvc "
            "(t1 train reads it from the folder next to the manifest)",
            field="dataset.source",
        )
    mount = mount_path.resolve()
    path = (mount / spec.source.pvc.path.lstrip("/")).resolve()
    if not path.is_relative_to(mount):
        raise ConfigurationError(
            f"{spec.source.pvc.path} resolves to {path}, outside the claim; allowed: a path inside the claim",
            field="dataset.source.pvc.path",
        )
    if path.is_file():
        return path, path.parent
    if not path.is_dir():
        raise DataError(f"{path} does not exist", field="dataset.source.pvc.path")
    name = spec.columns.annotations if spec.columns is not None and spec.columns.annotations else DEFAULT_ANNOTATIONS
    annotations = (path / name).resolve()
    if not annotations.is_relative_to(path) or not annotations.is_file():
        raise DataError(
            f"the annotations file {name} is not in {path}; set columns.annotations to the COCO JSON file, "
            "relative to the source folder",
            field="dataset.columns.annotations",
        )
    return annotations, path


def read_coco(
    spec: DatasetSpec,
    *,
    mount_path: Path,
    num_classes: int | None,
    max_bad_rows: float,
    eval_split: float,
    seed: int,
) -> CocoData:
    """Every usable image of the Dataset with its boxes, split into training and evaluation."""
    annotations_file, folder = locate(spec, mount_path)
    try:
        document = json.loads(annotations_file.read_bytes())
    except (OSError, ValueError) as error:
        raise DataError(f"{annotations_file} is not a JSON file: {error}", field="dataset") from None
    if not isinstance(document, dict) or not isinstance(document.get("images"), list):
        raise DataError(f"{annotations_file} is not COCO: no list of images", field="dataset")
    categories = _categories(document, annotations_file, num_classes)
    class_of = {category_id: index for index, category_id in enumerate(sorted(categories))}
    class_names = [categories[category_id] for category_id in sorted(categories)]

    bad = _Bad()
    images: dict[int, dict[str, Any]] = {}
    order: list[int] = []
    for number, entry in enumerate(document["images"], start=1):
        image_id = entry.get("id") if isinstance(entry, dict) else None
        if not isinstance(image_id, int) or isinstance(image_id, bool) or image_id in images:
            bad.add(f"images[{number - 1}]", "no integer id, or an id used before")
            continue
        images[image_id] = entry
        order.append(image_id)
    boxes, problems, orphans = _annotations(document.get("annotations") or [], images, class_of, bad)

    examples: list[DetectionExample] = []
    for image_id in order:
        entry = images[image_id]
        where = f"image {image_id} ({entry.get('file_name', 'no file_name')})"
        try:
            if image_id in problems:
                raise BadEntry(problems[image_id])
            examples.append(_example(entry, image_id, boxes[image_id], folder))
        except BadEntry as error:
            bad.add(where, str(error))
    entries = len(document["images"]) + orphans
    if not examples:
        raise DataError(
            f"no usable image in {annotations_file} ({entries} entries); first problems: {'; '.join(bad.first)}",
            field="dataset",
        )
    if bad.count > max_bad_rows * entries:
        raise DataError(
            f"{bad.count} of {entries} entries of {annotations_file} are unusable, more than "
            f"config.training.maxBadRows={max_bad_rows:g} allows; first: {'; '.join(bad.first)}",
            field="dataset",
        )
    train, held_out = split_eval(examples, eval_split, seed)
    return CocoData(
        train=train,
        eval=held_out,
        class_names=class_names,
        entries=entries,
        bad_entries=bad.count,
        first_bad=bad.first,
        annotations_file=annotations_file,
    )


Boxes = dict[int, list[tuple[tuple[float, float, float, float], int]]]


def _annotations(
    annotations: list[Any], images: dict[int, dict[str, Any]], class_of: dict[int, int], bad: _Bad
) -> tuple[Boxes, dict[int, str], int]:
    """The boxes of each image; the first problem of each image whose annotations have one; and the
    number of annotations of images the file does not list (each a bad entry)."""
    boxes: Boxes = {image_id: [] for image_id in images}
    problems: dict[int, str] = {}
    orphans = 0
    for number, annotation in enumerate(annotations, start=1):
        image_id = annotation.get("image_id") if isinstance(annotation, dict) else None
        if image_id not in images:
            orphans += 1
            bad.add(f"annotations[{number - 1}]", f"image_id {image_id!r} is not an image of the file")
            continue
        if image_id in problems or annotation.get("iscrowd"):
            continue
        try:
            boxes[image_id].append(_box(annotation, class_of))
        except BadEntry as error:
            problems[image_id] = f"annotation {annotation.get('id', number)}: {error}"
    return boxes, problems, orphans


def _categories(document: dict[str, Any], annotations_file: Path, num_classes: int | None) -> dict[int, str]:
    categories: dict[int, str] = {}
    for entry in document.get("categories") or []:
        if not isinstance(entry, dict) or not isinstance(entry.get("id"), int) or entry["id"] in categories:
            raise DataError(
                f"{annotations_file}: every category needs a distinct integer id (found {str(entry)[:80]})",
                field="dataset",
            )
        categories[entry["id"]] = str(entry.get("name", entry["id"]))
    if not categories:
        raise DataError(f"{annotations_file} lists no categories", field="dataset")
    if num_classes is not None and num_classes != len(categories):
        raise ConfigurationError(
            f"config.numClasses is {num_classes} but {annotations_file.name} has {len(categories)} categories; "
            f"set numClasses to {len(categories)} or leave it out",
            field="config.numClasses",
        )
    return categories


def _box(annotation: dict[str, Any], class_of: dict[int, int]) -> tuple[tuple[float, float, float, float], int]:
    category = annotation.get("category_id")
    if category not in class_of:
        raise BadEntry(f"category_id {category!r} is not a category of the file")
    bbox = annotation.get("bbox")
    if (
        not isinstance(bbox, list)
        or len(bbox) != 4
        or not all(isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v) for v in bbox)
    ):
        raise BadEntry(f"bbox {str(bbox)[:60]} is not [x, y, width, height]")
    x, y, width, height = (float(v) for v in bbox)
    if width <= 0 or height <= 0:
        raise BadEntry(f"bbox {bbox} is empty")
    return (x, y, width, height), class_of[category]


def _example(
    entry: dict[str, Any],
    image_id: int,
    boxes: Sequence[tuple[tuple[float, float, float, float], int]],
    folder: Path,
) -> DetectionExample:
    name = entry.get("file_name")
    if not isinstance(name, str) or not name:
        raise BadEntry("no file_name")
    path = _image_path(folder, name)
    data = path.read_bytes()
    height, width = read_rgb(path).shape[:2]
    kept: list[tuple[float, float, float, float]] = []
    for (x, y, w, h), _ in boxes:
        if (
            x < -EDGE_TOLERANCE
            or y < -EDGE_TOLERANCE
            or x + w > width + EDGE_TOLERANCE
            or y + h > height + EDGE_TOLERANCE
        ):
            raise BadEntry(f"box [{x:g}, {y:g}, {w:g}, {h:g}] reaches outside the {width}x{height} image")
        left, top = max(0.0, x), max(0.0, y)
        kept.append((left, top, min(float(width), x + w) - left, min(float(height), y + h) - top))
    return DetectionExample(
        path=str(path),
        sha256=hashlib.sha256(data).hexdigest(),
        width=int(width),
        height=int(height),
        boxes=tuple(kept),
        labels=tuple(label for _, label in boxes),
        image_id=image_id,
    )


def _image_path(folder: Path, name: str) -> Path:
    """The image file ``name`` names, in the folder or its images/ subfolder, never outside."""
    for base in (folder, folder / IMAGES_FOLDER):
        path = (base / name).resolve()
        if not path.is_relative_to(folder):
            raise BadEntry("file_name leads outside the dataset folder")
        if path.is_file():
            return path
    raise BadEntry("missing file")
