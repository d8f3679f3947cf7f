"""Build a tiny COCO object-detection dataset of drawn shapes, with boxes known exactly.

Each image is a dark background with one or two filled shapes, squares (class ``square``) and
discs (class ``disc``), of random colour, size and place; the annotation of each is the box it was
drawn in. A detector that learns anything finds them, so the mAP of a short run rises well above
chance: what the examples and the tests need. PNG files, about 0.3 KB each.

Usage::

    python examples/data/build_shapes.py [OUTPUT_DIR] [--images N] [--size PIXELS]
    # default: examples/data/shapes, 96 images of 64x64
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw

HERE = Path(__file__).resolve().parent
DEFAULT_OUTPUT = HERE / "shapes"
CATEGORIES = [{"id": 1, "name": "square"}, {"id": 2, "name": "disc"}]


def build(output: Path, *, images: int = 96, size: int = 64, seed: int = 0) -> dict[str, Any]:
    """Write ``images`` PNG files into ``output/images`` and ``output/annotations.json``; return the document."""
    rng = random.Random(seed)
    (output / "images").mkdir(parents=True, exist_ok=True)
    document: dict[str, Any] = {"images": [], "annotations": [], "categories": CATEGORIES}
    for image_id in range(1, images + 1):
        background = tuple(rng.randrange(0, 70) for _ in range(3))
        image = Image.new("RGB", (size, size), background)
        draw = ImageDraw.Draw(image)
        placed: list[tuple[int, int, int, int]] = []
        for _ in range(rng.randint(1, 2)):
            side = rng.randint(size // 5, size // 2)
            for _ in range(20):  # shapes do not overlap, so every box shows its whole shape
                x, y = rng.randint(0, size - side), rng.randint(0, size - side)
                if all(x + side <= a or a + c <= x or y + side <= b or b + d <= y for a, b, c, d in placed):
                    break
            else:
                continue
            placed.append((x, y, side, side))
            category = rng.choice(CATEGORIES)
            colour = tuple(rng.randrange(150, 256) for _ in range(3))
            shape = draw.rectangle if category["name"] == "square" else draw.ellipse
            shape([x, y, x + side - 1, y + side - 1], fill=colour)
            document["annotations"].append(
                {
                    "id": len(document["annotations"]) + 1,
                    "image_id": image_id,
                    "category_id": category["id"],
                    "bbox": [x, y, side, side],
                    "area": side * side,
                    "iscrowd": 0,
                }
            )
        name = f"{image_id:04d}.png"
        image.save(output / "images" / name, optimize=True)
        document["images"].append({"id": image_id, "file_name": name, "width": size, "height": size})
    (output / "annotations.json").write_text(json.dumps(document, indent=None, separators=(",", ":")) + "\n")
    return document


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("output", nargs="?", type=Path, default=DEFAULT_OUTPUT)
    parser.add_argument("--images", type=int, default=96)
    parser.add_argument("--size", type=int, default=64)
    arguments = parser.parse_args()
    build(arguments.output, images=arguments.images, size=arguments.size)


if __name__ == "__main__":
    main()
