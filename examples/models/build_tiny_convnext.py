"""Build the tiny image classifier of examples/vision-classification.yaml: a ConvNeXt from a config.

    python examples/models/build_tiny_convnext.py examples/models/tiny-convnext

Two stages of widths 16 and 32 with one block each (about 20 thousand parameters), random weights
from a fixed seed, and an image processor for 32 x 32 inputs. It is loaded with the same
``AutoModelForImageClassification.from_pretrained`` call as a published ConvNeXt, and the trainer
gives it a head for the job's classes.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import torch
from transformers import ConvNextConfig, ConvNextForImageClassification
from transformers.models.vit.image_processing_pil_vit import ViTImageProcessorPil

SIZE = 32


def build(folder: Path) -> None:
    torch.manual_seed(0)
    settings: dict[str, Any] = {
        "num_stages": 2,
        "hidden_sizes": [16, 32],
        "depths": [1, 1],
        "patch_size": 2,
        "image_size": SIZE,
        "num_labels": 2,
        "architectures": ["ConvNextForImageClassification"],
    }
    config = ConvNextConfig(**settings)
    ConvNextForImageClassification(config).save_pretrained(folder)
    ViTImageProcessorPil(
        size={"height": SIZE, "width": SIZE}, image_mean=[0.485, 0.456, 0.406], image_std=[0.229, 0.224, 0.225]
    ).save_pretrained(folder)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folder", type=Path)
    build(parser.parse_args().folder)
