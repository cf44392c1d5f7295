"""Audio data: recordings -> float32 (C, T) waveforms at one sample rate, for the ``audio`` task.

``load_audio`` is what ``cnnlab.data.load_data`` calls for the task's ``audio`` layout: a folder of
recordings (``cnnlab.data.audio.folder``) or ``builtin:tones`` (``cnnlab.data.audio.tones``). File
I/O and resampling are in ``io``, windows and augmentation in ``transforms``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cnnlab.data.audio.io import AUDIO_EXTENSIONS, load_files, read_audio, resample, write_audio
from cnnlab.data.bundle import DataBundle, Split
from cnnlab.errors import CnnlabError

#: the reading options of the audio layout (``load_data(..., options=...)``, CLI flags of the same names)
OPTIONS = ("sample_rate", "channels", "label_pattern", "split_by", "val_groups")


def load_audio(kind: str, name: str, spec: str, *, builtin_options: dict[str, str] | None = None,
               val_split: float, seed: int, strict: bool, limit: int | None,
               options: dict[str, Any]) -> DataBundle:
    """A parsed data spec (``kind`` folder | builtin | npz | named, ``name`` its path or name) loaded as
    audio: the ``wave`` and ``label`` fields, ``info`` with ``sample_rate``."""
    extra = sorted(set(options) - set(OPTIONS))
    if extra:
        raise CnnlabError(f"data option(s) {extra} do not apply to audio; its options: {', '.join(OPTIONS)}")
    if kind == "builtin":
        return _builtin(name, spec, builtin_options or {}, val_split, seed, limit, options)
    if kind != "folder":
        raise CnnlabError(f"{name} is not audio data; task audio reads a folder of recordings "
                          f"({', '.join(sorted(AUDIO_EXTENSIONS))}) or builtin:tones")
    from cnnlab.data.audio.folder import load_audio_folder

    return load_audio_folder(Path(name), spec=spec, val_split=val_split, seed=seed, strict=strict, limit=limit,
                             **options)


def _builtin(name: str, spec: str, given: dict[str, str], val_split: float, seed: int, limit: int | None,
             options: dict[str, Any]) -> DataBundle:
    from cnnlab.data.builtin import check_layout, generate, parse_options
    from cnnlab.data.split import stratified_split

    check_layout(name, "audio")
    resolved = parse_options(name, given)
    for key in ("label_pattern", "split_by", "val_groups"):
        if options.get(key):
            raise CnnlabError(f"--{key.replace('_', '-')} reads labels from file names; {spec} has no files: drop it")
    for key in ("sample_rate", "channels"):  # the data option and the spec's own option must agree
        if options.get(key) is not None:
            if key in given and resolved[key] != options[key]:
                raise CnnlabError(f"{spec} asks for {key}={resolved[key]} but --{key.replace('_', '-')} is "
                                  f"{options[key]}; give one of them")
            resolved[key] = int(options[key])
    if limit is not None:  # generate no more than will be used
        resolved["n"] = min(limit, resolved["n"])
    waves, labels, _, names = generate(name, resolved, seed)
    tr, va = stratified_split(labels, val_split, seed)
    train, val = Split({"wave": waves[tr], "label": labels[tr]}), Split({"wave": waves[va], "label": labels[va]})
    meta = {"source": "builtin", "builtin": name, "options": resolved,
            "split": f"stratified val_split={val_split} seed={seed}"}
    return DataBundle(train, val, names, int(waves.shape[1]), None, spec, meta, {"sample_rate": resolved["sample_rate"]})


__all__ = ["AUDIO_EXTENSIONS", "OPTIONS", "load_audio", "load_files", "read_audio", "resample", "write_audio"]
