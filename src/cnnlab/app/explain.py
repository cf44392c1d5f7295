"""Explain a trained run directory: the steps shared by `cnnlab explain` and `cnnlab report`.

Each function takes a :class:`cnnlab.rundir.LoadedRun` (from ``load_run``) and writes PNG files into
an output folder, returning what it wrote plus the numbers worth printing. What a CAM explains comes
from the run's task (``Task.cam_target``): a class of a classifier, a class over its predicted region
for a segmenter.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from cnnlab.errors import CnnlabError
from cnnlab.explain.activations import channel_order, feature_maps, silent_channels, silent_share_by_depth
from cnnlab.explain.cam import compute_cam
from cnnlab.explain.filters import visualize_filters
from cnnlab.explain.hooks import get_layer
from cnnlab.explain.layers import conv_layers, last_spatial_layer

CAM_METHODS = ("gradcam", "gradcam++", "hirescam")


@dataclass
class Inputs:
    """Inputs for a run: the originals (for display), the model's float input, and their names."""

    raw: torch.Tensor  # uint8 images (N, C, H, W), or float waveforms (N, C, T) in [-1, 1]
    x: torch.Tensor  # float, preprocessed, on the run's device
    names: list[str]
    labels: list[int] | None = None


def load_inputs(run: Any, paths: Sequence[str | Path]) -> Inputs:
    """Read files/folders as the run's task takes them (images, recordings), preprocessed for its model."""
    return run.task.load_inputs(run, list(paths))


def load_image_inputs(run: Any, paths: Sequence[str | Path]) -> Inputs:
    """Read image files/folders at the run's size and channel count, preprocessed for its model."""
    from cnnlab.data import load_images

    # Runs trained on images of varying size take their inputs at the training input size.
    raw, files = load_images(list(paths), image_size=run.image_size or run.input_size, in_channels=run.in_channels)
    if len(files) == 0:
        raise CnnlabError(f"no readable images in {', '.join(map(str, paths))}; pass image files or folders")
    return Inputs(raw, run.preprocess(raw.to(run.device)), [Path(f).stem for f in files])


def inputs_from_tensor(run: Any, raw: torch.Tensor, names: list[str], labels: list[int] | None = None) -> Inputs:
    """Inputs from uint8 images already in memory (the run's own validation data, for the report)."""
    return Inputs(raw, run.preprocess(raw.to(run.device)), names, labels)


def parse_target(run: Any, target: str | None) -> int | None:
    """--target as a class index or a class name; None keeps the predicted class."""
    if target is None:
        return None
    if target.lstrip("-").isdigit():
        return int(target)
    if target in run.class_names:
        return run.class_names.index(target)
    from cnnlab.errors import unknown

    raise unknown("target class", target, run.class_names)


def default_layer(run: Any, inputs: Inputs | None = None) -> str:
    """The layer to explain when none is given: the coarsest useful feature map (see last_spatial_layer)."""
    x = inputs.x[:1] if inputs is not None else probe(run)
    return last_spatial_layer(run.model, x)


def probe(run: Any) -> torch.Tensor:
    """One mid-grey input of the run's training input size, preprocessed."""
    raw = torch.full((1, run.in_channels, *run.input_size), 128, dtype=torch.uint8)
    # A task can feed the model more channels than the data has (inpaint's hole mask): those come last,
    # and zero says "no hole", so the probe is an image the model was built for.
    extra = len(run.preprocess.mean) - run.in_channels
    if extra > 0:
        raw = torch.cat([raw, torch.zeros((1, extra, *run.input_size), dtype=torch.uint8)], dim=1)
    return run.preprocess(raw.to(run.device))


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_") or "x"


def display_images(inputs: Inputs) -> torch.Tensor:
    """The inputs for drawing (the originals, not the normalised tensor): images as floats in [0, 1],
    waveforms as they are."""
    raw = inputs.raw.float().cpu()
    return raw / 255.0 if inputs.raw.dtype == torch.uint8 else raw


def explain_cams(run: Any, inputs: Inputs, layer: str, method: str, target: int | None, out: Path) -> list[dict[str, Any]]:
    """One overlay PNG per input (drawn by the task: image | heat map over it, a waveform over its map);
    rows with prediction and target."""
    with torch.no_grad():
        outputs = run.model(inputs.x).float()
    cam_target, picks = run.task.cam_target(outputs, target)
    result = compute_cam(run.model, inputs.x, layer, target=cam_target, method=method)
    rows = []
    for i, name in enumerate(inputs.names):
        path = run.task.save_cam(run, inputs, i, result.maps[i].cpu(),
                                 out / f"{_slug(name)}_{_slug(method.replace('+', 'p'))}_{_slug(layer)}.png")
        label = _name(run, inputs.labels[i]) if inputs.labels is not None else None
        rows.append({"input": name, "png": path, "predicted": _name(run, picks[i]["predicted"]),
                     "probability": picks[i]["probability"], "target": _name(run, picks[i]["target"]), "label": label,
                     "empty": not bool(result.maps[i].any())})  # an all-zero map: the CLI says so in words
    return rows


