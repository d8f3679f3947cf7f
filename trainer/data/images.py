"""Images and their classes, for image classification: a folder per class, or a manifest.

- ``imagefolder``: ``source.pvc.path`` is a folder whose subfolders are the classes (named for the
  subfolder, numbered in sorted name order); every image file below a class folder, at any depth,
  is an example of it.
- a manifest (``csv``, ``jsonl``, ``json`` or ``parquet``): each record's ``columns.image`` is the
  path of an image (relative to the manifest file's folder, or absolute from the claim's root) and
  ``columns.label`` its class: a name, or a class number when every label is a whole number (then
  ``config.numClasses``, when set, bounds them).

Every image is read and decoded once here, so that an image that cannot be used is a bad row
named with its reason (missing file, not an image, outside the claim, missing or unknown label),
counted against ``config.training.maxBadRows`` like the llm task's bad rows, and never a failure
mid-run. Only the path, the class and a digest of the file are kept: batches decode again.
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import struct
import warnings
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image, ImageOps

from tensorone.api.resolved import ResolvedJob
from tensorone.api.v1alpha1.dataset import DatasetFormat
from tensorone.errors import ConfigurationError, DataError
from trainer.data.examples import BadRows, split_eval
from trainer.data.records import Row, inside_mount, read_rows

# File name endings of the images an imagefolder holds (other files are not examples).
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")
# Images are decoded by several threads (Pillow releases the GIL while it decodes).
DECODE_THREADS = min(8, os.cpu_count() or 1)
_WHOLE_NUMBER = re.compile(r"^[0-9]+$")


@dataclass(frozen=True)
class ImageExample:
    """One image and its class number."""

    path: Path
    label: int
    digest: bytes  # sha256 of the file's bytes

    @property
    def num_targets(self) -> int:
        return 1  # one class to predict

    @property
    def num_tokens(self) -> int:
        return 0  # throughput is counted in images (samples/sec)

    def content(self) -> bytes:
        return self.digest + struct.pack("<q", self.label)


@dataclass(frozen=True)
class ImageData:
    """The examples of a run, the class names in class-number order, and the bad rows."""

    train: list[ImageExample]
    eval: list[ImageExample]
    classes: list[str]
    bad_rows: BadRows
    layout: str  # "imagefolder" or "csv manifest", ...


def decode(data: bytes) -> Image.Image:
    """An image file's bytes as an RGB image, turned upright by its EXIF orientation.

    Raises ``ValueError`` (with why) for anything Pillow cannot decode, or an image so large that
    Pillow takes it for a decompression bomb."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            with Image.open(io.BytesIO(data)) as opened:
                opened.load()
                upright = ImageOps.exif_transpose(opened)
                return upright.convert("RGB")
        except (Image.DecompressionBombWarning, Image.DecompressionBombError) as error:
            raise ValueError(f"too large to decode safely ({error})") from None
        except (OSError, SyntaxError, ValueError, Image.UnidentifiedImageError) as error:
            raise ValueError(f"not a readable image ({type(error).__name__}: {error})") from None


def load_image(path: Path) -> Image.Image:
    """An example's image for a batch; it decoded when the data was read, so failing now means
    the file changed or went away during the run."""
    try:
        return decode(path.read_bytes())
    except (OSError, ValueError) as error:
        raise DataError(
            f"{path} decoded when the data was read and fails now ({error}): the data changed during the run",
            field="dataset",
        ) from error


def read_images(job: ResolvedJob, *, num_classes: int | None) -> ImageData:
    """Every usable image of the job's Dataset with its class, the rest counted as bad rows, and
    the evaluation split held out (seeded)."""
    dataset = job.dataset
    mount = Path(job.dataset_mount_path)
    if dataset.source.pvc is None:
        raise ConfigurationError(
            "image classification reads its images from a claim: source.pvc", field="dataset.source"
        )
    dataset_format = DatasetFormat(dataset.format)
    if dataset_format == DatasetFormat.imagefolder:
        root = inside_mount(mount, dataset.source.pvc.path)
        candidates, classes = _folder_candidates(root, mount, num_classes)
        layout = "imagefolder"
    else:
        columns = dataset.columns
        if columns is None or columns.image is None or columns.label is None:
            raise ConfigurationError(
                "a manifest of images needs columns.image and columns.label", field="dataset.columns"
            )
        rows = read_rows(dataset, mount_path=mount, cache_dir=job.cache_dir)
        candidates, classes = _manifest_candidates(rows, mount, columns.image, columns.label, num_classes)
        layout = f"{dataset_format} manifest"

    bad = BadRows(total=len(candidates))
    examples: list[ImageExample] = []
    with ThreadPoolExecutor(DECODE_THREADS) as pool:
        for candidate, checked in zip(candidates, pool.map(_check, candidates), strict=True):
            if isinstance(checked, str):
                bad.add_at(candidate.where, checked)
            else:
                examples.append(checked)
    training = job.config.training
    bad.refuse_if_too_many(training.max_bad_rows, usable=len(examples), what="images")
    train, held_out = split_eval(examples, training.eval_split, training.seed)
    return ImageData(train=train, eval=held_out, classes=classes, bad_rows=bad, layout=layout)


