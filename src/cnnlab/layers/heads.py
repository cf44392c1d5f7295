"""Classifier heads and the input rescaling some models do inside themselves."""

from __future__ import annotations

import torch
from torch import nn


class GlobalAvgPool(nn.Module):
    """Mean over every spatial axis: (N, C, *spatial) -> (N, C). A plain mean, channels_last-safe."""

    def __init__(self, dims: int = 2) -> None:
        super().__init__()
        self.dims = dims

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(dim=tuple(range(-self.dims, 0)))


class ClassifierHead(nn.Module):
    """Global average pool, dropout, linear: features (N, C, *spatial) -> logits (N, num_classes)."""

    def __init__(self, in_features: int, num_classes: int, *, dropout: float = 0.0, dims: int = 2) -> None:
        super().__init__()
        self.pool = GlobalAvgPool(dims)
        self.drop = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.fc = nn.Linear(in_features, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.drop(self.pool(x)))  # (N, C, H, W) -> (N, C) -> (N, num_classes)


class Rescale(nn.Module):
    """``x * scale + offset``, Keras's ``Rescaling`` layer, kept inside a model so it travels with it."""

    def __init__(self, scale: float = 1.0, offset: float = 0.0) -> None:
        super().__init__()
        self.scale, self.offset = float(scale), float(offset)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.scale == 1.0 and self.offset == 0.0:
            return x
        return x * self.scale + self.offset

    def extra_repr(self) -> str:
        return f"scale={self.scale}, offset={self.offset}"
