"""Folders of recordings for the audio task: class folders, or labels read from file names.

Layouts (class names are sorted, numbers by value: 2 before 10):
  root/<class>/<file>                         class folders (files found recursively inside each)
  root/train/<class>/<file> + root/val/...    own validation split (same classes)
  root/<file> with --label-pattern            labels (and groups) from the file names, e.g.
                                              "{label}_{speaker}_{index}" for 7_jackson_32.wav

A label pattern is matched against each file's stem: ``{name}`` fields, literal text between them.
``{label}`` is the class; other fields are groups that ``--split-by`` can split on, so that no
speaker (or patient, or microphone) is in both training and validation. A pattern without
``{label}`` on class folders only names the groups. ``--val-groups`` picks the validation groups
(leave one speaker out); otherwise whole groups are drawn at random (seeded) up to ``val_split``.

Files are listed and split before any is decoded, so a ``limit`` run decodes only what it uses.
"""

from __future__ import annotations

import re
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from cnnlab.data.audio.io import (
    AUDIO_EXTENSIONS,
    common_rate,
    decode_many,
    find_files,
    probe_rates,
    warn_not_audio,
)
from cnnlab.data.bundle import DataBundle, Split, stack_or_list
from cnnlab.data.images import DataWarning, warn_skipped
from cnnlab.data.split import balanced_subset, group_split, stratified_split
from cnnlab.errors import CnnlabError

_FIELD = re.compile(r"\{([^{}]*)\}")


@dataclass(frozen=True)
class LabelPattern:
    """A parsed ``--label-pattern``: its text, its field names in order, and the regex for a stem."""

    text: str
    fields: tuple[str, ...]
    regex: re.Pattern[str]

    def match(self, stem: str) -> dict[str, str] | None:
        found = self.regex.fullmatch(stem)
        return None if found is None else {k: v for k, v in found.groupdict().items() if not k.startswith("_")}


def parse_pattern(text: str) -> LabelPattern:
    """``"{label}_{speaker}_{index}"`` -> a LabelPattern; a CnnlabError says what is wrong with a bad one."""
    hint = "write fields in braces with text between them, e.g. --label-pattern '{label}_{speaker}_{index}'"
    if not _FIELD.search(text):
        raise CnnlabError(f"--label-pattern {text!r} has no {{field}}; {hint}")
    if "}{" in text:
        raise CnnlabError(f"--label-pattern {text!r}: two fields touch, so the file names cannot be split "
                          f"between them; {hint}")
    regex, fields, pos = "", [], 0
    for wildcard, found in enumerate(_FIELD.finditer(text)):
        literal = text[pos:found.start()]
        if "{" in literal or "}" in literal:
            raise CnnlabError(f"--label-pattern {text!r} has an unmatched brace; {hint}")
        name = found.group(1)
        if name and not name.isidentifier():
            raise CnnlabError(f"--label-pattern {text!r}: field {{{name}}} must be a name (letters, digits, _); {hint}")
        if name in fields:
            raise CnnlabError(f"--label-pattern {text!r} names field {{{name}}} twice; {hint}")
        # {} matches anything without naming it; lazy fields so literal separators decide the split
        group = name if name else f"_{wildcard}"
        regex += re.escape(literal) + f"(?P<{group}>.+?)"
        if name:
            fields.append(name)
        pos = found.end()
    tail = text[pos:]
    if "{" in tail or "}" in tail:
        raise CnnlabError(f"--label-pattern {text!r} has an unmatched brace; {hint}")
    return LabelPattern(text, tuple(fields), re.compile(regex + re.escape(tail)))


def class_order(names: set[str]) -> list[str]:
    """Class names sorted, numbers by value ('2' before '10'), then text."""
    return sorted(names, key=lambda n: (0, int(n), n) if n.isdigit() else (1, 0, n))


@dataclass
class Listing:
    """Files with their labels (class names) and groups, before decoding."""

    files: list[Path]
    labels: list[str]
    groups: list[str] | None


def _describe(pattern: LabelPattern, files: list[Path]) -> str:
    examples = ", ".join(repr(f.stem) for f in files[:2])
    return f"--label-pattern {pattern.text!r} (file names here look like {examples})"


