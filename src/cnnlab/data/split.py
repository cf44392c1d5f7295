"""Deterministic, stratified index arithmetic: train/val splits and ``limit`` subsets.

Both work on label vectors only, so folder loaders can decide which files to decode before decoding.
"""

from __future__ import annotations

import torch

from cnnlab.errors import CnnlabError


def check_val_split(val_split: float) -> None:
    """val_split must leave at least one training image per class."""
    if not 0.0 <= val_split < 1.0:
        raise CnnlabError(f"val_split must be in [0, 1), got {val_split}; use e.g. 0.1 for 10% validation")


def stratified_split(y: torch.Tensor, val_split: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Indices (train, val) with ``round(val_split * count)`` validation rows from each class.

    A class with two or more examples keeps at least one in each split when ``val_split > 0`` (so
    every class is validated), and never gives away its last training example. Deterministic from
    ``seed``; both index vectors are sorted so the split does not depend on how the loader ordered rows
    beyond the labels themselves.
    """
    check_val_split(val_split)
    gen = torch.Generator().manual_seed(seed)
    train_parts, val_parts = [], []
    for cls in torch.unique(y).tolist():
        idx = torch.nonzero(y == cls).flatten()
        idx = idx[torch.randperm(len(idx), generator=gen)]
        n_val = round(val_split * len(idx))
        n_val = min(max(n_val, 1), len(idx) - 1) if val_split > 0 and len(idx) >= 2 else 0
        val_parts.append(idx[:n_val])
        train_parts.append(idx[n_val:])
    train = torch.cat(train_parts).sort().values if train_parts else torch.zeros(0, dtype=torch.int64)
    val = torch.cat(val_parts).sort().values if val_parts else torch.zeros(0, dtype=torch.int64)
    return train, val


def balanced_subset(y: torch.Tensor, limit: int | None) -> torch.Tensor:
    """Sorted indices of at most ``limit`` rows: the first rows of each class in source order, taken
    round-robin over classes (equal counts per class until a class runs out). ``None`` keeps everything.

    Taking the *first* rows (no shuffle) means a capped array source only needs its leading rows, so a
    ``limit`` run on a 50,000-image .npz decompresses a few thousand rows instead of all of them.
    """
    n = len(y)
    if limit is None or limit >= n:
        return torch.arange(n)
    if limit < 1:
        raise CnnlabError(f"limit must be a positive number of examples, got {limit}")
    # rank of each row within its class: 0 for the first cat, 0 for the first dog, 1 for the second cat...
    order = torch.argsort(y, stable=True)
    sorted_labels = y[order]
    starts = torch.searchsorted(sorted_labels, sorted_labels, right=False)
    rank = torch.empty(n, dtype=torch.int64)
    rank[order] = torch.arange(n) - starts
    key = rank * n + torch.arange(n)  # sorting by (rank, position) interleaves the classes
    return torch.argsort(key)[:limit].sort().values


def random_split(n: int, val_split: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Indices (train, val) of ``n`` items, not stratified: ``round(val_split * n)`` validation items
    chosen by a permutation seeded with ``seed``. At least one training item (when ``n >= 1``), and at
    least one validation item when ``val_split > 0`` and ``n >= 2``. Both index vectors are sorted."""
    check_val_split(val_split)
    if n < 0:
        raise CnnlabError(f"random_split needs a non-negative number of items, got {n}")
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    n_val = min(max(round(val_split * n), 1), n - 1) if val_split > 0 and n >= 2 else 0
    return order[n_val:].sort().values, order[:n_val].sort().values


def group_split(groups: list[str], val_split: float, seed: int, val_groups: list[str] | None = None,
                what: str = "group") -> tuple[torch.Tensor, torch.Tensor, list[str], list[str]]:
    """Indices (train, val) that never put one group (a speaker, a patient) on both sides, and the
    sorted group names of each side.

    ``val_groups`` names the validation groups; otherwise whole groups, in a permutation seeded with
    ``seed``, go to validation until it holds at least ``round(val_split * n)`` items: at least one group
    when ``val_split > 0``, never every group. With one group (or ``val_split == 0``) all are training.
    ``what`` names the grouping field in errors ('speaker').
    """
    check_val_split(val_split)
    names = sorted(set(groups))
    if val_groups:
        unknown_groups = sorted(set(val_groups) - set(names))
        if unknown_groups:
            raise CnnlabError(f"--val-groups {', '.join(unknown_groups)}: no such {what}; the {what}s are "
                              f"{', '.join(names)}")
        chosen = set(val_groups)
        if chosen == set(names):
            raise CnnlabError(f"--val-groups names every {what} ({', '.join(names)}); leave at least one for training")
    elif val_split == 0 or len(names) < 2:
        chosen = set()
    else:
        counts = {name: 0 for name in names}
        for g in groups:
            counts[g] += 1
        goal = max(1, round(val_split * len(groups)))
        chosen, held = set(), 0
        for i in torch.randperm(len(names), generator=torch.Generator().manual_seed(seed)).tolist():
            if held >= goal or len(chosen) == len(names) - 1:
                break
            chosen.add(names[i])
            held += counts[names[i]]
    is_val = torch.tensor([g in chosen for g in groups], dtype=torch.bool)
    train, val = (~is_val).nonzero().flatten(), is_val.nonzero().flatten()
    return train, val, [n for n in names if n not in chosen], sorted(chosen)
