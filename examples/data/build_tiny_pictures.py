"""Build the tiny picture-chat dataset of the multimodal example: 12 pictures and 24 conversations.

Each 32x32 PNG shows one shape (circle, square, triangle) in one colour (red, green, blue, yellow)
on white. Each picture has two conversations: a two-turn one (its colour, then its shape) and a
one-turn description. Messages refer to the pictures by path, relative to the JSON Lines file, in
the Hugging Face style ``{"type": "image", "image": "pictures/red-circle.png"}``.

Usage::

    python examples/data/build_tiny_pictures.py [OUTPUT_DIR]   # default: examples/data
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

HERE = Path(__file__).resolve().parent
SIZE = 32
COLOURS = {"red": (220, 30, 30), "green": (30, 170, 60), "blue": (40, 60, 220), "yellow": (235, 200, 20)}
SHAPES = ("circle", "square", "triangle")
DATA_FILE = "tiny-pictures.jsonl"
PICTURES = "pictures"


def draw(shape: str, colour: tuple[int, int, int]) -> object:
    from PIL import Image, ImageDraw

    image = Image.new("RGB", (SIZE, SIZE), (255, 255, 255))
    pen = ImageDraw.Draw(image)
    box = (6, 6, SIZE - 7, SIZE - 7)
    if shape == "circle":
        pen.ellipse(box, fill=colour)
    elif shape == "square":
        pen.rectangle(box, fill=colour)
    else:
        pen.polygon([(SIZE // 2, 5), (SIZE - 6, SIZE - 7), (5, SIZE - 7)], fill=colour)
    return image


def conversations(picture: str, colour: str, shape: str) -> list[dict[str, object]]:
    image = {"type": "image", "image": picture}
    return [
        {
            "messages": [
                {"role": "user", "content": [image, {"type": "text", "text": "What colour is the shape?"}]},
                {"role": "assistant", "content": f"It is {colour}."},
                {"role": "user", "content": "And what shape is it?"},
                {"role": "assistant", "content": f"A {shape}."},
            ]
        },
        {
            "messages": [
                {"role": "system", "content": "You describe pictures in a few words."},
                {"role": "user", "content": [{"type": "text", "text": "Describe the picture."}, image]},
                {"role": "assistant", "content": f"A {colour} {shape} on white."},
            ]
        },
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("output", nargs="?", type=Path, default=HERE, help="Folder to write into.")
    args = parser.parse_args()
    output: Path = args.output
    (output / PICTURES).mkdir(parents=True, exist_ok=True)
    records: list[dict[str, object]] = []
    for colour, rgb in COLOURS.items():
        for shape in SHAPES:
            picture = f"{PICTURES}/{colour}-{shape}.png"
            draw(shape, rgb).save(output / picture, format="PNG")  # type: ignore[attr-defined]
            records.extend(conversations(picture, colour, shape))
    (output / DATA_FILE).write_text("".join(json.dumps(record) + "\n" for record in records))
    print(f"wrote {output / DATA_FILE} ({len(records)} conversations) and {len(COLOURS) * len(SHAPES)} pictures")


if __name__ == "__main__":
    main()