def list_pool(folder: Path, pattern: LabelPattern | None, split_by: str | None, skip_loose: bool = True) -> Listing:
    """Every audio file under ``folder`` with its label (pattern field, else the class folder it is
    in) and its ``split_by`` group; non-audio files and names the pattern does not match are skipped
    with one warning each."""
    audio, other = find_files(folder)
    warn_not_audio(other, folder)
    if not audio:
        raise CnnlabError(f"folder {folder} holds no audio files ({', '.join(sorted(AUDIO_EXTENSIONS))}); expected "
                          "root/<class>/<file>, or files named like 7_jackson_32.wav with --label-pattern")
    if pattern is not None:
        matches = [(f, pattern.match(f.stem)) for f in audio]
        kept = [(f, m) for f, m in matches if m is not None]
        if not kept:
            raise CnnlabError(f"{_describe(pattern, audio)} matches none of the {len(audio)} audio file names in "
                              f"{folder}; write the pattern with the names' own separators")
        unmatched = [f for f, m in matches if m is None]
        if unmatched:
            warn_skipped([(f, f"name does not match {pattern.text!r}") for f in unmatched], "unlabelled audio")
        files, fields = [f for f, _ in kept], [m for _, m in kept]
    else:
        files, fields = audio, [{} for _ in audio]
    if pattern is None or "label" not in pattern.fields:
        loose = [f for f in files if len(f.relative_to(folder).parts) == 1]
        if len(loose) == len(files):
            raise CnnlabError(f"folder {folder} holds {len(files)} audio file(s) but no class folders; put them in "
                              f"{folder}/<class>/, or name the label in the file names with --label-pattern "
                              "(e.g. '{label}_{speaker}_{index}' for 7_jackson_32.wav)")
        if loose:
            warn_skipped([(f, "not in a class folder") for f in loose], "unlabelled audio")
            keep = [len(f.relative_to(folder).parts) > 1 for f in files]
            files = [f for f, k in zip(files, keep, strict=True) if k]
            fields = [m for m, k in zip(fields, keep, strict=True) if k]
        labels = [f.relative_to(folder).parts[0] for f in files]
    else:
        labels = [m["label"] for m in fields]
    groups = [m[split_by] for m in fields] if split_by else None
    return Listing(files, labels, groups)


def _check_split_by(pattern: LabelPattern | None, split_by: str | None) -> None:
    if split_by is None:
        return
    if pattern is None:
        raise CnnlabError(f"--split-by {split_by} needs --label-pattern with a {{{split_by}}} field, e.g. "
                          f"--label-pattern '{{label}}_{{{split_by}}}_{{index}}'")
    if split_by == "label":
        raise CnnlabError("--split-by label would put whole classes on one side; split by another field "
                          "(speaker) or leave --split-by out for a stratified split")
    if split_by not in pattern.fields:
        raise CnnlabError(f"--split-by {split_by} is not a field of --label-pattern {pattern.text!r} (fields: "
                          f"{', '.join(pattern.fields)}); add {{{split_by}}} to the pattern or split by one of those")


def _subset(listing: Listing, index: torch.Tensor) -> Listing:
    idx = index.tolist()
    return Listing([listing.files[i] for i in idx], [listing.labels[i] for i in idx],
                   None if listing.groups is None else [listing.groups[i] for i in idx])


@dataclass(frozen=True)
class Chosen:
    """A folder's recordings split into training and validation files, none decoded yet."""

    train: Listing
    val: Listing
    names: list[str]  # the classes, in label order
    how: str  # the split, in words
    groups: dict[str, list[str]]  # the groups on each side of a group split
    pattern: LabelPattern | None


