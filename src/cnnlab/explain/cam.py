"""Class activation maps: Grad-CAM, Grad-CAM++ and HiResCAM over one pipeline, for any nn.Module.

The pipeline (one function, :func:`compute_cam`):

1. forward ``x`` in eval mode with a hook on ``layer`` (released afterwards, modes restored);
2. turn the output into one score per example with a *target* (see :func:`target_scores`);
3. ``torch.autograd.grad(score.sum(), activation)``: gradients with respect to the hooked
   activation only, so frozen models (``requires_grad=False`` everywhere) work and no ``.grad``
   of the caller's parameters is touched. Summing over the batch is safe because in eval mode
   example i's score depends on example i's activation only;
4. a *method* combines activation A (N, C, *spatial) and gradient G into a map (N, *spatial);
5. normalise: ReLU, upsample to the input's size (linear / bilinear / trilinear,
   ``align_corners=False``), divide by each example's maximum (an all-zero map stays 0).

Everything stays a torch tensor on the model's device. Methods are a few lines each: add one by
subclassing :class:`CamMethod` and registering it in :data:`METHODS`.
"""

from __future__ import annotations

import numbers
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from cnnlab.errors import CnnlabError, unknown
from cnnlab.explain.hooks import as_input, capture, explain_mode

EPS = 1e-8
Target = int | Sequence[int] | torch.Tensor | Callable[[torch.Tensor], torch.Tensor] | None


# ----------------------------------------------------------------------------------------- targets
@dataclass(frozen=True)
class PixelTarget:
    """Segmentation target: the sum of class ``cls``'s logits over a set of pixels.

    ``mask=None`` takes the pixels the model predicts as ``cls`` (argmax over classes); otherwise
    ``mask`` is a bool/0-1 tensor shaped like the output's spatial axes, (H, W) or (N, H, W).
    """

    cls: int
    mask: torch.Tensor | None = None

    def __call__(self, output: torch.Tensor) -> torch.Tensor:
        _check_class(self.cls, output.shape[1])
        if self.mask is None:
            pixels = (output.argmax(dim=1) == self.cls).to(output.dtype)  # (N, *spatial)
        else:
            pixels = self.mask.to(device=output.device, dtype=output.dtype)
            if pixels.shape[-(output.dim() - 2) :] != output.shape[2:]:
                raise CnnlabError(
                    f"target mask has shape {tuple(self.mask.shape)} but the model's output is "
                    f"{tuple(output.shape[2:])} per class; resize the mask to the output size"
                )
            pixels = pixels.expand(output.shape[0], *output.shape[2:])
        return (output[:, self.cls] * pixels).flatten(1).sum(dim=1)


def _check_class(cls: int, num_outputs: int) -> None:
    # A single-logit binary classifier has classes 0 and 1.
    high = 1 if num_outputs == 1 else num_outputs - 1
    if not 0 <= cls <= high:
        raise CnnlabError(f"target class {cls} is out of range; valid classes are 0..{high}")


def target_scores(output: torch.Tensor, target: Target) -> torch.Tensor:
    """One score per example (N,) to differentiate, from the model's output and a target.

    * ``None``: the predicted class of each example (for dense outputs (N, K, *spatial): the
      logit of each pixel's predicted class, summed over the pixels);
    * an int: that class for every example (dense outputs: :class:`PixelTarget` of that class);
    * a sequence / 1-D tensor of ints: one class per example;
    * a callable ``output -> (N,)`` scores, e.g. a :class:`PixelTarget` with a user mask.

    A single-logit output (N, 1) is a binary classifier: class 1 scores the logit, class 0 its
    negation (so that "evidence for class 0" is what grows when the logit falls).
    """
    if callable(target) and not isinstance(target, torch.Tensor):
        scores = target(output)
        if scores.shape != output.shape[:1]:
            raise CnnlabError(f"a target callable must return one score per example, got {tuple(scores.shape)}")
        return scores
    if output.dim() > 2:  # dense prediction: segmentation maps, per-frame logits
        if target is None:
            return output.max(dim=1).values.flatten(1).sum(dim=1)
        if isinstance(target, int):
            return PixelTarget(target)(output)
        raise CnnlabError("for a dense (segmentation) output pass target=CLASS or target=PixelTarget(CLASS, mask)")
    if output.dim() != 2:
        raise CnnlabError(f"cannot pick a target from a model output of shape {tuple(output.shape)}")
    classes = _target_classes(output, target)
    if output.shape[1] == 1:  # binary: +logit for class 1, -logit for class 0
        return output[:, 0] * (2 * classes.to(output.dtype) - 1)
    return output.gather(1, classes[:, None])[:, 0]


