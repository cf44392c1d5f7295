"""Explain any nn.Module: layers by dotted name, feature maps, filter visualisation and CAMs.

Every function here runs the model in eval mode and restores each submodule's previous mode; hooks
are removed after success and after errors; the model is never moved and its parameters, their
``requires_grad`` flags and ``.grad`` are never touched.
"""

from cnnlab.explain.activations import (
    channel_order,
    collect_activations,
    feature_maps,
    silent_channels,
    silent_share,
    silent_share_by_depth,
)
from cnnlab.explain.cam import METHODS, PixelTarget, cam, compute_cam, grad_cam, grad_cam_plus_plus, hires_cam
from cnnlab.explain.filters import filter_atlas, visualize_filters
from cnnlab.explain.hooks import capture, explain_mode, get_layer
from cnnlab.explain.layers import LayerInfo, conv_layers, last_spatial_layer, list_layers, spatial_layers

__all__ = [
    "METHODS",
    "LayerInfo",
    "PixelTarget",
    "cam",
    "capture",
    "channel_order",
    "collect_activations",
    "compute_cam",
    "conv_layers",
    "explain_mode",
    "feature_maps",
    "filter_atlas",
    "get_layer",
    "grad_cam",
    "grad_cam_plus_plus",
    "hires_cam",
    "last_spatial_layer",
    "list_layers",
    "silent_channels",
    "silent_share",
    "silent_share_by_depth",
    "spatial_layers",
    "visualize_filters",
]