def choose_recordings(root: Path, *, val_split: float, seed: int, label_pattern: str | None = None,
                      split_by: str | None = None, val_groups: list[str] | None = None, limit: int | None = None
                      ) -> Chosen:
    """The training and validation files of a folder of recordings (see the module doc), as
    ``load_audio_folder`` splits them; the report's preview decodes only the few it shows."""
    pattern = parse_pattern(label_pattern) if label_pattern else None
    _check_split_by(pattern, split_by)
    if val_groups and not split_by:
        raise CnnlabError("--val-groups names groups of --split-by FIELD; add --split-by (e.g. --split-by speaker)")
    own_val = (root / "train").is_dir()
    if own_val:
        if split_by:
            raise CnnlabError(f"{root} has train/ (and val/) folders, already split; drop --split-by, or put every "
                              "file in one folder to split it by groups")
        train = list_pool(root / "train", pattern, None)
        names = class_order(set(train.labels))
        if (root / "val").is_dir():
            val = list_pool(root / "val", pattern, None)
            extra = sorted(set(val.labels) - set(names))
            if extra:
                raise CnnlabError(f"{root / 'val'} has class(es) {', '.join(extra)} that {root / 'train'} lacks; "
                                  "every validation class needs training recordings")
            how = "train/ and val/ folders"
        else:
            y = torch.tensor([names.index(label) for label in train.labels])
            tr, va = stratified_split(y, val_split, seed)
            train, val = _subset(train, tr), _subset(train, va)
            how = f"stratified val_split={val_split} seed={seed} of train/"
        groups: dict[str, list[str]] = {}
    else:
        if (root / "val").is_dir() and pattern is None:
            raise CnnlabError(f"folder {root} has val/ but no train/; add {root / 'train'}/<class>/ with the training "
                              "recordings, or rename val/")
        pool = list_pool(root, pattern, split_by)
        names = class_order(set(pool.labels))
        y = torch.tensor([names.index(label) for label in pool.labels])
        keep = balanced_subset(y, limit)
        pool, y = _subset(pool, keep), y[keep]
        if split_by:
            tr, va, train_groups, held = group_split(pool.groups, val_split, seed, val_groups, split_by)
            if not held and val_split > 0:
                warnings.warn(f"--split-by {split_by}: the data has only one {split_by} ({train_groups[0]}), so "
                              "nothing is held out for validation", DataWarning, stacklevel=3)
            how = (f"by {split_by}: validation {', '.join(held) or 'none'}; training {', '.join(train_groups)}")
            groups = {"train": train_groups, "val": held}
        else:
            tr, va = stratified_split(y, val_split, seed)
            how = f"stratified val_split={val_split} seed={seed}"
            groups = {}
        train, val = _subset(pool, tr), _subset(pool, va)
    if len(names) < 2:
        raise CnnlabError(f"{root} has only one class ({names[0]!r}); classification needs at least 2: add "
                          "recordings of another class" + ("" if pattern else " in another class folder"))
    if own_val and limit is not None:
        train = _subset(train, balanced_subset(torch.tensor([names.index(n) for n in train.labels]), limit))
        val = _subset(val, balanced_subset(torch.tensor([names.index(n) for n in val.labels]), limit))
    return Chosen(train, val, names, how, groups, pattern)


def load_audio_folder(root: Path, *, spec: str, val_split: float, seed: int, sample_rate: int | None = None,
                      channels: int = 1, label_pattern: str | None = None, split_by: str | None = None,
                      val_groups: list[str] | None = None, strict: bool = False, limit: int | None = None
                      ) -> DataBundle:
    """Decode a folder of recordings (see the module doc) into a DataBundle of ``wave`` (float32 (C, T)
    at one sample rate) and ``label`` fields; ``info`` adds ``sample_rate``."""
    if channels not in (1, 2):
        raise CnnlabError(f"--audio-channels {channels}: use 1 (mono mixdown) or 2 (stereo)")
    chosen = choose_recordings(root, val_split=val_split, seed=seed, label_pattern=label_pattern, split_by=split_by,
                               val_groups=val_groups, limit=limit)
    train, val, names, how, groups, pattern = (chosen.train, chosen.val, chosen.names, chosen.how, chosen.groups,
                                               chosen.pattern)
    rates, _ = probe_rates(train.files + val.files, strict)  # unreadable ones are reported by decoding
    rate = common_rate(rates, sample_rate)
    splits, skipped, notes = [], [], []
    for part in (train, val):
        decoded = decode_many(part.files, rate, channels, strict=strict)
        labels = torch.tensor([names.index(part.labels[i]) for i in decoded.kept], dtype=torch.int64)
        waves = stack_or_list(decoded.waves) if decoded.waves else torch.zeros(0, channels, 1)
        splits.append(Split({"wave": waves, "label": labels}))
        skipped += decoded.skipped
        notes.append(decoded.note(rate))
    warn_skipped(skipped, "unreadable audio")
    note = "; ".join(n for n in notes if n)
    if note:
        warnings.warn(f"{root}: {note}", DataWarning, stacklevel=3)
    counts = torch.bincount(splits[0]["label"], minlength=len(names)).tolist()
    for name, count in zip(names, counts, strict=True):
        if count == 0:
            raise CnnlabError(f"class {name!r} has no readable training recordings in {root}; add some, or hold out "
                              "another group with --val-groups")
    meta: dict[str, Any] = {"source": "audio folder", "root": str(root), "split": how,
                            "labels": pattern.text if pattern and "label" in pattern.fields else "class folders",
                            "skipped": [[str(p), reason] for p, reason in skipped], "conversions": note}
    if groups:
        meta["groups"] = groups
    return DataBundle(splits[0], splits[1], names, channels, None, spec, meta, {"sample_rate": rate})
