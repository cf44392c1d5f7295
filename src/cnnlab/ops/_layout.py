"""Array layouts shared by the NumPy ops: accept (H, W) / (C, H, W) / (N, C, H, W), compute on 4-D.

Every op turns its input into float64 (N, C, *spatial), works there, and drops the batch and
channel axes the caller did not give. 1-D ops reuse the 2-D code with a height of 1.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from cnnlab.errors import CnnlabError

_SPATIAL_NAMES = {1: "(L)", 2: "(H, W)"}


def as_float(a: Any, name: str) -> np.ndarray:
    """``a`` as a float64 array, or a CnnlabError naming the argument."""
    try:
        arr = np.asarray(a, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise CnnlabError(f"{name} is not a numeric array ({exc}); give a NumPy array of numbers") from exc
    if arr.size == 0:
        raise CnnlabError(f"{name} is empty (shape {arr.shape}); give at least one number")
    return arr


def batch_input(x: Any, spatial: int, name: str = "input") -> tuple[np.ndarray, bool, bool]:
    """(x as float64 (N, C, *spatial), had a batch axis, had a channel axis)."""
    arr = as_float(x, name)
    if arr.ndim == spatial:
        return arr[None, None], False, False
    if arr.ndim == spatial + 1:
        return arr[None], False, True
    if arr.ndim == spatial + 2:
        return arr, True, True
    s = _SPATIAL_NAMES[spatial][1:-1]
    raise CnnlabError(f"{name} has shape {arr.shape}; give ({s}), (C, {s}) or (N, C, {s})")


def batch_weight(w: Any, spatial: int, name: str = "weights") -> tuple[np.ndarray, bool]:
    """(w as float64 (O, I, *kernel), was given as a bare kernel without channel axes)."""
    arr = as_float(w, name)
    if arr.ndim == spatial:
        return arr[None, None], True
    if arr.ndim == spatial + 2:
        return arr, False
    s = "kh, kw" if spatial == 2 else "k"
    raise CnnlabError(f"{name} have shape {arr.shape}; give a bare kernel ({s}) or PyTorch's layout "
                      f"(C_out, C_in/groups, {s}) [transposed conv: (C_in, C_out/groups, {s})]")


def unbatch(y: np.ndarray, had_batch: bool, keep_channel: bool) -> np.ndarray:
    """Drop the batch axis and (when the caller gave none and there is one channel) the channel axis."""
    if not had_batch:
        y = y[0]
    if not keep_channel:  # only reached without a batch axis: (C=1, ...) -> (...)
        y = y[0]
    return y


def to_2d(y: np.ndarray) -> np.ndarray:
    """(N, C, L) -> (N, C, 1, L): 1-D ops run as 2-D ops with a height of 1."""
    return y[:, :, None, :]


def check_groups(c_in: int, c_out: int, w_in: int, groups: Any, what: str) -> int:
    """Validate channels against weights and groups; returns groups as int."""
    if isinstance(groups, bool) or not float(groups).is_integer() or int(groups) < 1:
        raise CnnlabError(f"groups must be a positive integer, got {groups!r}; use groups 1")
    g = int(groups)
    if c_in % g:
        raise CnnlabError(f"groups={g} does not divide the {c_in} input channels; use a groups value that "
                          f"divides both the input ({c_in}) and output ({c_out}) channels, e.g. 1")
    if c_out % g:
        raise CnnlabError(f"groups={g} does not divide the {c_out} output channels; use a groups value that "
                          f"divides both the input ({c_in}) and output ({c_out}) channels, e.g. 1")
    if w_in * g != c_in:
        raise CnnlabError(f"input has {c_in} channels but the {what} expect {w_in * g} "
                          f"({w_in} per group x groups={g}); give {what} with {c_in // g} input "
                          f"channel(s) per group, or an input with {w_in * g} channels")
    return g


def check_bias(bias: Any, c_out: int) -> np.ndarray | None:
    """Bias as float64 (C_out,) or None."""
    if bias is None:
        return None
    b = as_float(bias, "bias").reshape(-1)
    if b.shape[0] != c_out:
        raise CnnlabError(f"bias has {b.shape[0]} values but there are {c_out} output channels; "
                          f"give one bias per output channel")
    return b
