"""Build the tiny image classification set of examples/vision-classification.yaml: coloured shapes.

    python examples/data/build_shape_classes.py examples/data/shape-classes

Three classes, a folder each (the imagefolder layout): red circles, green squares and blue
triangles of random size and place on a grey background with a little noise, 32 x 32 PNG. A
model learns them in a few dozen steps, so accuracy visibly rises above chance (1/3). The tests
build their sets with the same function.
"""

from __future__ import annotations

import argparse
import random
from pathlib import Path

from PIL import Image, ImageDraw

CLASSES = {"circle": (200, 40, 40), "square": (40, 170, 60), "triangle": (50, 70, 210)}


def shape(kind: str, size: int, rng: random.Random) -> Image.Image:
    """One image of the class ``kind``."""
    grey = rng.randint(90, 160)
    image = Image.new("RGB", (size, size), (grey, grey, grey))
    draw = ImageDraw.Draw(image)
    extent = rng.randint(size // 3, size * 3 // 4)
    left, top = rng.randint(0, size - extent), rng.randint(0, size - extent)
    box = (left, top, left + extent - 1, top + extent - 1)
    colour = tuple(min(255, max(0, c + rng.randint(-30, 30))) for c in CLASSES[kind])
    if kind == "circle":
        draw.ellipse(box, fill=colour)
    elif kind == "square":
        draw.rectangle(box, fill=colour)
    else:
        draw.polygon(
            [(left + extent // 2, top), (left, top + extent - 1), (left + extent - 1, top + extent - 1)], fill=colour
        )
    for _ in range(size):
        x, y = rng.randrange(size), rng.randrange(size)
        noise = rng.randint(0, 255)
        image.putpixel((x, y), (noise, noise, noise))
    return image


def build(folder: Path, *, per_class: int = 40, size: int = 32, seed: int = 0) -> list[Path]:
    """``per_class`` images of each class in ``folder/<class>/<n>.png``; the files written."""
    rng = random.Random(seed)
    written: list[Path] = []
    for kind in CLASSES:
        (folder / kind).mkdir(parents=True, exist_ok=True)
        for number in range(per_class):
            path = folder / kind / f"{number:03d}.png"
            shape(kind, size, rng).save(path, optimize=True)
            written.append(path)
    return written


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folder", type=Path)
    parser.add_argument("--per-class", type=int, default=40)
    arguments = parser.parse_args()
    build(arguments.folder, per_class=arguments.per_class)