def _target_classes(output: torch.Tensor, target: Target) -> torch.Tensor:
    n, k = output.shape
    if target is None:
        return (output[:, 0] > 0).long() if k == 1 else output.argmax(dim=1)
    if isinstance(target, torch.Tensor):
        classes = target.to(output.device).long().reshape(-1)
        high = 1 if k == 1 else k - 1
        if bool(((classes < 0) | (classes > high)).any()):  # one device sync, not one per class
            bad = classes[(classes < 0) | (classes > high)][0].item()
            _check_class(int(bad), k)
    else:
        values = [int(target)] if isinstance(target, numbers.Integral) else [int(t) for t in target]
        for cls in set(values):
            _check_class(cls, k)
        classes = torch.tensor(values, device=output.device)
    if classes.numel() == 1:
        classes = classes.expand(n)
    if classes.numel() != n:
        raise CnnlabError(f"got {classes.numel()} target classes for a batch of {n}; pass one per example or one for all")
    return classes


# ----------------------------------------------------------------------------------------- methods
class CamMethod:
    """Combines a layer's activation A and the score's gradient G, both (N, C, *spatial), into a map."""

    name = "base"

    def combine(self, act: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:  # (N, *spatial)
        raise NotImplementedError


class GradCAM(CamMethod):
    """Grad-CAM (Selvaraju et al. 2017): channel weights = gradient averaged over positions."""

    name = "gradcam"

    def combine(self, act: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
        weights = grad.flatten(2).mean(dim=2)  # (N, C)
        return torch.einsum("nc,nc...->n...", weights, act)


class GradCAMPlusPlus(CamMethod):
    """Grad-CAM++ (Chattopadhyay et al. 2018): positive gradients weighted by the closed-form alphas.

    The alphas use the exponential-score identity (2nd/3rd derivatives = powers of the 1st), as the
    paper's implementation and pytorch-grad-cam do.
    """

    name = "gradcam++"

    def combine(self, act: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
        g2, g3 = grad.pow(2), grad.pow(3)
        act_sum = act.flatten(2).sum(dim=2)  # (N, C)
        act_sum = act_sum.reshape(*act_sum.shape, *([1] * (act.dim() - 2)))
        denom = 2 * g2 + act_sum * g3
        alpha = torch.where(grad != 0, g2 / (denom + EPS), torch.zeros_like(grad))
        weights = (F.relu(grad) * alpha).flatten(2).sum(dim=2)  # (N, C)
        return torch.einsum("nc,nc...->n...", weights, act)


class HiResCAM(CamMethod):
    """HiResCAM (Draelos & Carin 2020): gradient times activation per position, summed over channels.

    Unlike Grad-CAM it does not average the gradient first, so the map shows where the score
    actually came from (for a global-average-pool head the two coincide up to a constant).
    """

    name = "hirescam"

    def combine(self, act: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
        return (grad * act).sum(dim=1)


METHODS: dict[str, CamMethod] = {m.name: m for m in (GradCAM(), GradCAMPlusPlus(), HiResCAM())}


# ---------------------------------------------------------------------------------------- pipeline
@dataclass
class CamResult:
    """Normalised maps (N, *input spatial) in [0, 1], the model's output (detached) and the scores."""

    maps: torch.Tensor
    output: torch.Tensor
    scores: torch.Tensor


def compute_cam(
    model: nn.Module,
    x: torch.Tensor,
    layer: str,
    target: Target = None,
    method: str | CamMethod = "gradcam",
) -> CamResult:
    """Run the CAM pipeline (see the module docstring) and keep the model's output too."""
    if isinstance(method, str):
        if method not in METHODS:
            raise unknown("CAM method", method, METHODS)
        method = METHODS[method]
    x = as_input(model, x).requires_grad_(True)  # a graph even when every parameter is frozen
    with explain_mode(model), capture(model, layer) as cap, torch.enable_grad():
        # A copy goes in, so a model whose first op works in place (ReLU(inplace=True)) does not
        # write into a leaf that requires grad, which autograd forbids.
        output = model(x.clone())
        act = cap[layer]
        if act.dim() < 3:
            raise _no_spatial_extent(model, x, layer, act)
        scores = target_scores(output, target)
        (grad,) = torch.autograd.grad(scores.sum(), act, allow_unused=True)
        if grad is None:
            raise CnnlabError(f"the model's output does not depend on layer {layer!r}; pick a layer on the path to the output")
        raw = method.combine(act.detach().float(), grad.float())
    maps = normalise_cam(raw, x.shape[2:])
    return CamResult(maps, output.detach(), scores.detach())


def normalise_cam(raw: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """ReLU, upsample (N, *spatial) to ``size`` (align_corners=False), divide by each map's maximum."""
    mode = {1: "linear", 2: "bilinear", 3: "trilinear"}[raw.dim() - 1]
    cam = F.interpolate(F.relu(raw)[:, None], size=tuple(size), mode=mode, align_corners=False)[:, 0]
    peak = cam.flatten(1).amax(dim=1).reshape(-1, *([1] * (cam.dim() - 1)))
    # Divide by the exact peak (an additive eps would bias maps whose raw values are tiny, as in an
    # untrained model); an all-zero map stays all zero.
    return torch.where(peak > 0, cam / peak.clamp(min=torch.finfo(cam.dtype).tiny), torch.zeros_like(cam))


def _no_spatial_extent(model: nn.Module, x: torch.Tensor, layer: str, act: torch.Tensor) -> CnnlabError:
    from cnnlab.explain.layers import last_spatial_layer

    return CnnlabError(
        f"layer {layer!r} outputs shape {tuple(act.shape)} with no spatial extent, so it has no map; "
        f"CAMs need a layer with (N, C, *spatial) output, such as {last_spatial_layer(model, x.detach())!r} "
        "(list them with `cnnlab explain RUN --list-layers`: the CAM column)"
    )


def cam(model: nn.Module, x: torch.Tensor, layer: str, target: Target = None, method: str = "gradcam") -> torch.Tensor:
    """A CAM by method name ("gradcam", "gradcam++", "hirescam"): (N, *spatial) in [0, 1]."""
    return compute_cam(model, x, layer, target, method).maps


def grad_cam(model: nn.Module, x: torch.Tensor, layer: str, target: Target = None) -> torch.Tensor:
    """Grad-CAM of ``layer`` for ``target``: (N, *spatial) in [0, 1] at the input's size.

    ``x`` is (N, C, H, W) for images ((N, C, T) for 1-D models, giving (N, T)). The model is run in
    eval mode and restored; its parameters need not require grad.
    """
    return compute_cam(model, x, layer, target, "gradcam").maps


def grad_cam_plus_plus(model: nn.Module, x: torch.Tensor, layer: str, target: Target = None) -> torch.Tensor:
    """Grad-CAM++ (see :class:`GradCAMPlusPlus`); same shapes as :func:`grad_cam`."""
    return compute_cam(model, x, layer, target, "gradcam++").maps


def hires_cam(model: nn.Module, x: torch.Tensor, layer: str, target: Target = None) -> torch.Tensor:
    """HiResCAM (see :class:`HiResCAM`); same shapes as :func:`grad_cam`."""
    return compute_cam(model, x, layer, target, "hirescam").maps
