"""Build the tiny RT-DETR detector the detection example and tests start from.

A real transformers RT-DETR (``RTDetrForObjectDetection``: ResNet backbone, hybrid encoder,
decoder with denoising) at a toy size, saved with ``save_pretrained`` together with its image
processor (about 300 KB), so the example loads it through the same ``from_pretrained`` path as
``PekingU/rtdetr_r18vd``. The weights are random (seeded); the job re-heads it for its classes.

Usage::

    python examples/models/build_tiny_rt_detr.py [OUTPUT_DIR]   # default: examples/models/tiny-rt-detr
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any, cast

HERE = Path(__file__).resolve().parent
DEFAULT_OUTPUT = HERE / "tiny-rt-detr"
INPUT_SIZE = 64


def tiny_config(num_labels: int = 2, *, width: int = 32, queries: int = 20, **options: Any) -> Any:
    """An RT-DETR with a ResNet backbone of 16-32 channels, the hybrid encoder and a 2-layer decoder
    of ``width`` with ``queries`` queries and as many denoising queries; ``options`` go to the config."""
    from transformers import RTDetrConfig, RTDetrResNetConfig

    backbone = cast(Any, RTDetrResNetConfig)(
        embedding_size=16,
        hidden_sizes=[16, 32, 32, 32],
        depths=[1, 1, 1, 1],
        layer_type="basic",
        out_features=["stage2", "stage3", "stage4"],
    )
    return cast(Any, RTDetrConfig)(
        backbone_config=backbone,
        encoder_in_channels=[32, 32, 32],
        hidden_expansion=0.5,
        encoder_hidden_dim=width,
        encoder_ffn_dim=2 * width,
        encoder_attention_heads=2,
        d_model=width,
        decoder_in_channels=[width] * 3,
        decoder_ffn_dim=2 * width,
        decoder_attention_heads=2,
        decoder_layers=2,
        num_queries=queries,
        num_denoising=queries,
        num_labels=num_labels,
        freeze_backbone_batch_norms=False,
        **options,
    )


def build(output: Path) -> None:
    import torch
    from transformers import RTDetrForObjectDetection, RTDetrImageProcessorPil

    torch.manual_seed(0)
    model = RTDetrForObjectDetection(tiny_config())
    # Stored in bfloat16 to halve the file; the trainer loads it in float32.
    cast(Any, model).to(torch.bfloat16)
    model.save_pretrained(output)
    RTDetrImageProcessorPil(size={"height": INPUT_SIZE, "width": INPUT_SIZE}).save_pretrained(output)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("output", nargs="?", type=Path, default=DEFAULT_OUTPUT)
    build(parser.parse_args().output)


if __name__ == "__main__":
    main()
