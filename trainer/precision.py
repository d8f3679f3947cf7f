"""Mixed precision: which autocast the forward pass runs under, and whether gradients are scaled.

- ``no``: fp32 everywhere.
- ``bf16``: autocast to bfloat16 on CUDA and on CPU (where PyTorch supports it); no scaler is
  needed, bfloat16 has fp32's range.
- ``fp16``: autocast to float16 with a gradient scaler, on CUDA only. ``trainer.capabilities``
  refuses fp16 on CPU with a ConfigurationError instead of silently training in fp32.

The scaler always exists (disabled unless fp16), so the loop has one code path and its state is
always part of a checkpoint.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch

from tensorone.api.v1alpha1.trainingjob import MixedPrecision


def autocast_dtype(mode: MixedPrecision) -> torch.dtype | None:
    """The dtype the forward pass computes in under ``mode``; None for fp32 (no autocast)."""
    return {MixedPrecision.bf16: torch.bfloat16, MixedPrecision.fp16: torch.float16}.get(MixedPrecision(mode))


class Precision:
    """Autocast and gradient scaling for one device and mode."""

    def __init__(self, mode: MixedPrecision, device: torch.device) -> None:
        self.mode = MixedPrecision(mode)
        self.device = device
        self.dtype = autocast_dtype(self.mode)
        self.scaler = torch.amp.GradScaler(device.type, enabled=self.mode == MixedPrecision.fp16)

    @contextlib.contextmanager
    def autocast(self) -> Iterator[None]:
        """The context of the forward pass."""
        if self.dtype is None:
            yield
            return
        with torch.autocast(device_type=self.device.type, dtype=self.dtype):
            yield
