"""From a decoded image to the model's input, with the job's augmentation for training batches.

Pillow and numpy only. Evaluation resizes the image to the input size (bilinear, antialiased),
scales it to [0, 1] and normalises it with the model's mean and standard deviation. A training
image may also be, in this order (each field of ``config.augmentation`` that is set):

- moved by one affine transform: scaled by a gain in [1 - scale, 1 + scale], rotated by up to
  ``degrees`` either way, shifted by up to ``translate`` of its size; the uncovered border is the
  mean colour (0 once normalised);
- jittered in HSV: the hue shifted by up to ``hsvH`` of the hue circle, saturation and value
  multiplied by a gain in [1 - hsvS, 1 + hsvS] and [1 - hsvV, 1 + hsvV];
- flipped left-right with probability ``fliplr``, upside down with probability ``flipud``;
- mixed (MixUp, with probability ``mixup``) with the next image of its micro-batch: both the
  pixels and the one-hot targets, with a weight drawn from Beta(MIXUP_ALPHA, MIXUP_ALPHA).

Every random number of an image comes from a generator seeded with (the batch's seed, the image's
position in the micro-batch), drawn in a fixed order whatever is enabled: a batch with the same
seed is augmented the same way, whichever thread prepares which image, on any machine.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from PIL import Image

from tensorone.api.v1alpha1.trainingjob import Augmentation

MIXUP_ALPHA = 0.8  # timm's default for classification: a mixing weight often near 0 or 1
# What one image's augmentation draws, in this order.
_DRAWS = ("scale", "degrees", "translate_x", "translate_y", "hue", "saturation", "value", "fliplr", "flipud", "mixup")


@dataclass(frozen=True)
class Normalisation:
    """How pixels become the model's input: the input size and the per-channel statistics."""

    height: int
    width: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]

    def fill(self) -> tuple[int, int, int]:
        """The mean colour, in 8-bit RGB: what an uncovered border is painted with."""
        return (round(self.mean[0] * 255), round(self.mean[1] * 255), round(self.mean[2] * 255))


def draws_for(seed: int, position: int) -> dict[str, float]:
    """The uniform [0, 1) numbers of one training image's augmentation, and its MixUp weight."""
    generator = np.random.default_rng([seed, position])
    uniform = generator.random(len(_DRAWS))
    draws = dict(zip(_DRAWS, (float(u) for u in uniform), strict=True))
    draws["mixup_weight"] = float(generator.beta(MIXUP_ALPHA, MIXUP_ALPHA))
    return draws


def pixels(
    image: Image.Image,
    normalisation: Normalisation,
    augmentation: Augmentation | None = None,
    draws: dict[str, float] | None = None,
) -> np.ndarray:
    """The image as the model's input, channels first, float32: augmented when ``draws`` are given."""
    size = (normalisation.width, normalisation.height)
    resized = image.resize(size, Image.Resampling.BILINEAR) if image.size != size else image
    if augmentation is not None and draws is not None:
        resized = _moved(resized, augmentation, draws, normalisation.fill())
        resized = _hsv_jittered(resized, augmentation, draws)
    array = np.asarray(resized, dtype=np.uint8)
    if augmentation is not None and draws is not None:
        if draws["fliplr"] < (augmentation.fliplr or 0.0):
            array = array[:, ::-1]
        if draws["flipud"] < (augmentation.flipud or 0.0):
            array = array[::-1]
    scaled = array.astype(np.float32) / 255.0
    normalised = (scaled - np.asarray(normalisation.mean, np.float32)) / np.asarray(normalisation.std, np.float32)
    return np.ascontiguousarray(normalised.transpose(2, 0, 1))


def mixup_partner(augmentation: Augmentation | None, draws: dict[str, float], count: int, position: int) -> int | None:
    """The position of the image this one is mixed with (the next in the micro-batch), or None."""
    if augmentation is None or count < 2 or draws["mixup"] >= (augmentation.mixup or 0.0):
        return None
    return (position + 1) % count


def _between(draw: float, low: float, high: float) -> float:
    return low + (high - low) * draw


def _moved(
    image: Image.Image, augmentation: Augmentation, draws: dict[str, float], fill: tuple[int, int, int]
) -> Image.Image:
    scale, degrees, translate = augmentation.scale or 0.0, augmentation.degrees or 0.0, augmentation.translate or 0.0
    if scale == 0.0 and degrees == 0.0 and translate == 0.0:
        return image
    width, height = image.size
    gain = max(_between(draws["scale"], 1.0 - scale, 1.0 + scale), 1e-3)  # scale 1 may draw 0
    angle = math.radians(_between(draws["degrees"], -degrees, degrees))
    shift_x = _between(draws["translate_x"], -translate, translate) * width
    shift_y = _between(draws["translate_y"], -translate, translate) * height
    # PIL maps each output pixel to the input: input = A (output - centre - shift) + centre, where
    # A undoes the rotation and the scaling.
    cos, sin = math.cos(angle) / gain, math.sin(angle) / gain
    centre_x, centre_y = width / 2, height / 2
    offset_x, offset_y = centre_x + shift_x, centre_y + shift_y
    coefficients = (
        cos,
        sin,
        centre_x - cos * offset_x - sin * offset_y,
        -sin,
        cos,
        centre_y + sin * offset_x - cos * offset_y,
    )
    return image.transform(image.size, Image.Transform.AFFINE, coefficients, Image.Resampling.BILINEAR, fillcolor=fill)


def _hsv_jittered(image: Image.Image, augmentation: Augmentation, draws: dict[str, float]) -> Image.Image:
    hue, saturation, value = augmentation.hsv_h or 0.0, augmentation.hsv_s or 0.0, augmentation.hsv_v or 0.0
    if hue == 0.0 and saturation == 0.0 and value == 0.0:
        return image
    levels = np.arange(256, dtype=np.float32)
    shift = _between(draws["hue"], -hue, hue) * 256.0
    tables = (
        np.mod(levels + shift, 256.0),
        np.clip(levels * _between(draws["saturation"], 1.0 - saturation, 1.0 + saturation), 0, 255),
        np.clip(levels * _between(draws["value"], 1.0 - value, 1.0 + value), 0, 255),
    )
    hsv = np.asarray(image.convert("HSV"))
    jittered = np.stack([table.astype(np.uint8)[hsv[..., channel]] for channel, table in enumerate(tables)], axis=-1)
    return Image.fromarray(jittered, "HSV").convert("RGB")
