"""Boxes read off class activation maps: weakly supervised localisation (Zhou et al. 2016, CAM; the
Grad-CAM paper's localisation experiment): threshold each map at a fraction of its peak, keep the
largest 8-connected region above it, and take that region's box.

Boxes are float32 (N, 4) x1, y1, x2, y2 in pixel edges of the map (``cnnlab.data.boxes``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from cnnlab.data.boxes import boxes_from_masks
from cnnlab.errors import CnnlabError
from cnnlab.explain.cam import Target, grad_cam


def connected_components(masks: torch.Tensor) -> torch.Tensor:
    """Bool (N, H, W) -> int64 (N, H, W) labels of the 8-connected regions (0 = outside every region;
    each region is numbered by its largest flat pixel index + 1, so numbers are not consecutive).

    Every pixel starts with its own number and takes the largest number among its 3x3 neighbours
    inside the mask until nothing changes: batched tensor work, as many rounds as the longest path
    through a region (tens of rounds for the maps of a small image)."""
    n, h, w = masks.shape
    inside = masks.bool()
    ids = torch.arange(1, h * w + 1, dtype=torch.float64).view(1, h, w).expand(n, h, w)  # exact up to 2**53
    labels = torch.where(inside, ids, torch.zeros(()))
    for _ in range(h * w):
        grown = F.max_pool2d(labels[:, None], 3, stride=1, padding=1)[:, 0]
        grown = torch.where(inside, grown, torch.zeros(()))
        if torch.equal(grown, labels):
            break
        labels = grown
    return labels.long()


def largest_component(masks: torch.Tensor) -> torch.Tensor:
    """Bool (N, H, W) -> bool (N, H, W): only the largest 8-connected region of each mask (ties: the
    one with the larger number); an empty mask stays empty."""
    labels = connected_components(masks)  # (N, H, W)
    flat = labels.flatten(1)
    counts = torch.zeros(len(labels), flat.shape[1] + 1, dtype=torch.int64)
    counts.scatter_add_(1, flat, (flat > 0).long())  # pixels per region number
    counts[:, 0] = 0
    best = counts.argmax(dim=1)  # (N,), 0 for an empty mask
    return (labels == best[:, None, None]) & (labels > 0)


def boxes_from_cams(maps: torch.Tensor, threshold: float = 0.2) -> torch.Tensor:
    """(N, H, W) maps in [0, 1] (peak 1) -> (N, 4) boxes of the largest region at >= ``threshold`` x the
    peak. An all-zero map (no evidence anywhere) gets the whole image: the box that claims nothing."""
    if not 0.0 < threshold <= 1.0:
        raise CnnlabError(f"cam threshold {threshold} must be in (0, 1]: a fraction of each map's peak (e.g. 0.2)")
    peak = maps.flatten(1).amax(dim=1).view(-1, 1, 1)
    region = largest_component((maps >= threshold * peak) & (peak > 0))
    boxes, _, found = boxes_from_masks(region.to(torch.uint8))
    h, w = maps.shape[-2:]
    whole = torch.tensor([0.0, 0.0, float(w), float(h)])
    return torch.where(found[:, None], boxes, whole)


def cam_boxes(model: nn.Module, x: torch.Tensor, layer: str, target: Target = None,
              threshold: float = 0.2) -> torch.Tensor:
    """Grad-CAM of ``layer`` for ``target`` (see ``cnnlab.explain.cam.target_scores``) on input ``x``
    (N, C, H, W), read as boxes (N, 4) in the input's pixels (``boxes_from_cams``), on the CPU."""
    maps = grad_cam(model, x, layer, target).detach().float().cpu()
    return boxes_from_cams(maps, threshold)


__all__ = ["boxes_from_cams", "cam_boxes", "connected_components", "largest_component"]
