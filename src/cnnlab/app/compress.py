"""Real compressed files from a `compress` run: ``encode`` / ``decode`` and the files behind
`cnnlab compress` and `cnnlab decompress`.

The file is a 26-byte header and the entropy coder's words:

    offset size  field
    0      4     magic b"CNLC"
    4      1     format version (1)
    5      8     the first 8 bytes of the SHA-256 of the run's model weights (``weights_digest``)
    13     2,2   image height, width (big-endian)
    17     1     image channels
    18     4     number of 32-bit coder words that follow
    22     4     CRC-32 of those words
    26     ...   the words (little-endian uint32): an ANS stack (``constriction``), channel 0 on top

The latent (M, h, w) is coded channel by channel, each channel with its own table
(``FactorizedDensity.tables``): the learned density's probability of every integer where it has mass
(all but 1e-9 on each side) plus an escape symbol for the tails, whose values follow as raw 16-bit
numbers. The coder quantises the tables to fixed point; the decoder rebuilds the same tables from the
same weights, so the file holds nothing but the symbols, and its size is the bits the model counts
(-log2 of its likelihoods) plus the header and the coder's final state (at most ~64 bits; pinned in
tests/test_tasks_compress.py). A file made by another run's weights (digest), cut short (word count) or
damaged (CRC, and the coder not ending empty) is refused, never decoded into a wrong image. The
tables are computed in float32: decode on the kind of machine that encoded.

bpp of a file = its size in bits (header included) / the image's pixels.
"""

from __future__ import annotations

import hashlib
import struct
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cnnlab.errors import CnnlabError
from cnnlab.models.compress import STRIDE

MAGIC = b"CNLC"
VERSION = 1
HEADER = struct.Struct(">4sB8sHHBII")  # see the module doc
#: escaped (tail) latent values are stored as raw int16, offset to 0..65535
RAW = 2**16
SUFFIX = ".cnlc"


def weights_digest(model: torch.nn.Module) -> bytes:
    """8 bytes identifying the model's weights: SHA-256 over every state-dict entry (name and bytes)."""
    h = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.digest()[:8]


def _check_run(run: Any) -> torch.nn.Module:
    if run.config.get("task") != "compress":
        raise CnnlabError(f"{run.run_dir} is a {run.config.get('task')!r} run; compress and decompress need a "
                          "run trained with `cnnlab train compress`")
    return run.model


def _models(model: torch.nn.Module) -> list[tuple[int, int, Any]]:
    """Per latent channel: (low, escape symbol, the coder's Categorical) from the weights alone."""
    import constriction

    return [(low, len(probs) - 1, constriction.stream.model.Categorical(probs.numpy(), perfect=False))
            for low, probs in model.entropy.tables()]


@torch.no_grad()
def latent(run: Any, image: torch.Tensor) -> torch.Tensor:
    """The rounded latent (M, h, w), int64, of a uint8 (C, H, W) image: what a file stores."""
    model = _check_run(run)
    x = run.preprocess(image[None].to(run.device)).float()
    return torch.round(model.encode(x))[0].cpu().long()