def _name(run: Any, cls: int) -> str:
    return run.class_names[cls] if 0 <= cls < len(run.class_names) else str(cls)


def explain_activations(run: Any, inputs: Inputs, layer: str, out: Path) -> dict[str, Any]:
    """Feature-map grids of ``layer`` (channels strongest first) and the silent share by depth."""
    from cnnlab.render.grids import save_feature_grid, save_silent_by_depth

    maps = feature_maps(run.model, inputs.x, layer)
    if maps.dim() < 3:
        raise CnnlabError(f"layer {layer!r} outputs shape {tuple(maps.shape)}: no maps to draw; pick a convolutional layer")
    order = channel_order(maps).tolist()
    grids = [save_feature_grid(maps[i].cpu(), out / f"{_slug(name)}_maps_{_slug(layer)}.png", order)
             for i, name in enumerate(inputs.names)]
    rows = silent_share_by_depth(run.model, inputs.x)
    depth_png = save_silent_by_depth(rows, out / "silent_by_depth.png") if rows else None
    silent = silent_channels(maps)
    return {"grids": grids, "depth_png": depth_png, "depth": rows, "channels": maps.shape[1],
            "silent": int(silent.sum()), "order": order}


class PixelSpace(torch.nn.Module):
    """The run's model behind its own preprocessing, so that filter ascent works on images in [0, 1].

    ``run.preprocess`` maps uint8 images to the model's input; fed ``x * 255`` (floats) it applies the
    same normalisation differentiably. The atlas then shows pictures as the model would receive them
    from a file, and the grey start (0.5) is a mid-grey image, not "half a standard deviation".
    """

    def __init__(self, run: Any, front: torch.nn.Module | None = None) -> None:
        super().__init__()
        self.model = run.model
        self.in_channels = run.in_channels
        self._preprocess = run.preprocess
        self._extra = len(run.preprocess.mean) - run.in_channels  # task-added channels (inpaint's mask)
        self._front = front  # pixels -> the stored data, for models that take something else (DCT)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self._front is not None:
            return self.model(self._preprocess(self._front(x)))
        # x * scale is the stored data: uint8 levels for images (255), the waveform itself for audio (1)
        if self._extra > 0:  # the ascent works on the image; the added channels stay 0 (no hole)
            x = torch.cat([x, x.new_zeros((x.shape[0], self._extra, *x.shape[2:]))], dim=1)
        return self.model(self._preprocess(x * self._preprocess.scale))


def explain_filters(run: Any, layer: str | None, out: Path, count: int = 64, steps: int | None = None,
                    method: str = "plain", seed: int = 0, at_most: bool = False,
                    on_step: Callable[[int, int], None] | None = None) -> dict[str, Any]:
    """A filter atlas: the first ``count`` channels of ``layer`` (default: the middle convolution).
    ``on_step(done, total)`` follows the ascent (see ``visualize_filters``)."""
    from cnnlab.render.grids import save_atlas

    if layer is None:
        convs = conv_layers(run.model)
        if not convs:
            raise CnnlabError("the model has no convolution to visualise; pass --layer")
        layer = convs[len(convs) // 2]
    get_layer(run.model, layer)  # an unknown name is reported without the wrapper's "model." prefix
    front, channels_in, size = run.task.filter_input(run)
    wrapped = PixelSpace(run, front)
    maps = feature_maps(run.model, probe(run), layer)
    if at_most:  # "up to count" (the report), not "exactly count" (--channels)
        count = min(count, maps.shape[1])
    if count > maps.shape[1]:
        raise CnnlabError(f"--channels {count}: layer {layer!r} has {maps.shape[1]} channels; pass at most "
                          f"{maps.shape[1]}")
    channels = list(range(count))
    images = visualize_filters(wrapped, f"model.{layer}", channels, steps=steps, size=size,
                               seed=seed, method=method, in_channels=channels_in, on_step=on_step)
    path = save_atlas(images, out / f"filters_{_slug(layer)}_{method}.png")
    return {"png": path, "layer": layer, "channels": channels, "images": images}


def inputs_from_split(run: Any, split: Any, count: int, index: list[int] | None = None) -> Inputs:
    """Up to ``count`` items of a Split (or the items at ``index``) as Inputs, as the run's task takes them."""
    return run.task.inputs_from_split(run, split, count, index)


def image_inputs_from_split(run: Any, split: Any, count: int, index: list[int] | None = None) -> Inputs:
    """Up to ``count`` images of a Split (or the items at ``index``) as Inputs; items of another size
    than the first are left out (a batch needs one size). Labels come along where the split has them."""
    index = list(range(min(count, len(split)))) if index is None else index[:count]
    sizes = split.sizes()
    index = [i for i in index if sizes[i] == sizes[index[0]]]
    raw = torch.stack([split["image"][i] for i in index])
    labels = [int(split["label"][i]) for i in index] if "label" in split else None
    return inputs_from_tensor(run, raw, [f"val {i}" for i in index], labels)