@dataclass(frozen=True)
class _Candidate:
    """An image to check: where it was named, its path (None when the name was unusable), its
    class number, or why the row is bad before the image is even opened."""

    where: str
    path: Path | None
    label: int
    problem: str | None = None


def _check(candidate: _Candidate) -> ImageExample | str:
    """The example, or why it is bad."""
    if candidate.problem is not None or candidate.path is None:
        return candidate.problem or "no image path"
    try:
        data = candidate.path.read_bytes()
    except FileNotFoundError:
        return f"missing file {candidate.path}"
    except OSError as error:
        return f"cannot read {candidate.path} ({error.strerror or error})"
    try:
        decode(data)
    except ValueError as error:
        return str(error)
    return ImageExample(candidate.path, candidate.label, hashlib.sha256(data).digest())


def _folder_candidates(root: Path, mount: Path, num_classes: int | None) -> tuple[list[_Candidate], list[str]]:
    if not root.is_dir():
        what = "is not a folder" if root.exists() else "does not exist (is the claim mounted, and the path right?)"
        raise DataError(
            f"{root} {what}; format imagefolder needs a folder with a subfolder per class",
            field="dataset.source.pvc.path",
        )
    classes = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not classes:
        raise DataError(
            f"{root} has no class subfolders; format imagefolder needs a folder per class, each holding its "
            f"images ({', '.join(IMAGE_SUFFIXES)})",
            field="dataset.source.pvc.path",
        )
    _check_class_count(len(classes), num_classes, classes)
    candidates: list[_Candidate] = []
    for label, name in enumerate(classes):
        for path in _images_below(root / name):
            where = str(path)
            resolved = path.resolve()
            if not resolved.is_relative_to(mount.resolve()):
                candidates.append(_Candidate(where, None, label, f"resolves to {resolved}, outside the claim"))
            else:
                candidates.append(_Candidate(where, path, label))
    return candidates, classes


def _images_below(folder: Path) -> Iterator[Path]:
    for directory, subdirectories, files in os.walk(folder):
        subdirectories[:] = sorted(d for d in subdirectories if not d.startswith("."))
        for name in sorted(files):
            if name.lower().endswith(IMAGE_SUFFIXES) and not name.startswith("."):
                yield Path(directory) / name


def _manifest_candidates(
    rows: Iterator[Row], mount: Path, image_column: str, label_column: str, num_classes: int | None
) -> tuple[list[_Candidate], list[str]]:
    """Rows as candidates; the labels decide the classes once every row is read."""
    read: list[tuple[str, Path | None, Any, str | None]] = []  # where, path, label, problem
    for row in rows:
        where = row.where()
        if row.record is None:
            read.append((where, None, None, row.error or "unreadable"))
            continue
        path, problem = _image_path(row, mount, image_column)
        label = row.record.get(label_column)
        if problem is None and not _is_label(label):
            problem = (
                f"missing label (column {label_column!r})"
                if label is None or label == ""
                else f"label {label!r} is not a class name or number"
            )
        read.append((where, path, label, problem))

    labels = [label for _, _, label, problem in read if problem is None]
    numbered = bool(labels) and all(_whole_number(label) for label in labels)
    if numbered:
        count = num_classes if num_classes is not None else max(int(label) for label in labels) + 1
        classes = [str(number) for number in range(count)]
    else:
        classes = sorted({str(label) for label in labels})
        _check_class_count(len(classes), num_classes, classes)
    index = {name: number for number, name in enumerate(classes)}

    candidates: list[_Candidate] = []
    for where, path, label, problem in read:
        key = str(int(label)) if numbered and problem is None else str(label)
        unknown = (
            f"unknown label {label}: config.numClasses is {len(classes)}, so labels are 0 to {len(classes) - 1}"
            if problem is None and key not in index
            else None
        )
        reason = problem or unknown
        candidates.append(_Candidate(where, path, index[key] if reason is None else -1, reason))
    return candidates, classes


def _image_path(row: Row, mount: Path, column: str) -> tuple[Path | None, str | None]:
    """The image a manifest row names, or why it names none usable: relative paths are from the
    manifest file's folder, absolute ones from the claim's root; neither may leave the claim."""
    assert row.record is not None
    value = row.record.get(column)
    if not isinstance(value, str) or not value.strip():
        return None, f"missing image path (column {column!r})"
    if value.startswith("/"):
        try:
            return inside_mount(mount, value), None
        except ConfigurationError as error:
            return None, error.message
    path = (Path(row.location).parent / value).resolve()
    if not path.is_relative_to(mount.resolve()):
        return None, f"image path {value!r} resolves to {path}, outside the claim"
    return path, None


def _is_label(value: Any) -> bool:
    return (isinstance(value, str) and value.strip() != "") or (isinstance(value, int) and not isinstance(value, bool))


def _whole_number(value: Any) -> bool:
    return isinstance(value, int) or (isinstance(value, str) and _WHOLE_NUMBER.match(value) is not None)


def _check_class_count(found: int, num_classes: int | None, classes: Sequence[str]) -> None:
    if num_classes is not None and num_classes != found:
        shown = ", ".join(classes[:20]) + (", ..." if len(classes) > 20 else "")
        raise ConfigurationError(
            f"is {num_classes}, but the dataset has {found} classes ({shown}); set it to {found} or leave it out",
            field="config.numClasses",
        )