@torch.no_grad()
def reconstruct(run: Any, y_hat: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """A rounded latent (M, h, w) -> the decoded uint8 (C, H, W) image (clamped, rounded to 8 bits)."""
    from cnnlab.tasks.scores import to_levels

    x_hat = run.model.decode(y_hat[None].float().to(run.device), size)[0].float().cpu()
    return to_levels(x_hat).to(torch.uint8)  # the rounding the metrics score


def encode(run: Any, image: torch.Tensor) -> bytes:
    """A uint8 (C, H, W) image -> the bytes of its compressed file (see the module doc)."""
    import constriction

    model = _check_run(run)
    c, h, w = image.shape
    if c != run.in_channels:
        raise CnnlabError(f"the run compresses {run.in_channels}-channel images, got {c}")
    if not (0 < h < 65536 and 0 < w < 65536):
        raise CnnlabError(f"an image of {h}x{w} is too large for the file format (at most 65535 per side)")
    y = latent(run, image).reshape(model.latent, -1)  # (M, h*w)
    if int(y.abs().max()) >= RAW // 2:
        raise CnnlabError(f"the latent of this image reaches {int(y.abs().max())}, beyond the format's int16 range")
    raw_model = constriction.stream.model.Uniform(RAW)
    coder = constriction.stream.stack.AnsCoder()
    # a stack: push the last channel first, so that channel 0 pops first; per channel the escaped raw
    # values go in before the symbols, so the decoder reads the symbols, then the escaped values
    for values, (low, escape, table) in reversed(list(zip(y.numpy(), _models(model), strict=True))):
        symbols = values - low
        outside = (symbols < 0) | (symbols >= escape)
        coder.encode_reverse((values[outside] + RAW // 2).astype(np.int32), raw_model)
        coder.encode_reverse(np.where(outside, escape, symbols).astype(np.int32), table)
    words = coder.get_compressed().astype("<u4").tobytes()
    header = HEADER.pack(MAGIC, VERSION, weights_digest(model), h, w, c, len(words) // 4, zlib.crc32(words))
    return header + words


def _read_header(run: Any, data: bytes, source: str) -> tuple[int, int, bytes]:
    """(height, width, words) of a file's bytes, after every check the header allows."""
    if len(data) < HEADER.size:
        if data[:4] != MAGIC[: len(data[:4])]:
            raise CnnlabError(f"{source} is not a cnnlab compressed file (no {MAGIC.decode()} header)")
        raise CnnlabError(f"{source} is truncated: {len(data)} bytes, shorter than the {HEADER.size}-byte header; "
                          "compress the image again")
    magic, version, digest, h, w, c, count, crc = HEADER.unpack_from(data)
    if magic != MAGIC:
        raise CnnlabError(f"{source} is not a cnnlab compressed file (no {MAGIC.decode()} header)")
    if version != VERSION:
        raise CnnlabError(f"{source} has format version {version}; this cnnlab reads version {VERSION}")
    ours = weights_digest(run.model)
    if digest != ours:
        raise CnnlabError(f"{source} was compressed with another model (weights digest {digest.hex()}, not "
                          f"{run.run_dir}'s {ours.hex()}); decompress it with the run that wrote it")
    words = data[HEADER.size:]
    if len(words) != 4 * count:
        raise CnnlabError(f"{source} is truncated or padded: the header announces {4 * count} bytes of data, the "
                          f"file has {len(words)}; compress the image again")
    if zlib.crc32(words) != crc or c != run.in_channels or h == 0 or w == 0:
        raise CnnlabError(f"{source} is damaged (checksum or header mismatch); compress the image again")
    return h, w, words


def decode(run: Any, data: bytes, source: str = "the file") -> torch.Tensor:
    """The bytes of a compressed file -> the uint8 (C, H, W) image, from those bytes alone."""
    import constriction

    model = _check_run(run)
    h, w, words = _read_header(run, data, source)
    shape = (model.latent, -(-h // STRIDE), -(-w // STRIDE))  # (M, ceil(H/16), ceil(W/16))
    raw_model = constriction.stream.model.Uniform(RAW)
    coder = constriction.stream.stack.AnsCoder(np.frombuffer(words, dtype="<u4").astype(np.uint32))
    rows = []
    try:
        for low, escape, table in _models(model):
            symbols = coder.decode(table, shape[1] * shape[2]).astype(np.int64)
            outside = symbols == escape
            values = symbols + low
            values[outside] = coder.decode(raw_model, int(outside.sum())).astype(np.int64) - RAW // 2
            rows.append(values)
    except (ValueError, RuntimeError) as exc:  # the coder ran out of data: a file that passed the checks
        raise CnnlabError(f"{source} is damaged ({exc}); compress the image again") from None
    if not coder.is_empty():  # every word must be consumed exactly: anything else is not this file
        raise CnnlabError(f"{source} is damaged (data left after the last symbol); compress the image again")
    y_hat = torch.from_numpy(np.stack(rows)).reshape(shape)
    return reconstruct(run, y_hat, (h, w))


def file_bpp(data: bytes, image: torch.Tensor) -> float:
    """Bits per pixel of a compressed file: all its bits, header included, over the image's pixels."""
    return len(data) * 8 / (image.shape[-2] * image.shape[-1])


def compress_files(run: Any, paths: list[str], out: Path) -> list[dict[str, Any]]:
    """Compress image files and folders into OUT/<stem>.cnlc; per image its bytes, bpp and the PSNR of the
    image decoded back from those bytes (RGB, 0-255, no shave)."""
    from cnnlab.data.plain import read_native
    from cnnlab.files import atomic_write
    from cnnlab.tasks.scores import psnr

    rows = []
    for path, image in read_native(paths, run.in_channels):
        data = encode(run, image)
        decoded = decode(run, data, str(path))  # the file is checked before it is kept
        target = atomic_write(Path(out) / f"{path.stem}{SUFFIX}", lambda p, d=data: p.write_bytes(d))
        rows.append({"path": str(path), "output": str(target), "bytes": len(data), "bpp": file_bpp(data, image),
                     "psnr": float(psnr(decoded[None].double(), image[None].double()))})
    return rows


def decompress_files(run: Any, files: list[str], out: Path) -> list[dict[str, Any]]:
    """Rebuild OUT/<stem>.png from each compressed file, or each .cnlc file in a folder (nothing but the file
    and the run is read)."""
    from cnnlab.render.overlays import save_rgb_png

    rows = []
    for path in _compressed_files(files):
        image = decode(run, path.read_bytes(), str(path))
        rows.append({"path": str(path), "output": str(save_rgb_png(image.float() / 255, Path(out) / f"{path.stem}.png"))})
    return rows


def _compressed_files(names: list[str]) -> list[Path]:
    """The files named, with a folder standing for the .cnlc files in it (what `cnnlab compress --out` wrote)."""
    from cnnlab.files import expand_inputs

    return expand_inputs(names, lambda folder: sorted(folder.glob(f"*{SUFFIX}")), f"{SUFFIX} files",
                         "as `cnnlab compress` writes them")
